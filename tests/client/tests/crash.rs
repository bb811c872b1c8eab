//! Crash safety: concurrent appenders run against a cluster of their own, the postmaster and all
//! its processes get SIGKILL mid-load, the cluster restarts (crash recovery), and then every append
//! the clients saw acknowledged must be there, no stream may have a gap or a partial batch, and
//! every stream's version must match its events. Several rounds, each killed at another moment.
//! CRASH_ROUNDS (default 3) sets how many; the documented long run uses 20.

use pg_eventstore_client_tests::*;
use postgres::{Client, NoTls};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the clients were told is committed: per stream, each acknowledged (sequence, event id).
type Acked = Arc<Mutex<HashMap<String, Vec<(i64, uuid::Uuid)>>>>;

fn writer(url: String, id: usize, round: u64, acked: Acked, count: Arc<AtomicUsize>) {
    let mut c = match Client::connect(&url, NoTls) {
        Ok(c) => c,
        Err(_) => return,
    };
    let mut rng = Rng::new(round * 100 + id as u64 + 1);
    let streams: Vec<String> = (0..4).map(|k| format!("crash-w{id}-s{k}")).collect();
    let mut versions: HashMap<String, i64> = HashMap::new();
    for s in &streams {
        match c.query_one("SELECT eventstore.stream_version($1)", &[s]) {
            Ok(r) => versions.insert(s.clone(), r.get(0)),
            Err(_) => return,
        };
    }
    let mut batch_no = 0u64;
    loop {
        let s = rng.pick(&streams).clone();
        let expected = versions[&s];
        batch_no += 1;
        let batch = format!("r{round}-w{id}-b{batch_no}");
        let size = match rng.below(3) {
            0 => 1,
            1 => 1 + rng.below(20) as usize,
            _ => 50,
        };
        let ids: Vec<uuid::Uuid> = (0..size).map(|_| uuid::Uuid::new_v4()).collect();
        let events: Vec<serde_json::Value> = ids
            .iter()
            .enumerate()
            .map(|(i, e)| {
                json!({"type": "Happened", "id": e.to_string(), "payload": {"i": i, "pad": "x".repeat(200)},
                       "metadata": {"batch": batch, "size": size}})
            })
            .collect();
        let result = if rng.below(4) == 0 {
            // a command and its events in one transaction
            let mut run = || -> Result<i64, postgres::Error> {
                let mut t = c.transaction()?;
                let cmd: uuid::Uuid =
                    t.query_one("SELECT eventstore.record_command('Do', '{}', $1)", &[&s])?.get(0);
                let v: i64 = t
                    .query_one("SELECT eventstore.append_events($1, 'Crash', $2, $3, $4)", &[&s, &json!(events), &expected, &cmd])?
                    .get(0);
                t.commit()?;
                Ok(v)
            };
            run()
        } else {
            c.query_one("SELECT eventstore.append_events($1, 'Crash', $2, $3)", &[&s, &json!(events), &expected])
                .map(|r| r.get(0))
        };
        match result {
            Ok(v) => {
                assert_eq!(v, expected + size as i64);
                versions.insert(s.clone(), v);
                let mut a = acked.lock().unwrap();
                let list = a.entry(s).or_default();
                list.extend(ids.iter().enumerate().map(|(i, e)| (expected + 1 + i as i64, *e)));
                count.fetch_add(size, Ordering::Relaxed);
            }
            Err(e) => {
                // the server went away; anything else is a bug
                if let Some(db) = e.as_db_error() {
                    let code = db.code().code();
                    assert!(
                        ["57P01", "57P02", "57P03", "08006"].contains(&code),
                        "writer {id}: unexpected error {code}: {}",
                        db.message()
                    );
                }
                return;
            }
        }
    }
}

fn check(c: &mut Client, acked: &Acked) -> usize {
    let acked = acked.lock().unwrap();
    let mut n = 0;
    for (stream, events) in acked.iter() {
        let stored: HashMap<i64, uuid::Uuid> = c
            .query("SELECT sequence, event_id FROM eventstore.load_stream($1)", &[stream])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for (seq, id) in events {
            assert_eq!(stored.get(seq), Some(id), "acknowledged event {stream}#{seq} is missing after the crash");
            n += 1;
        }
        let version = version(c, stream);
        assert_eq!(version as usize, stored.len(), "{stream}: version {version} but {} events", stored.len());
    }
    let partial: Vec<String> = c
        .query(
            "SELECT metadata->>'batch' FROM eventstore.read_all(0, 2147483647) \
             GROUP BY 1 HAVING count(*) <> max((metadata->>'size')::int)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(partial.is_empty(), "partial batches after the crash: {partial:?}");
    assert_eq!(violations(c), Vec::<String>::new());
    check_indexes(c);
    n
}

#[test]
fn acknowledged_appends_survive_sigkill_of_the_server() {
    let rounds: u64 = env_or("CRASH_ROUNDS", 3);
    let cluster = Scratch::create("crash", 54328);
    let url = cluster.url("crash");
    let mut setup = fresh_db(&url, "crash", None);
    if env_or("CRASH_ASYNC_COMMIT", 0) == 1 {
        // The control experiment: acknowledging commits before their WAL is flushed must make
        // this test fail (acknowledged events go missing), which shows that it can.
        setup.batch_execute("ALTER SYSTEM SET synchronous_commit = off").unwrap();
        setup.batch_execute("SELECT pg_reload_conf()").unwrap();
    }
    drop(setup);
    let acked: Acked = Arc::default();
    let mut rng = Rng::new(42);
    for round in 0..rounds {
        let count = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..4)
            .map(|id| {
                let (url, acked, count) = (url.clone(), acked.clone(), count.clone());
                std::thread::spawn(move || writer(url, id, round, acked, count))
            })
            .collect();
        // a checkpoint running while the kill lands, in every other round
        let checkpointer = (round % 2 == 1).then(|| {
            let url = url.clone();
            std::thread::spawn(move || {
                if let Ok(mut c) = Client::connect(&url, NoTls) {
                    let _ = c.batch_execute("CHECKPOINT");
                }
            })
        });
        let started = Instant::now();
        while count.load(Ordering::Relaxed) < 200 && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let delay = Duration::from_millis(50 + rng.below(1500));
        std::thread::sleep(delay);
        cluster.kill9();
        for w in writers {
            w.join().expect("a writer failed");
        }
        if let Some(t) = checkpointer {
            let _ = t.join();
        }
        cluster.start();
        let mut c = Client::connect(&url, NoTls).unwrap();
        let checked = check(&mut c, &acked);
        println!(
            "round {round}: killed {} ms after the writers got going, {} acknowledged events this round, {checked} in all, all present",
            delay.as_millis(),
            count.load(Ordering::Relaxed)
        );
    }
}
