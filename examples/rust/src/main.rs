//! A bank account on pg_eventstore: commands are recorded, events appended with the expected
//! version, a lost race is retried after reloading, and a projection follows a durable
//! subscription. `cargo run -p pg-eventstore-bank-example -- <database url>`.

use pg_eventstore_client::{Error, EventStore, ExpectedVersion, NewCommand, NewEvent, RecordedEvent};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type")]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: i64 },
    Withdrawn { amount: i64 },
}

#[derive(Debug, Default)]
struct Account {
    balance: i64,
    version: i64,
}

impl Account {
    fn apply(&mut self, e: &RecordedEvent) {
        match serde_json::from_value::<AccountEvent>(serde_json::json!({"type": e.event_type, "owner": e.payload.get("owner"), "amount": e.payload.get("amount")}))
            .expect("a known event")
        {
            AccountEvent::Opened { .. } => {}
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
        }
        self.version = e.sequence;
    }
}

async fn load(store: &EventStore, id: &str) -> Result<Account, Error> {
    let mut account = Account::default();
    for e in store.load_aggregate(id).await?.events {
        account.apply(&e);
    }
    Ok(account)
}

/// Withdraws if the balance allows, retrying when another writer got in first.
async fn withdraw(store: &EventStore, id: &str, amount: i64) -> Result<bool, Error> {
    loop {
        let account = load(store, id).await?;
        if account.balance < amount {
            return Ok(false);
        }
        let command = store.record_command(&NewCommand::new("Withdraw", &serde_json::json!({"amount": amount}))?.for_stream(id)).await?;
        let event = NewEvent::new("Withdrawn", &serde_json::json!({"amount": amount}))?;
        match store.append_for_command(id, "Account", &[event], ExpectedVersion::Exact(account.version), command).await {
            Ok(_) => return Ok(true),
            Err(Error::Conflict { expected, actual, .. }) => {
                println!("conflict: expected version {expected:?}, found {actual:?}; reloading");
            }
            Err(e) => return Err(e),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "postgres:///pg_eventstore_clients?host=/var/run/postgresql".into());
    let store = EventStore::connect(&url).await?;
    let id = format!("account-{}", uuid::Uuid::new_v4());
    let subscription = format!("balances-{}", uuid::Uuid::new_v4());
    store.create_subscription(&subscription, Some(&["Account"]), 0).await?;

    store.append(&id, "Account", &[NewEvent::new("Opened", &serde_json::json!({"owner": "ann"}))?], ExpectedVersion::NoStream).await?;
    store.append(&id, "Account", &[NewEvent::new("Deposited", &serde_json::json!({"amount": 100}))?], ExpectedVersion::Exact(1)).await?;

    // two tellers withdraw at once: one of them meets a conflict and retries
    let (a, b) = tokio::join!(withdraw(&store, &id, 30), withdraw(&store, &id, 50));
    println!("withdrawals: {:?} {:?}", a?, b?);
    let account = load(&store, &id).await?;
    println!("balance {} at version {}", account.balance, account.version);
    assert_eq!(account.balance, 20);

    // a projection following the subscription
    let seen = Arc::new(Mutex::new(0i64));
    let counted = seen.clone();
    let mine = id.clone();
    let consumer = store.consumer(&subscription).idle_poll(Duration::from_millis(200));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(async move {
        consumer
            .run(
                move |batch: Vec<RecordedEvent>| {
                    let counted = counted.clone();
                    let mine = mine.clone();
                    async move {
                        *counted.lock().unwrap() += batch.iter().filter(|e| e.stream_id == mine).count() as i64;
                        Ok::<(), String>(())
                    }
                },
                |event| eprintln!("consumer: {event:?}"),
                async {
                    let _ = stopped.await;
                },
            )
            .await
    });
    for _ in 0..100 {
        if *seen.lock().unwrap() == account.version {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    worker.await.expect("the consumer ran")?;
    println!("projection saw {} events of the account", seen.lock().unwrap());
    assert_eq!(*seen.lock().unwrap(), account.version);
    store.delete_subscription(&subscription).await?;
    println!("ok");
    Ok(())
}
