//! The client against a real pg_eventstore database (tests/clients.sh prepares it and sets
//! PG_EVENTSTORE_CLIENTS_URL).

use futures::TryStreamExt;
use pg_eventstore_client::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn url() -> String {
    std::env::var("PG_EVENTSTORE_CLIENTS_URL").unwrap_or_else(|_| "postgres:///pg_eventstore_clients?host=/var/run/postgresql".into())
}

fn id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Deposited {
    amount: i64,
}

#[tokio::test]
async fn append_load_and_typed_payloads() {
    let store = EventStore::connect(&url()).await.unwrap();
    let s = id("acct");
    let v = store
        .append(&s, "Account", &[NewEvent::new("Deposited", &Deposited { amount: 5 }).unwrap()], ExpectedVersion::NoStream)
        .await
        .unwrap();
    assert_eq!(v, 1);
    let two = [
        NewEvent::new("Deposited", &Deposited { amount: 7 }).unwrap().with_metadata(&json!({"trace": "t-1"})).unwrap(),
        NewEvent::new("Deposited", &Deposited { amount: 9 }).unwrap().with_version(2),
    ];
    assert_eq!(store.append(&s, "Account", &two, ExpectedVersion::Exact(1)).await.unwrap(), 3);
    let events = store.load(&s, 1).await.unwrap();
    assert_eq!(events.iter().map(|e| e.sequence).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(events[1].payload_as::<Deposited>().unwrap(), Deposited { amount: 7 });
    assert_eq!(events[1].metadata, json!({"trace": "t-1"}));
    assert_eq!(events[2].event_version, 2);
    assert_eq!(store.stream_version(&s).await.unwrap(), 3);
    assert!(NewEvent::new("Bad", &json!([1, 2])).is_err(), "payloads are objects");
}

#[tokio::test]
async fn conflicts_carry_the_stream_and_both_versions() {
    let store = EventStore::connect(&url()).await.unwrap();
    let s = id("acct");
    let e = || NewEvent::new("Deposited", &Deposited { amount: 1 }).unwrap();
    store.append(&s, "Account", &[e()], ExpectedVersion::Any).await.unwrap();
    match store.append(&s, "Account", &[e()], ExpectedVersion::Exact(5)).await {
        Err(Error::Conflict { stream, expected, actual }) => assert_eq!((stream, expected, actual), (s.clone(), Some(5), Some(1))),
        other => panic!("{other:?}"),
    }
    assert!(store.append(&s, "Account", &[e()], ExpectedVersion::NoStream).await.unwrap_err().is_conflict());
    assert!(matches!(store.append(&s, "Other", &[e()], ExpectedVersion::Any).await, Err(Error::InvalidArgument(_))));
    assert!(matches!(store.append("", "Account", &[e()], ExpectedVersion::Any).await, Err(Error::InvalidArgument(_))));
    // a retried append with the same event id is answered from the stored event
    let fixed = uuid::Uuid::new_v4();
    let first = store.append(&s, "Account", &[e().with_id(fixed)], ExpectedVersion::Any).await.unwrap();
    let again = store.append(&s, "Account", &[e().with_id(fixed)], ExpectedVersion::Exact(first - 1)).await.unwrap();
    assert_eq!(first, again);
    assert!(matches!(store.append(&id("other"), "Account", &[e().with_id(fixed)], ExpectedVersion::Any).await, Err(Error::Duplicate(_))));
}

#[tokio::test]
async fn snapshots_commands_and_causation() {
    let store = EventStore::connect(&url()).await.unwrap();
    let s = id("order");
    let cmd = store.record_command(&NewCommand::new("PlaceOrder", &json!({"items": 2})).unwrap().for_stream(&s).by_user("ann")).await.unwrap();
    let placed = NewEvent::new("Placed", &json!({"items": 2})).unwrap();
    store.append_for_command(&s, "Order", &[placed], ExpectedVersion::NoStream, cmd).await.unwrap();
    store.take_snapshot(&s, 1, &json!({"items": 2}), 1).await.unwrap();
    store.append(&s, "Order", &[NewEvent::new("Paid", &json!({})).unwrap()], ExpectedVersion::Exact(1)).await.unwrap();
    let loaded = store.load_aggregate(&s).await.unwrap();
    assert_eq!(loaded.snapshot.as_ref().map(|s| s.sequence), Some(1));
    assert_eq!(loaded.events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), vec!["Paid"]);
    assert_eq!(loaded.version(), 2);
    let unknown = store.load_aggregate(&id("nothing")).await.unwrap();
    assert_eq!((unknown.version(), unknown.snapshot, unknown.events.len()), (0, None, 0));
    // a command caused by the Paid event, and its chain back to the root
    let ship = store.record_command(&NewCommand::new("Ship", &json!({})).unwrap().caused_by(&s, 2)).await.unwrap();
    let t = id("shipment");
    store.append_for_command(&t, "Shipment", &[NewEvent::new("Shipped", &json!({})).unwrap()], ExpectedVersion::NoStream, ship).await.unwrap();
    let chain = store.causation_chain(&t, 1).await.unwrap();
    let kinds: Vec<_> = chain.iter().map(|l| (l.kind.as_str(), l.type_name.as_str())).collect();
    assert_eq!(kinds, vec![("event", "Shipped"), ("command", "Ship"), ("event", "Paid")]);
    let missing = store.append_for_command(&t, "Shipment", &[NewEvent::new("X", &json!({})).unwrap()], ExpectedVersion::Any, uuid::Uuid::new_v4()).await;
    assert!(matches!(missing, Err(Error::NotFound(_))), "{missing:?}");
}

#[tokio::test]
async fn read_all_is_a_stream_of_the_feed() {
    let store = EventStore::connect(&url()).await.unwrap();
    let kind = format!("Feed{}", uuid::Uuid::new_v4().simple());
    for i in 0..1203 {
        let e = NewEvent::new("Ticked", &json!({"i": i})).unwrap();
        store.append(&id("feed"), &kind, &[e], ExpectedVersion::Any).await.unwrap();
    }
    let got: Vec<RecordedEvent> = store.read_all(0, FeedFilter::stream_types([kind.as_str()])).try_collect().await.unwrap();
    assert_eq!(got.len(), 1203, "across pages of 500");
    assert!(got.windows(2).all(|w| w[0].global_position < w[1].global_position));
    assert_eq!(got[1202].payload, json!({"i": 1202}));
    assert_eq!(got[0].stream_type, kind);
}

#[tokio::test]
async fn a_consumer_acks_after_success_and_redelivers_after_failure() {
    let store = EventStore::connect(&url()).await.unwrap();
    let kind = format!("Sub{}", uuid::Uuid::new_v4().simple());
    let name = id("subscriber");
    store.create_subscription(&name, Some(&[kind.as_str()]), 0).await.unwrap();
    assert!(matches!(store.create_subscription(&name, None, 0).await, Err(Error::AlreadyExists(_))));
    let seen = Arc::new(Mutex::new(Vec::<i64>::new()));
    let failures = Arc::new(Mutex::new(0));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let consumer = store.consumer(&name).batch_size(3).idle_poll(Duration::from_millis(200));
    let (s2, f2) = (seen.clone(), failures.clone());
    let worker = tokio::spawn(async move {
        consumer
            .run(
                move |batch: Vec<RecordedEvent>| {
                    let (seen, failures) = (s2.clone(), f2.clone());
                    async move {
                        // the first delivery of the batch holding event 5 fails once
                        if batch.iter().any(|e| e.payload["i"] == 5) && *failures.lock().unwrap() == 0 {
                            *failures.lock().unwrap() += 1;
                            return Err("transient failure");
                        }
                        seen.lock().unwrap().extend(batch.iter().map(|e| e.payload["i"].as_i64().unwrap()));
                        Ok(())
                    }
                },
                |_| {},
                async {
                    let _ = stopped.await;
                },
            )
            .await
    });
    for i in 0..10 {
        store.append(&id("sub"), &kind, &[NewEvent::new("Ticked", &json!({"i": i})).unwrap()], ExpectedVersion::Any).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while seen.lock().unwrap().len() < 10 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    assert_eq!(*seen.lock().unwrap(), (0..10).collect::<Vec<_>>(), "every event once, in order, after one failed delivery");
    assert_eq!(*failures.lock().unwrap(), 1);
    let lag: i64 = sqlx::query_scalar("SELECT lag_events FROM eventstore.subscriptions WHERE name = $1")
        .bind(&name)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(lag, 0, "acknowledged");
    store.delete_subscription(&name).await.unwrap();
    assert!(matches!(store.delete_subscription(&name).await, Err(Error::NotFound(_))));
}
