//! Shared helpers for the client tests: connections to the test database and error inspection.

use postgres::{Client, NoTls};

/// Connection string of the database prepared by tests/client.sh (extension installed).
pub fn url() -> String {
    std::env::var("PG_EVENTSTORE_TEST_URL")
        .unwrap_or_else(|_| "host=/var/run/postgresql dbname=pg_eventstore_client_tests".to_string())
}

pub fn connect() -> Client {
    Client::connect(&url(), NoTls).unwrap_or_else(|e| panic!("cannot connect to {}: {e}", url()))
}

/// A stream id no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

/// SQLSTATE and message of a database error.
pub fn db_error(e: &postgres::Error) -> (String, String) {
    let db = e.as_db_error().unwrap_or_else(|| panic!("not a database error: {e}"));
    (db.code().code().to_string(), db.message().to_string())
}

/// Asserts that no message of the store ever carries Rust panic text.
pub fn assert_clean_message(message: &str) {
    for needle in ["panicked", "RUST_BACKTRACE", "unwrap()", "src/"] {
        assert!(!message.contains(needle), "panic text reached the client: {message}");
    }
}

pub fn version(c: &mut Client, stream_id: &str) -> i64 {
    c.query_one("SELECT eventstore.stream_version($1)", &[&stream_id]).unwrap().get(0)
}

pub fn sequences(c: &mut Client, stream_id: &str) -> Vec<i64> {
    c.query("SELECT sequence FROM eventstore.load_stream($1)", &[&stream_id])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}
