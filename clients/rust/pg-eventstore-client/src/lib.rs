//! A typed async client for pg_eventstore, the event store inside PostgreSQL, over sqlx.
//!
//! ```no_run
//! use pg_eventstore_client::{EventStore, ExpectedVersion, NewEvent};
//! # async fn demo() -> Result<(), pg_eventstore_client::Error> {
//! let store = EventStore::connect("postgres://localhost/app").await?;
//! let opened = NewEvent::new("AccountOpened", &serde_json::json!({"owner": "ann"}))?;
//! let version = store.append("account-42", "Account", &[opened], ExpectedVersion::NoStream).await?;
//! let loaded = store.load_aggregate("account-42").await?;
//! assert_eq!(loaded.version(), version);
//! # Ok(()) }
//! ```
//!
//! Errors come back as [`Error`], by SQLSTATE: a stale expected version is [`Error::Conflict`]
//! with the stream and both versions. Every operation is also a free function over any sqlx
//! executor ([`append`], [`load`], [`take_snapshot`], ...), to run inside a caller's transaction.

mod consumer;
mod error;
mod store;
mod types;

pub use consumer::{Consumer, ConsumerEvent};
pub use error::Error;
pub use store::{append, load, load_aggregate, read_all_page, record_command, take_snapshot, EventStore};
pub use types::{ChainLink, ExpectedVersion, FeedFilter, Loaded, NewCommand, NewEvent, RecordedEvent, Snapshot};

/// Re-exported so that applications use the same sqlx the client does.
pub use sqlx;
