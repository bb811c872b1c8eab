//! Stress: many sessions appending, recording commands, snapshotting, following the feed and
//! consuming a subscription at once. The only error allowed is the documented concurrency
//! conflict (40001); no deadlock, nothing else. At the end every reader has seen every event once,
//! in order, eventstore.verify() finds nothing wrong and amcheck finds every index whole. STRESS_SECONDS (default 15) sets the
//! length; the documented long run is 300.

use pg_eventstore_client_tests::*;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Tally {
    ops: AtomicU64,
    conflicts: AtomicU64,
    errors: Mutex<HashMap<String, (u64, String)>>,
}

impl Tally {
    fn record<T>(&self, r: Result<T, postgres::Error>) -> Option<T> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                let (code, message) = match e.as_db_error() {
                    Some(db) => (db.code().code().to_string(), db.message().to_string()),
                    None => ("client".to_string(), e.to_string()),
                };
                if code == "40001" {
                    self.conflicts.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.errors.lock().unwrap().entry(code).or_insert((0, message)).0 += 1;
                }
                None
            }
        }
    }
}

fn writer(id: u64, streams: Arc<Vec<String>>, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut c = connect();
    let mut rng = Rng::new(id + 7);
    while !stop.load(Ordering::Relaxed) {
        let s = rng.pick(&streams).clone();
        match rng.below(6) {
            // read the version, then append expecting it: loses to concurrent writers now and then
            0 | 1 => {
                let v = version(&mut c, &s);
                tally.record(c.query_one(
                    "SELECT eventstore.append_event($1, 'Stress', 'Ticked', $2, expected_version => $3)",
                    &[&s, &json!({"n": v}), &v],
                ));
            }
            2 => {
                let events: Vec<_> =
                    (0..1 + rng.below(10)).map(|i| json!({"type": "Batched", "payload": {"i": i}})).collect();
                tally.record(c.query_one("SELECT eventstore.append_events($1, 'Stress', $2)", &[&s, &json!(events)]));
            }
            // a command caused by the stream's latest event, and the event it causes, together
            3 => {
                let r = (|| -> Result<(), postgres::Error> {
                    let mut t = c.transaction()?;
                    let cause = t.query_opt("SELECT sequence FROM eventstore.last_event($1)", &[&s])?;
                    let seq: Option<i64> = cause.map(|r| r.get(0));
                    let cmd: uuid::Uuid = t
                        .query_one(
                            "SELECT eventstore.record_command('React', '{}', $1, 'stress', CASE WHEN $2::bigint IS NOT NULL THEN $1 END, $2)",
                            &[&s, &seq],
                        )?
                        .get(0);
                    let target = rng.pick(&streams).clone();
                    t.query_one("SELECT eventstore.append_event($1, 'Stress', 'Reacted', '{}', command_id => $2)", &[&target, &cmd])?;
                    t.commit()
                })();
                tally.record(r);
            }
            4 => {
                let v = version(&mut c, &s);
                if v > 0 {
                    let at = 1 + rng.below(v as u64) as i64;
                    tally.record(c.execute("SELECT eventstore.take_snapshot($1, $2, $3)", &[&s, &at, &json!({"at": at})]));
                }
            }
            _ => {
                let snap = tally.record(c.query_opt("SELECT sequence FROM eventstore.load_snapshot($1)", &[&s])).flatten();
                let from: i64 = snap.map(|r| r.get::<_, i64>(0) + 1).unwrap_or(1);
                let rows = tally.record(c.query("SELECT sequence FROM eventstore.load_stream($1, $2)", &[&s, &from]));
                if let Some(rows) = rows {
                    let seqs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
                    assert!(seqs.iter().enumerate().all(|(i, q)| *q == from + i as i64), "{s}: gap in {seqs:?}");
                }
            }
        }
    }
}

/// Follows the feed from `start` until it reaches `head` (set once the writers are done); returns
/// every position seen, checking order as it goes.
fn reader(start: i64, head: Arc<AtomicI64>, tally: Arc<Tally>) -> Vec<i64> {
    let mut c = connect();
    let mut seen = Vec::new();
    let mut last = start;
    loop {
        let rows = tally.record(c.query("SELECT global_position FROM eventstore.read_all($1, 500)", &[&last])).unwrap_or_default();
        for r in &rows {
            let p: i64 = r.get(0);
            assert!(p > last, "feed went backwards: {p} after {last}");
            last = p;
            seen.push(p);
        }
        if last >= head.load(Ordering::Relaxed) {
            return seen;
        }
        if rows.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Consumes a subscription with poll/ack, as a projection would.
fn subscriber(name: String, head: Arc<AtomicI64>, tally: Arc<Tally>) -> Vec<i64> {
    let mut c = connect();
    let mut seen: Vec<i64> = Vec::new();
    loop {
        let rows = tally.record(c.query("SELECT global_position FROM eventstore.poll($1, 200)", &[&name])).unwrap_or_default();
        if let Some(last) = rows.last() {
            let p: i64 = last.get(0);
            seen.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
            tally.record(c.execute("SELECT eventstore.ack($1, $2)", &[&name, &p]));
        } else if seen.last().copied().unwrap_or(0) >= head.load(Ordering::Relaxed) {
            return seen;
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn many_sessions_for_a_while_keep_every_invariant() {
    let seconds: u64 = env_or("STRESS_SECONDS", 15);
    let mut c = connect();
    let start: i64 = c.query_one("SELECT COALESCE(max(global_position), 0) FROM eventstore.events", &[]).unwrap().get(0);
    let sub = unique("stress-sub");
    c.execute("SELECT eventstore.create_subscription($1, ARRAY['Stress'], start_from => $2)", &[&sub, &start]).unwrap();
    let run = unique("stress");
    let streams: Arc<Vec<String>> = Arc::new((0..12).map(|k| format!("{run}-{k}")).collect());
    let (stop, tally) = (Arc::new(AtomicBool::new(false)), Arc::new(Tally::default()));
    // the last position to read up to, known once the writers have stopped
    let (head, stress_head) = (Arc::new(AtomicI64::new(i64::MAX)), Arc::new(AtomicI64::new(i64::MAX)));

    let writers: Vec<_> = (0..8)
        .map(|id| {
            let (streams, stop, tally) = (streams.clone(), stop.clone(), tally.clone());
            std::thread::spawn(move || writer(id, streams, stop, tally))
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (head, tally) = (head.clone(), tally.clone());
            std::thread::spawn(move || reader(start, head, tally))
        })
        .collect();
    let consumer = {
        let (head, tally, sub) = (stress_head.clone(), tally.clone(), sub.clone());
        std::thread::spawn(move || subscriber(sub, head, tally))
    };
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("a writer failed");
    }
    let r = c
        .query_one(
            "SELECT COALESCE(max(global_position), $1), COALESCE(max(global_position) FILTER (WHERE stream_type = 'Stress'), $1) \
             FROM eventstore.events WHERE global_position > $1",
            &[&start],
        )
        .unwrap();
    head.store(r.get(0), Ordering::Relaxed);
    stress_head.store(r.get(1), Ordering::Relaxed);
    let feeds: Vec<Vec<i64>> = readers.into_iter().map(|r| r.join().expect("a reader failed")).collect();
    let consumed = consumer.join().expect("the subscriber failed");
    let elapsed = began.elapsed().as_secs_f64();

    let errors = tally.errors.lock().unwrap();
    assert!(errors.is_empty(), "errors other than concurrency conflicts: {errors:?}");
    let all: Vec<i64> = c
        .query("SELECT global_position FROM eventstore.events WHERE global_position > $1 ORDER BY 1", &[&start])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for feed in &feeds {
        assert_eq!(feed.len(), all.len(), "a reader saw {} events, the store has {}", feed.len(), all.len());
        assert_eq!(feed, &all, "a reader's feed differs from the store");
    }
    let stress: Vec<i64> = c
        .query(
            "SELECT global_position FROM eventstore.events WHERE global_position > $1 AND stream_type = 'Stress' ORDER BY 1",
            &[&start],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(consumed, stress, "the subscription delivered something other than every event once");
    assert_eq!(violations(&mut c), Vec::<String>::new());
    check_indexes(&mut c);
    println!(
        "{seconds} s: {} operations ({:.0}/s), {} events appended, {} concurrency conflicts, 2 readers and 1 subscriber saw every event once",
        tally.ops.load(Ordering::Relaxed),
        tally.ops.load(Ordering::Relaxed) as f64 / elapsed,
        all.len(),
        tally.conflicts.load(Ordering::Relaxed)
    );
    c.execute("SELECT eventstore.delete_subscription($1)", &[&sub]).unwrap();
}
