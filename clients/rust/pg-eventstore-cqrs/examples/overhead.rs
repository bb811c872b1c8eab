//! What the cqrs-es adapter costs per command over calling the store's SQL functions directly
//! (bench/adapter.sh runs it, release build). Both variants do the same work for each command:
//! load the aggregate's events, fold them, decide, append the new event with the expected
//! version. The adapter does it through cqrs-es (`CqrsFramework::execute`), the baseline with two
//! plain queries over the same sqlx pool. Variants alternate in rounds; the median round counts.
//!
//! `cargo run --release --example overhead -- <database url> [commands per round] [rounds]`

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use pg_eventstore_cqrs::{default_postgres_pool, pg_eventstore_cqrs};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::types::Json;
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CounterEvent {
    Added { by: i64, total: i64 },
}

impl DomainEvent for CounterEvent {
    fn event_type(&self) -> String {
        "Added".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct CounterError(String);

#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    total: i64,
}

impl Aggregate for Counter {
    const TYPE: &'static str = "OverheadCounter";
    type Command = i64;
    type Event = CounterEvent;
    type Error = CounterError;
    type Services = ();

    async fn handle(&mut self, by: i64, _: &(), sink: &EventSink<Self>) -> Result<(), CounterError> {
        let total = self.total + by;
        sink.write(CounterEvent::Added { by, total }, self).await;
        Ok(())
    }

    fn apply(&mut self, CounterEvent::Added { total, .. }: CounterEvent) {
        self.total = total;
    }
}

/// The same command without the framework: load, fold, decide, append.
async fn direct(pool: &sqlx::PgPool, id: &str, by: i64) {
    let rows: Vec<(i64, Json<Value>)> = sqlx::query_as("SELECT sequence, payload FROM eventstore.load_stream($1)")
        .bind(id)
        .fetch_all(pool)
        .await
        .unwrap();
    let mut counter = Counter::default();
    let mut version = 0;
    for (sequence, payload) in rows {
        let event: CounterEvent = serde_json::from_value(payload.0).unwrap();
        counter.apply(event);
        version = sequence;
    }
    let event = CounterEvent::Added { by, total: counter.total + by };
    let batch = json!([{"type": event.event_type(), "payload": serde_json::to_value(&event).unwrap()}]);
    sqlx::query("SELECT eventstore.append_events($1, $2, $3, $4)")
        .bind(id)
        .bind(Counter::TYPE)
        .bind(Json(batch))
        .bind(version)
        .execute(pool)
        .await
        .unwrap();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).cloned().unwrap_or_else(|| "postgres:///pg_eventstore_clients?host=/var/run/postgresql".into());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let rounds: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
    let pool = default_postgres_pool(&url).await;
    let cqrs = pg_eventstore_cqrs::<Counter>(pool.clone(), vec![], ());
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (mut framework, mut plain) = (Vec::new(), Vec::new());
    // ten commands per aggregate: loads stay the size an application's would
    for round in 0..rounds {
        for variant in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            let started = Instant::now();
            for i in 0..n {
                let id = format!("overhead-{run}-{round}-{variant}-{}", i / 10);
                if variant == 0 {
                    cqrs.execute(&id, 1).await.unwrap();
                } else {
                    direct(&pool, &id, 1).await;
                }
            }
            let per = started.elapsed().as_secs_f64() * 1e6 / n as f64;
            if variant == 0 { framework.push(per) } else { plain.push(per) }
        }
    }
    let ratios: Vec<f64> = framework.iter().zip(&plain).map(|(f, p)| f / p).collect();
    println!("commands per round: {n}, rounds: {rounds}");
    println!("cqrs-es adapter (CqrsFramework::execute): median {:.1} us per command, rounds {:?}", median(framework.clone()), framework.iter().map(|x| x.round() as i64).collect::<Vec<_>>());
    println!("direct SQL (load_stream + append_events): median {:.1} us per command, rounds {:?}", median(plain.clone()), plain.iter().map(|x| x.round() as i64).collect::<Vec<_>>());
    println!("adapter / direct: median of per-round ratios {:.3}", median(ratios));
}
