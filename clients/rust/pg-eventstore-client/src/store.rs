//! The store's SQL functions, called over sqlx. Each operation is also a free function over any
//! executor, so that it can run inside a caller's transaction (`&mut *tx`).

use crate::types::*;
use crate::Error;
use futures::Stream;
use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{PgExecutor, Row};
use uuid::Uuid;

/// A pg_eventstore database, through a connection pool.
#[derive(Clone, Debug)]
pub struct EventStore {
    pool: PgPool,
}

impl EventStore {
    pub fn new(pool: PgPool) -> EventStore {
        EventStore { pool }
    }

    /// A pool of up to 10 connections to `url`.
    pub async fn connect(url: &str) -> Result<EventStore, Error> {
        Ok(EventStore::new(PgPoolOptions::new().max_connections(10).connect(url).await?))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Appends `events` (all or nothing) and returns the last one's sequence.
    pub async fn append(&self, stream_id: &str, stream_type: &str, events: &[NewEvent], expected: ExpectedVersion) -> Result<i64, Error> {
        append(&self.pool, stream_id, stream_type, events, expected, None).await
    }

    /// Appends events caused by a recorded command.
    pub async fn append_for_command(
        &self,
        stream_id: &str,
        stream_type: &str,
        events: &[NewEvent],
        expected: ExpectedVersion,
        command_id: Uuid,
    ) -> Result<i64, Error> {
        append(&self.pool, stream_id, stream_type, events, expected, Some(command_id)).await
    }

    /// The stream's events from `from_sequence` on (1: all).
    pub async fn load(&self, stream_id: &str, from_sequence: i64) -> Result<Vec<RecordedEvent>, Error> {
        load(&self.pool, stream_id, from_sequence).await
    }

    /// The newest snapshot and the events after it, in one round trip.
    pub async fn load_aggregate(&self, stream_id: &str) -> Result<Loaded, Error> {
        load_aggregate(&self.pool, stream_id).await
    }

    /// The stream's version; 0 for an unknown stream.
    pub async fn stream_version(&self, stream_id: &str) -> Result<i64, Error> {
        Ok(sqlx::query_scalar("SELECT eventstore.stream_version($1)").bind(stream_id).fetch_one(&self.pool).await?)
    }

    /// Stores the state folded from events 1..=sequence.
    pub async fn take_snapshot(&self, stream_id: &str, sequence: i64, state: &impl Serialize, snapshot_version: i32) -> Result<(), Error> {
        take_snapshot(&self.pool, stream_id, sequence, &serde_json::to_value(state)?, snapshot_version).await
    }

    /// Records a command and returns its id.
    pub async fn record_command(&self, command: &NewCommand) -> Result<Uuid, Error> {
        record_command(&self.pool, command).await
    }

    /// From an event back to the root command.
    pub async fn causation_chain(&self, stream_id: &str, sequence: i64) -> Result<Vec<ChainLink>, Error> {
        let rows = sqlx::query("SELECT depth, kind, command_id, stream_id, sequence, type FROM eventstore.causation_chain($1, $2)")
            .bind(stream_id)
            .bind(sequence)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| ChainLink {
                depth: r.get(0),
                kind: r.get(1),
                command_id: r.get(2),
                stream_id: r.get(3),
                sequence: r.get(4),
                type_name: r.get(5),
            })
            .collect())
    }

    /// The global feed after `after`, page by page, up to what is readable now (the stream ends
    /// there; read on from the last position later, or follow a subscription). Gap-safe: an event
    /// that commits late is never skipped.
    pub fn read_all(&self, after: i64, filter: FeedFilter) -> impl Stream<Item = Result<RecordedEvent, Error>> + '_ {
        const PAGE: i32 = 500;
        futures::stream::try_unfold((after, Vec::<RecordedEvent>::new(), false), move |(after, mut page, done)| {
            let filter = filter.clone();
            async move {
                if page.is_empty() && !done {
                    page = read_all_page(&self.pool, after, PAGE, &filter).await?;
                    page.reverse();
                    let done = page.len() < PAGE as usize;
                    return match page.pop() {
                        Some(e) => Ok(Some((e.clone(), (e.global_position, page, done)))),
                        None => Ok(None),
                    };
                }
                Ok(page.pop().map(|e| (e.clone(), (e.global_position, page, done))))
            }
        })
    }

    pub async fn create_subscription(&self, name: &str, stream_types: Option<&[&str]>, start_from: i64) -> Result<(), Error> {
        sqlx::query("SELECT eventstore.create_subscription($1, $2, NULL, $3)")
            .bind(name)
            .bind(stream_types.map(|t| t.iter().map(|s| s.to_string()).collect::<Vec<_>>()))
            .bind(start_from)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_subscription(&self, name: &str) -> Result<(), Error> {
        sqlx::query("SELECT eventstore.delete_subscription($1)").bind(name).execute(&self.pool).await?;
        Ok(())
    }

    /// A worker for the durable subscription `name` (see [`crate::Consumer`]).
    pub fn consumer(&self, name: &str) -> crate::Consumer {
        crate::Consumer::new(self.pool.clone(), name)
    }
}

/// `append_events` over any executor: inside a transaction, pass `&mut *tx`.
pub async fn append<'c>(
    exec: impl PgExecutor<'c>,
    stream_id: &str,
    stream_type: &str,
    events: &[NewEvent],
    expected: ExpectedVersion,
    command_id: Option<Uuid>,
) -> Result<i64, Error> {
    let batch = Value::Array(events.iter().map(NewEvent::to_json).collect());
    Ok(sqlx::query_scalar("SELECT eventstore.append_events($1, $2, $3, $4, $5)")
        .bind(stream_id)
        .bind(stream_type)
        .bind(Json(batch))
        .bind(expected.to_sql())
        .bind(command_id)
        .fetch_one(exec)
        .await?)
}

const EVENT_COLUMNS: &str = "sequence, event_type, event_version, payload, metadata, event_id, command_id, global_position, created_at";

/// `load_stream` over any executor. (Events of a stream do not carry its type: `stream_type` is empty.)
pub async fn load<'c>(exec: impl PgExecutor<'c>, stream_id: &str, from_sequence: i64) -> Result<Vec<RecordedEvent>, Error> {
    let rows = sqlx::query(&format!("SELECT {EVENT_COLUMNS} FROM eventstore.load_stream($1, $2)"))
        .bind(stream_id)
        .bind(from_sequence)
        .fetch_all(exec)
        .await?;
    Ok(rows.iter().map(|r| stream_event(r, 0, stream_id)).collect())
}

/// The newest snapshot and the events after it (one query).
pub async fn load_aggregate<'c>(exec: impl PgExecutor<'c>, stream_id: &str) -> Result<Loaded, Error> {
    let rows = sqlx::query(&format!(
        "SELECT s.sequence, s.snapshot_version, s.payload, s.created_at, e.{} \
         FROM (SELECT 1) one \
         LEFT JOIN eventstore.load_snapshot($1) s ON true \
         LEFT JOIN LATERAL eventstore.load_stream($1, COALESCE(s.sequence, 0) + 1) e ON true \
         ORDER BY e.sequence",
        EVENT_COLUMNS.replace(", ", ", e.")
    ))
    .bind(stream_id)
    .fetch_all(exec)
    .await?;
    let snapshot = rows.first().and_then(|r| {
        r.get::<Option<i64>, _>(0).map(|sequence| Snapshot {
            sequence,
            snapshot_version: r.get(1),
            payload: r.get::<Json<Value>, _>(2).0,
            created_at: r.get(3),
        })
    });
    let events = rows.iter().filter(|r| r.get::<Option<i64>, _>(4).is_some()).map(|r| stream_event(r, 4, stream_id)).collect();
    Ok(Loaded { snapshot, events })
}

/// A row with `EVENT_COLUMNS` from column `at` on.
fn stream_event(r: &PgRow, at: usize, stream_id: &str) -> RecordedEvent {
    RecordedEvent {
        stream_id: stream_id.to_string(),
        stream_type: String::new(),
        sequence: r.get(at),
        event_type: r.get(at + 1),
        event_version: r.get(at + 2),
        payload: r.get::<Json<Value>, _>(at + 3).0,
        metadata: r.get::<Json<Value>, _>(at + 4).0,
        event_id: r.get(at + 5),
        command_id: r.get(at + 6),
        global_position: r.get(at + 7),
        created_at: r.get(at + 8),
    }
}

/// `take_snapshot` over any executor.
pub async fn take_snapshot<'c>(exec: impl PgExecutor<'c>, stream_id: &str, sequence: i64, state: &Value, snapshot_version: i32) -> Result<(), Error> {
    sqlx::query("SELECT eventstore.take_snapshot($1, $2, $3, $4)")
        .bind(stream_id)
        .bind(sequence)
        .bind(Json(state))
        .bind(snapshot_version)
        .execute(exec)
        .await?;
    Ok(())
}

/// `record_command` over any executor.
pub async fn record_command<'c>(exec: impl PgExecutor<'c>, c: &NewCommand) -> Result<Uuid, Error> {
    Ok(sqlx::query_scalar("SELECT eventstore.record_command($1, $2, $3, $4, $5, $6, $7)")
        .bind(&c.command_type)
        .bind(Json(&c.payload))
        .bind(&c.stream_id)
        .bind(&c.user_id)
        .bind(c.caused_by.as_ref().map(|c| c.0.as_str()))
        .bind(c.caused_by.as_ref().map(|c| c.1))
        .bind(c.command_id)
        .fetch_one(exec)
        .await?)
}

const FEED_COLUMNS: &str =
    "global_position, stream_id, stream_type, sequence, event_type, event_version, payload, metadata, event_id, command_id, created_at";

/// One page of `read_all` over any executor.
pub async fn read_all_page<'c>(exec: impl PgExecutor<'c>, after: i64, max_count: i32, f: &FeedFilter) -> Result<Vec<RecordedEvent>, Error> {
    let rows = sqlx::query(&format!("SELECT {FEED_COLUMNS} FROM eventstore.read_all($1, $2, $3, $4, $5, $6)"))
        .bind(after)
        .bind(max_count)
        .bind(&f.stream_types)
        .bind(&f.event_types)
        .bind(f.consumer_group.map(|g| g.0))
        .bind(f.consumer_group.map(|g| g.1))
        .fetch_all(exec)
        .await?;
    Ok(rows.iter().map(feed_event).collect())
}

pub(crate) fn feed_event(r: &PgRow) -> RecordedEvent {
    RecordedEvent {
        global_position: r.get(0),
        stream_id: r.get(1),
        stream_type: r.get(2),
        sequence: r.get(3),
        event_type: r.get(4),
        event_version: r.get(5),
        payload: r.get::<Json<Value>, _>(6).0,
        metadata: r.get::<Json<Value>, _>(7).0,
        event_id: r.get(8),
        command_id: r.get(9),
        created_at: r.get(10),
    }
}
