//! The repository against a real pg_eventstore database (tests/clients.sh prepares it and sets
//! PG_EVENTSTORE_CLIENTS_URL). The first three tests are postgres-es 0.5's own (tests/lib.rs),
//! ported; the rest cover what the store's rules change for cqrs-es.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cqrs_es::doc::{Customer, CustomerCommand, CustomerEvent, CustomerService};
use cqrs_es::persist::{
    PersistedEventRepository, PersistedEventStore, PersistenceError, SemanticVersionEventUpcaster, SerializedEvent,
    ViewContext, ViewRepository,
};
use cqrs_es::{Aggregate, AggregateError, DomainEvent, EventEnvelope, EventStore, Query, View};
use pg_eventstore_cqrs::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::{Pool, Postgres, Row};

fn url() -> String {
    std::env::var("PG_EVENTSTORE_CLIENTS_URL").unwrap_or_else(|_| "postgres:///pg_eventstore_clients?host=/var/run/postgresql".into())
}

async fn pool() -> Pool<Postgres> {
    default_postgres_pool(&url()).await
}

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn new_test_event_store(pool: Pool<Postgres>) -> PersistedEventStore<PgEventStoreRepository, Customer> {
    PersistedEventStore::new_event_store(PgEventStoreRepository::new(pool))
}

// ---- postgres-es 0.5's tests ----

#[tokio::test]
async fn commit_and_load_events() {
    let store = PersistedEventStore::<PgEventStoreRepository, Customer>::new_event_store(PgEventStoreRepository::new(pool().await));
    simple_es_commit_and_load_test(store).await;
}

#[tokio::test]
async fn commit_and_load_events_snapshot_store() {
    let store = PersistedEventStore::<PgEventStoreRepository, Customer>::new_aggregate_store(PgEventStoreRepository::new(pool().await));
    simple_es_commit_and_load_test(store).await;
}

async fn simple_es_commit_and_load_test(event_store: PersistedEventStore<PgEventStoreRepository, Customer>) {
    let id = id();
    assert_eq!(0, event_store.load_events(&id).await.unwrap().len());
    let context = event_store.load_aggregate(&id).await.unwrap();
    event_store
        .commit(
            vec![
                CustomerEvent::NameAdded { name: "test_event_A".to_string() },
                CustomerEvent::EmailUpdated { new_email: "email A".to_string() },
            ],
            context,
            HashMap::default(),
        )
        .await
        .unwrap();
    assert_eq!(2, event_store.load_events(&id).await.unwrap().len());
    let context = event_store.load_aggregate(&id).await.unwrap();
    event_store
        .commit(vec![CustomerEvent::EmailUpdated { new_email: "email B".to_string() }], context, HashMap::default())
        .await
        .unwrap();
    assert_eq!(3, event_store.load_events(&id).await.unwrap().len());
}

#[tokio::test]
async fn upcasted_event() {
    let pool = pool().await;
    // postgres-es's db/init.sql stores this event with event_version '1.0'; here it is appended
    // by plain SQL, as another client would, with the store's integer version 1 (read as "1").
    let id = format!("previous_event_in_need_of_upcast-{}", id());
    sqlx::query("SELECT eventstore.append_event($1, 'Customer', 'NameAdded', '{\"NameAdded\": {}}')")
        .bind(&id)
        .execute(&pool)
        .await
        .unwrap();
    let upcaster = SemanticVersionEventUpcaster::new(
        "NameAdded",
        "1.0.1",
        Box::new(|mut event| match event.get_mut("NameAdded").unwrap() {
            Value::Object(object) => {
                object.insert("name".to_string(), Value::String("UNKNOWN".to_string()));
                event
            }
            _ => panic!("not the expected object"),
        }),
    );
    let event_store = new_test_event_store(pool).with_upcasters(vec![Box::new(upcaster)]);
    let result = event_store.load_aggregate(&id).await.unwrap();
    assert_eq!(1, result.current_sequence);
    assert_eq!(None, result.current_snapshot);
    assert_eq!("UNKNOWN", result.aggregate.name);
}

// ---- what the store's rules change ----

#[tokio::test]
async fn a_stale_context_is_an_optimistic_lock_error() {
    let store = new_test_event_store(pool().await);
    let id = id();
    let a = store.load_aggregate(&id).await.unwrap();
    let b = store.load_aggregate(&id).await.unwrap();
    store.commit(vec![CustomerEvent::NameAdded { name: "first".into() }], a, HashMap::new()).await.unwrap();
    let lost = store.commit(vec![CustomerEvent::NameAdded { name: "second".into() }], b, HashMap::new()).await;
    assert!(matches!(lost, Err(AggregateError::AggregateConflict)), "{:?}", lost.err());
    let events = store.load_events(&id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload, CustomerEvent::NameAdded { name: "first".into() });
}

fn serialized(id: &str, sequence: usize, payload: Value, metadata: Value, version: &str) -> SerializedEvent {
    SerializedEvent::new(id.to_string(), sequence, "Customer".into(), "Probe".into(), version.into(), payload, metadata)
}

#[tokio::test]
async fn payloads_metadata_and_versions_cqrs_es_allows_round_trip() {
    let pool = pool().await;
    let repo = PgEventStoreRepository::new(pool.clone());
    let id = id();
    let sent = vec![
        serialized(&id, 1, json!("UnitVariant"), Value::Null, "1.0"),
        serialized(&id, 2, json!([1, 2]), json!({"user": "ann"}), "2.3.4"),
        serialized(&id, 3, json!({"plain": true}), json!("not an object"), "10"),
        serialized(&id, 4, json!(null), json!({}), "0.1.0"),
    ];
    repo.persist::<Customer>(&sent, None).await.unwrap();
    let got = repo.get_events::<Customer>(&id).await.unwrap();
    assert_eq!(got, sent, "every event loads exactly as it was persisted");
    // stored by the store's rules: objects, the integer version the string starts with
    let rows = sqlx::query("SELECT payload, event_version FROM eventstore.load_stream($1)").bind(&id).fetch_all(&pool).await.unwrap();
    let stored: Vec<(Value, i32)> = rows.iter().map(|r| (r.get::<sqlx::types::Json<Value>, _>(0).0, r.get(1))).collect();
    assert_eq!(stored[0], (json!({"value": "UnitVariant"}), 1));
    assert_eq!(stored[1].1, 2);
    assert_eq!(stored[2], (json!({"plain": true}), 10));
    assert_eq!(stored[3].1, 1);
}

#[tokio::test]
async fn events_appended_by_plain_sql_load_too() {
    let pool = pool().await;
    let id = id();
    sqlx::query("SELECT eventstore.append_events($1, 'Customer', '[{\"type\": \"NameAdded\", \"payload\": {\"NameAdded\": {\"name\": \"sql\"}}, \"version\": 3}]')")
        .bind(&id)
        .execute(&pool)
        .await
        .unwrap();
    let repo = PgEventStoreRepository::new(pool.clone());
    let got = repo.get_events::<Customer>(&id).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].event_version, "3");
    assert_eq!(got[0].metadata, json!({}));
    let store = new_test_event_store(pool);
    assert_eq!(store.load_aggregate(&id).await.unwrap().aggregate.name, "sql");
}

#[tokio::test]
async fn an_empty_commit_succeeds_and_a_broken_batch_is_a_conflict() {
    let repo = PgEventStoreRepository::new(pool().await);
    repo.persist::<Customer>(&[], None).await.unwrap();
    let id = id();
    let gap = vec![serialized(&id, 1, json!({}), json!({}), "1"), serialized(&id, 3, json!({}), json!({}), "1")];
    assert!(matches!(repo.persist::<Customer>(&gap, None).await, Err(PersistenceError::OptimisticLockError)));
    let late = vec![serialized(&id, 2, json!({}), json!({}), "1")];
    assert!(matches!(repo.persist::<Customer>(&late, None).await, Err(PersistenceError::OptimisticLockError)));
    assert!(repo.get_events::<Customer>(&id).await.unwrap().is_empty(), "nothing was written");
}

#[tokio::test]
async fn a_snapshot_is_written_with_its_events_or_not_at_all() {
    let pool = pool().await;
    let repo = PgEventStoreRepository::new(pool.clone());
    let id = id();
    let first = vec![serialized(&id, 1, json!({"n": 1}), json!({}), "1")];
    repo.persist::<Customer>(&first, Some((id.clone(), json!({"state": 1}), 1))).await.unwrap();
    let snap = repo.get_snapshot::<Customer>(&id).await.unwrap().unwrap();
    assert_eq!((snap.current_sequence, snap.current_snapshot, snap.aggregate), (1, 1, json!({"state": 1})));
    // a commit that loses the race writes neither its events nor its snapshot
    let stale = vec![serialized(&id, 1, json!({"n": 9}), json!({}), "1")];
    let lost = repo.persist::<Customer>(&stale, Some((id.clone(), json!({"state": 9}), 2))).await;
    assert!(matches!(lost, Err(PersistenceError::OptimisticLockError)));
    let snap = repo.get_snapshot::<Customer>(&id).await.unwrap().unwrap();
    assert_eq!((snap.current_snapshot, snap.aggregate), (1, json!({"state": 1})));
}

/// A snapshot every 2 events, 3 events in one commit: the snapshot covers events 1 and 2 (where
/// cqrs-es took it), and loading applies event 3 on top of it.
#[tokio::test]
async fn a_snapshot_taken_inside_a_commit_covers_exactly_its_events() {
    let pool = pool().await;
    let repo = PgEventStoreRepository::new(pool.clone()).with_snapshot_size(2);
    let store = PersistedEventStore::<PgEventStoreRepository, Customer>::new_snapshot_store(repo, 2);
    let id = id();
    let ctx = store.load_aggregate(&id).await.unwrap();
    let events = vec![
        CustomerEvent::NameAdded { name: "n".into() },
        CustomerEvent::EmailUpdated { new_email: "a@x".into() },
        CustomerEvent::EmailUpdated { new_email: "b@x".into() },
    ];
    store.commit(events, ctx, HashMap::new()).await.unwrap();
    let seq: i64 = sqlx::query_scalar("SELECT sequence FROM eventstore.load_snapshot($1)").bind(&id).fetch_one(&pool).await.unwrap();
    assert_eq!(seq, 2);
    let loaded = store.load_aggregate(&id).await.unwrap();
    assert_eq!((loaded.aggregate.email.as_str(), loaded.current_sequence), ("b@x", 3));
}

#[tokio::test]
async fn type_prefixed_stream_ids() {
    let pool = pool().await;
    let repo = PgEventStoreRepository::new(pool.clone()).with_type_prefixed_ids();
    let store = PersistedEventStore::<PgEventStoreRepository, Customer>::new_event_store(repo);
    let id = id();
    let ctx = store.load_aggregate(&id).await.unwrap();
    store.commit(vec![CustomerEvent::NameAdded { name: "p".into() }], ctx, HashMap::new()).await.unwrap();
    let version: i64 = sqlx::query_scalar("SELECT eventstore.stream_version($1)").bind(format!("Customer-{id}")).fetch_one(&pool).await.unwrap();
    assert_eq!(version, 1);
    assert_eq!(store.load_events(&id).await.unwrap()[0].aggregate_id, id);
}

// ---- replay ----

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
enum LedgerEvent {
    /// The balance after the posting: applying it twice changes nothing.
    Posted { amount: i64, balance: i64 },
    Closed,
}

impl DomainEvent for LedgerEvent {
    fn event_type(&self) -> String {
        match self {
            LedgerEvent::Posted { .. } => "Posted".into(),
            LedgerEvent::Closed => "Closed".into(),
        }
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct LedgerError(String);

/// cqrs-es's aggregate store applies a commit's events twice when it updates the snapshot (once
/// as the command writes them, once more for the snapshot), so every apply here is idempotent.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Ledger {
    balance: i64,
    closed: bool,
}

enum LedgerCommand {
    Post(i64),
    Close,
}

impl Aggregate for Ledger {
    const TYPE: &'static str = "PgEventStoreCqrsLedger";
    type Command = LedgerCommand;
    type Event = LedgerEvent;
    type Error = LedgerError;
    type Services = ();

    async fn handle(&mut self, command: LedgerCommand, _: &(), sink: &cqrs_es::event_sink::EventSink<Self>) -> Result<(), LedgerError> {
        if self.closed {
            return Err(LedgerError("closed".into()));
        }
        match command {
            LedgerCommand::Post(amount) => {
                let balance = self.balance + amount;
                sink.write(LedgerEvent::Posted { amount, balance }, self).await
            }
            LedgerCommand::Close => sink.write(LedgerEvent::Closed, self).await,
        }
        Ok(())
    }

    fn apply(&mut self, event: LedgerEvent) {
        match event {
            LedgerEvent::Posted { balance, .. } => self.balance = balance,
            LedgerEvent::Closed => self.closed = true,
        }
    }
}

#[derive(Default)]
struct Recorder(Arc<Mutex<Vec<(String, usize, LedgerEvent)>>>);

#[async_trait::async_trait]
impl Query<Ledger> for Recorder {
    async fn dispatch(&self, aggregate_id: &str, events: &[EventEnvelope<Ledger>]) {
        let mut seen = self.0.lock().unwrap();
        for e in events {
            seen.push((aggregate_id.to_string(), e.sequence, e.payload.clone()));
        }
    }
}

/// Commands in through the framework, events in the store (the feed sees them), the query
/// processor fed, and a replay of the whole aggregate type in feed order.
#[tokio::test]
async fn cqrs_framework_end_to_end_and_replay() {
    let pool = pool().await;
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let cqrs: PgEventStoreCqrs<Ledger> = pg_eventstore_cqrs(pool.clone(), vec![Box::new(Recorder(recorded.clone()))], ());
    let (a, b) = (id(), id());
    cqrs.execute(&a, LedgerCommand::Post(10)).await.unwrap();
    cqrs.execute(&b, LedgerCommand::Post(5)).await.unwrap();
    cqrs.execute(&a, LedgerCommand::Post(-3)).await.unwrap();
    cqrs.execute(&a, LedgerCommand::Close).await.unwrap();
    assert!(matches!(cqrs.execute(&a, LedgerCommand::Post(1)).await, Err(AggregateError::UserError(_))));
    let got = recorded.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![
            (a.clone(), 1, LedgerEvent::Posted { amount: 10, balance: 10 }),
            (b.clone(), 1, LedgerEvent::Posted { amount: 5, balance: 5 }),
            (a.clone(), 2, LedgerEvent::Posted { amount: -3, balance: 7 }),
            (a.clone(), 3, LedgerEvent::Closed),
        ]
    );
    let in_feed: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.read_all(0, 100000, ARRAY['PgEventStoreCqrsLedger']) WHERE stream_id IN ($1, $2)")
        .bind(&a)
        .bind(&b)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(in_feed, 4, "the events are in the global feed");

    let repo = PgEventStoreRepository::new(pool.clone()).with_streaming_channel_size(1);
    let mut all = repo.stream_all_events::<Ledger>().await.unwrap();
    let mut ours = Vec::new();
    while let Some(e) = all.next::<Ledger>(&[]).await {
        let e = e.unwrap();
        if e.aggregate_id == a || e.aggregate_id == b {
            ours.push((e.aggregate_id, e.sequence, e.payload));
        }
    }
    assert_eq!(ours, got, "a replay of the type, in the order of the global feed");
    let mut one = repo.stream_events::<Ledger>(&a).await.unwrap();
    let mut n = 0;
    while let Some(e) = one.next::<Ledger>(&[]).await {
        n += 1;
        assert_eq!(e.unwrap().sequence, n);
    }
    assert_eq!(n, 3);
}

#[tokio::test]
async fn the_aggregate_store_applies_twice_harmlessly() {
    let pool = pool().await;
    let cqrs = pg_eventstore_aggregate_cqrs::<Ledger>(pool.clone(), vec![], ());
    let id = id();
    cqrs.execute(&id, LedgerCommand::Post(7)).await.unwrap();
    cqrs.execute(&id, LedgerCommand::Post(8)).await.unwrap();
    let store = PersistedEventStore::<PgEventStoreRepository, Ledger>::new_aggregate_store(PgEventStoreRepository::new(pool));
    let loaded = store.load_aggregate(&id).await.unwrap();
    assert_eq!((loaded.aggregate.balance, loaded.current_sequence), (15, 2));
}

// ---- views ----

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct LedgerView {
    postings: usize,
}

impl View<Ledger> for LedgerView {
    fn update(&mut self, _event: &EventEnvelope<Ledger>) {
        self.postings += 1;
    }
}

#[tokio::test]
async fn views_with_optimistic_locking() {
    let pool = pool().await;
    sqlx::query("CREATE TABLE IF NOT EXISTS ledger_view (view_id text PRIMARY KEY, version bigint NOT NULL, payload jsonb NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    let repo = PgEventStoreViewRepository::<LedgerView, Ledger>::new("ledger_view", pool);
    let id = id();
    assert!(repo.load(&id).await.unwrap().is_none());
    repo.update_view(LedgerView { postings: 1 }, ViewContext::new(id.clone(), 0)).await.unwrap();
    let (view, ctx) = repo.load_with_context(&id).await.unwrap().unwrap();
    assert_eq!((view.postings, ctx.version), (1, 1));
    repo.update_view(LedgerView { postings: 2 }, ViewContext::new(id.clone(), 1)).await.unwrap();
    let stale = repo.update_view(LedgerView { postings: 9 }, ViewContext::new(id.clone(), 1)).await;
    assert!(matches!(stale, Err(PersistenceError::OptimisticLockError)));
    assert_eq!(repo.load(&id).await.unwrap(), Some(LedgerView { postings: 2 }));
}

#[tokio::test]
async fn the_customer_aggregate_through_the_framework() {
    let cqrs = pg_eventstore_cqrs::<Customer>(pool().await, vec![], CustomerService);
    let id = id();
    cqrs.execute(&id, CustomerCommand::AddCustomerName { name: "ann".into() }).await.unwrap();
    cqrs.execute(&id, CustomerCommand::UpdateEmail { new_email: "ann@x".into() }).await.unwrap();
    let store = new_test_event_store(pool().await);
    let events: Vec<_> = store.load_events(&id).await.unwrap().into_iter().map(|e| e.payload).collect();
    // CustomerDataPopulated is a unit variant: its payload is a string, stored wrapped
    assert_eq!(events.last(), Some(&CustomerEvent::CustomerDataPopulated));
    assert!(store.load_aggregate(&id).await.unwrap().aggregate.data_populated);
}
