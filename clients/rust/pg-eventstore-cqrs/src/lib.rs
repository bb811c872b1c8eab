//! A [cqrs-es](https://docs.rs/cqrs-es) event repository over pg_eventstore. Switching from
//! postgres-es is a change of imports:
//!
//! ```ignore
//! // use postgres_es::{default_postgress_pool, postgres_cqrs, PostgresCqrs};
//! use pg_eventstore_cqrs::{default_postgres_pool, pg_eventstore_cqrs, PgEventStoreCqrs};
//! let pool = default_postgres_pool("postgres://localhost/app").await;
//! let cqrs: PgEventStoreCqrs<BankAccount> = pg_eventstore_cqrs(pool, queries, services);
//! ```
//!
//! Events go into `eventstore.events` through `append_events`, so the store's rules, the global
//! feed, notifications and subscriptions see them. An aggregate is a stream: aggregate_id is the
//! stream id (or `"<type>-<id>"` with [`PgEventStoreRepository::with_type_prefixed_ids`]),
//! the aggregate type is the stream type.
//!
//! What cqrs-es allows and the store's rules do not, and how it is mapped (reversibly; events
//! appended by other clients without any of it load as they are):
//! - a payload that is not a JSON object (a unit enum variant is a string) is stored as
//!   `{"value": <payload>}`;
//! - metadata that is not an object (`null`) is kept in the marker below, `{}` stored;
//! - `event_version` is a string ("1.0", "2.3.4"): the store's integer column gets its leading
//!   number, the string itself is kept in the marker. Events without the marker load with their
//!   integer version as the string.
//!
//! The marker is the metadata key `"$cqrs"`; it is removed again on loading.
//! The snapshot counter cqrs-es keeps (`current_snapshot`) is stored as the snapshot's
//! `snapshot_version`. A snapshot update is written in the same transaction as its events.

use cqrs_es::persist::{
    PersistedEventRepository, PersistedEventStore, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::{Aggregate, CqrsFramework, Query};
use pg_eventstore_client as client;
use pg_eventstore_client::{Error, ExpectedVersion, FeedFilter, NewEvent, RecordedEvent};
use serde_json::{json, Map, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Pool, Postgres};

mod view_repository;
pub use view_repository::PgEventStoreViewRepository;

/// The framework over this repository (postgres-es: `PostgresCqrs<A>`).
pub type PgEventStoreCqrs<A> = CqrsFramework<A, PersistedEventStore<PgEventStoreRepository, A>>;

/// A pool of up to 10 connections (postgres-es: `default_postgress_pool`). Panics when it cannot
/// connect, as postgres-es's does.
pub async fn default_postgres_pool(connection_string: &str) -> Pool<Postgres> {
    PgPoolOptions::new()
        .max_connections(10)
        .connect(connection_string)
        .await
        .expect("unable to connect to database")
}

/// postgres-es's spelling of [`default_postgres_pool`], so that only the crate name changes.
pub async fn default_postgress_pool(connection_string: &str) -> Pool<Postgres> {
    default_postgres_pool(connection_string).await
}

/// An event-sourced framework: every load replays the stream (postgres-es: `postgres_cqrs`).
pub fn pg_eventstore_cqrs<A: Aggregate>(pool: Pool<Postgres>, queries: Vec<Box<dyn Query<A>>>, services: A::Services) -> PgEventStoreCqrs<A> {
    let store = PersistedEventStore::new_event_store(PgEventStoreRepository::new(pool));
    CqrsFramework::new(store, queries, services)
}

/// A snapshot every `snapshot_size` events (postgres-es: `postgres_snapshot_cqrs`).
pub fn pg_eventstore_snapshot_cqrs<A: Aggregate>(
    pool: Pool<Postgres>,
    queries: Vec<Box<dyn Query<A>>>,
    snapshot_size: usize,
    services: A::Services,
) -> PgEventStoreCqrs<A> {
    let repo = PgEventStoreRepository::new(pool).with_snapshot_size(snapshot_size);
    CqrsFramework::new(PersistedEventStore::new_snapshot_store(repo, snapshot_size), queries, services)
}

/// The aggregate's state saved on every commit (postgres-es: `postgres_aggregate_cqrs`).
pub fn pg_eventstore_aggregate_cqrs<A: Aggregate>(pool: Pool<Postgres>, queries: Vec<Box<dyn Query<A>>>, services: A::Services) -> PgEventStoreCqrs<A> {
    CqrsFramework::new(PersistedEventStore::new_aggregate_store(PgEventStoreRepository::new(pool)), queries, services)
}

const MARKER: &str = "$cqrs";

/// cqrs-es's `PersistedEventRepository` over pg_eventstore.
#[derive(Clone, Debug)]
pub struct PgEventStoreRepository {
    pool: Pool<Postgres>,
    prefix_ids: bool,
    snapshot_size: Option<usize>,
    channel_size: usize,
}

impl PgEventStoreRepository {
    pub fn new(pool: Pool<Postgres>) -> PgEventStoreRepository {
        PgEventStoreRepository { pool, prefix_ids: false, snapshot_size: None, channel_size: 200 }
    }

    /// Streams are named `"<aggregate type>-<aggregate id>"`, for applications that use the same
    /// ids for aggregates of different types.
    pub fn with_type_prefixed_ids(mut self) -> PgEventStoreRepository {
        self.prefix_ids = true;
        self
    }

    /// The snapshot size of a `PersistedEventStore::new_snapshot_store(repo, n)`: a snapshot then
    /// covers the events up to the boundary it was taken at, which may be before the last event of
    /// a commit (postgres-es records it at the last event, and the events in between are lost
    /// from the loaded state). `pg_eventstore_snapshot_cqrs` sets it.
    pub fn with_snapshot_size(mut self, snapshot_size: usize) -> PgEventStoreRepository {
        self.snapshot_size = Some(snapshot_size);
        self
    }

    /// How many events a replay stream buffers (default 200).
    pub fn with_streaming_channel_size(mut self, size: usize) -> PgEventStoreRepository {
        self.channel_size = size;
        self
    }

    fn stream_id<A: Aggregate>(&self, aggregate_id: &str) -> String {
        if self.prefix_ids { format!("{}-{aggregate_id}", A::TYPE) } else { aggregate_id.to_string() }
    }

    fn aggregate_id<A: Aggregate>(&self, stream_id: &str) -> String {
        match self.prefix_ids {
            true => stream_id.strip_prefix(&format!("{}-", A::TYPE)).unwrap_or(stream_id).to_string(),
            false => stream_id.to_string(),
        }
    }

    /// The sequence a snapshot taken in this commit covers (see `with_snapshot_size`).
    fn snapshot_sequence(&self, events: &[SerializedEvent]) -> Option<usize> {
        let last = events.last()?.sequence;
        let Some(size) = self.snapshot_size.filter(|s| *s > 0) else { return Some(last) };
        // cqrs-es's SourceOfTruth::commit_snapshot_with_addl_events
        let current = events[0].sequence - 1;
        let next_at = size - (current % size);
        if events.len() < next_at {
            return Some(last);
        }
        let after = events.len() - next_at;
        Some(current + next_at + after - after % size)
    }
}

fn to_new_event(e: &SerializedEvent) -> Result<NewEvent, PersistenceError> {
    let mut marker = Map::new();
    marker.insert("event_version".into(), json!(e.event_version));
    let payload = match &e.payload {
        Value::Object(_) => e.payload.clone(),
        other => {
            marker.insert("payload".into(), json!("wrapped"));
            json!({ "value": other })
        }
    };
    let mut metadata = match &e.metadata {
        Value::Object(m) => m.clone(),
        other => {
            marker.insert("metadata".into(), other.clone());
            Map::new()
        }
    };
    metadata.insert(MARKER.into(), Value::Object(marker));
    let version = e.event_version.split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok()).filter(|v| *v >= 1).unwrap_or(1);
    Ok(NewEvent { event_type: e.event_type.clone(), payload, metadata: Value::Object(metadata), id: None, version })
}

fn to_serialized(aggregate_id: String, aggregate_type: &str, e: RecordedEvent) -> SerializedEvent {
    let mut metadata = e.metadata;
    let marker = metadata.as_object_mut().and_then(|m| m.remove(MARKER));
    let (mut event_version, mut payload) = (e.event_version.to_string(), e.payload);
    if let Some(Value::Object(marker)) = marker {
        if let Some(Value::String(v)) = marker.get("event_version") {
            event_version = v.clone();
        }
        if marker.get("payload") == Some(&json!("wrapped")) {
            payload = payload.get("value").cloned().unwrap_or(Value::Null);
        }
        if let Some(m) = marker.get("metadata") {
            metadata = m.clone();
        }
    }
    SerializedEvent::new(aggregate_id, e.sequence as usize, aggregate_type.to_string(), e.event_type, event_version, payload, metadata)
}

fn persistence(e: Error) -> PersistenceError {
    match e {
        // A stale expected version, or a racing writer's duplicate: cqrs-es retries the command.
        Error::Conflict { .. } | Error::Duplicate(_) => PersistenceError::OptimisticLockError,
        Error::Connection(e) => PersistenceError::ConnectionError(Box::new(e)),
        Error::Serialization(e) => PersistenceError::DeserializationError(Box::new(e)),
        e => PersistenceError::UnknownError(Box::new(e)),
    }
}

impl PersistedEventRepository for PgEventStoreRepository {
    async fn get_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.get_last_events::<A>(aggregate_id, 0).await
    }

    async fn get_last_events<A: Aggregate>(&self, aggregate_id: &str, last_sequence: usize) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let events = client::load(&self.pool, &self.stream_id::<A>(aggregate_id), last_sequence as i64 + 1).await.map_err(persistence)?;
        Ok(events.into_iter().map(|e| to_serialized(aggregate_id.to_string(), A::TYPE, e)).collect())
    }

    async fn get_snapshot<A: Aggregate>(&self, aggregate_id: &str) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        let row: Option<(i64, i32, sqlx::types::Json<Value>)> =
            sqlx::query_as("SELECT sequence, snapshot_version, payload FROM eventstore.load_snapshot($1)")
                .bind(self.stream_id::<A>(aggregate_id))
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| persistence(e.into()))?;
        Ok(row.map(|(sequence, counter, payload)| {
            let mut aggregate = payload.0;
            if let Some(Value::Object(m)) = aggregate.get(MARKER) {
                if m.get("payload") == Some(&json!("wrapped")) {
                    aggregate = aggregate.get("value").cloned().unwrap_or(Value::Null);
                }
            }
            SerializedSnapshot {
                aggregate_id: aggregate_id.to_string(),
                aggregate,
                current_sequence: sequence as usize,
                current_snapshot: counter as usize,
            }
        }))
    }

    async fn persist<A: Aggregate>(&self, events: &[SerializedEvent], snapshot_update: Option<(String, Value, usize)>) -> Result<(), PersistenceError> {
        let Some(first) = events.first() else {
            // a command that produced no events: nothing to store (cqrs-es snapshots only with events)
            return Ok(());
        };
        // The store numbers a stream's events itself: a batch that is not contiguous, or does
        // not continue the stream, is a concurrent change of the aggregate.
        let contiguous = events.iter().enumerate().all(|(i, e)| e.sequence == first.sequence + i && e.aggregate_id == first.aggregate_id);
        if !contiguous || first.sequence == 0 {
            return Err(PersistenceError::OptimisticLockError);
        }
        let new_events = events.iter().map(to_new_event).collect::<Result<Vec<_>, _>>()?;
        let stream = self.stream_id::<A>(&first.aggregate_id);
        let expected = match first.sequence - 1 {
            0 => ExpectedVersion::NoStream,
            v => ExpectedVersion::Exact(v as i64),
        };
        let Some((_, aggregate, counter)) = snapshot_update else {
            // one statement is its own transaction: no BEGIN and COMMIT round trips
            client::append(&self.pool, &stream, A::TYPE, &new_events, expected, None).await.map_err(persistence)?;
            return Ok(());
        };
        let mut tx = self.pool.begin().await.map_err(|e| persistence(e.into()))?;
        client::append(&mut *tx, &stream, A::TYPE, &new_events, expected, None).await.map_err(persistence)?;
        {
            let state = match aggregate {
                Value::Object(_) => aggregate,
                other => {
                    let mut wrapped = Map::new();
                    wrapped.insert("value".into(), other);
                    wrapped.insert(MARKER.into(), json!({ "payload": "wrapped" }));
                    Value::Object(wrapped)
                }
            };
            let sequence = self.snapshot_sequence(events).expect("events are not empty");
            client::take_snapshot(&mut *tx, &stream, sequence as i64, &state, counter.max(1) as i32).await.map_err(persistence)?;
        }
        tx.commit().await.map_err(|e| persistence(e.into()))
    }

    async fn stream_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        let (mut feed, stream) = ReplayStream::new(self.channel_size);
        let (pool, stream_id, aggregate_id) = (self.pool.clone(), self.stream_id::<A>(aggregate_id), aggregate_id.to_string());
        tokio::spawn(async move {
            match client::load(&pool, &stream_id, 1).await {
                Ok(events) => {
                    for e in events {
                        if feed.push(Ok(to_serialized(aggregate_id.clone(), A::TYPE, e))).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = feed.push(Err(persistence(e))).await;
                }
            }
        });
        Ok(stream)
    }

    /// Every event of the aggregate type, in the order of the global feed.
    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        let (mut feed, stream) = ReplayStream::new(self.channel_size);
        let repo = self.clone();
        tokio::spawn(async move {
            let filter = FeedFilter::stream_types([A::TYPE]);
            let mut after = 0;
            loop {
                match client::read_all_page(&repo.pool, after, 500, &filter).await {
                    Ok(page) if page.is_empty() => return,
                    Ok(page) => {
                        after = page.last().unwrap().global_position;
                        for e in page {
                            let id = repo.aggregate_id::<A>(&e.stream_id);
                            if feed.push(Ok(to_serialized(id, A::TYPE, e))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = feed.push(Err(persistence(e))).await;
                        return;
                    }
                }
            }
        });
        Ok(stream)
    }
}
