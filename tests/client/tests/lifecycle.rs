//! Stream lifecycle under load: deletes racing appends, the feed and a subscription while streams
//! are hard-deleted, archived and truncated, a SIGKILL in the middle of a hard delete or an
//! archive, and erasure that leaves no trace of the erased values in any table of the store.

use pg_eventstore_client_tests::*;
use postgres::{Client, NoTls};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

fn connect_to(url: &str) -> Client {
    Client::connect(url, NoTls).unwrap()
}

/// Four sessions append to one stream while a fifth soft-deletes it again and again: every
/// append succeeds (deleting reopens at the next version), no sequence is given twice or skipped.
/// Then the stream is deleted for good while they append: later appends are refused with 55000.
#[test]
fn appends_racing_deletes_of_their_stream() {
    let u = url_for("es_lifecycle_race");
    drop(fresh_db(&u, "es_lifecycle_race", None));
    let stop = Arc::new(AtomicBool::new(false));
    let appenders: Vec<_> = (0..4)
        .map(|w| {
            let (u, stop) = (u.clone(), stop.clone());
            thread::spawn(move || {
                let mut c = connect_to(&u);
                let mut acked = Vec::new();
                let mut refused = 0;
                while !stop.load(Ordering::Relaxed) {
                    match c.query_one("SELECT eventstore.append_event('race-1', 'Race', 'Tick', jsonb_build_object('w', $1::int))", &[&w]) {
                        Ok(r) => acked.push(r.get::<_, i64>(0)),
                        Err(e) if db_error(&e).0 == "55000" => refused += 1,
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
                (acked, refused)
            })
        })
        .collect();
    let mut admin = connect_to(&u);
    let started = Instant::now();
    let mut rng = Rng::new(7);
    let mut deletes = 0;
    while started.elapsed() < Duration::from_secs(3) {
        thread::sleep(Duration::from_millis(10 + rng.below(40)));
        match admin.query_one("SELECT eventstore.delete_stream('race-1')", &[]) {
            Ok(_) => deletes += 1,
            Err(e) => assert_eq!(db_error(&e).0, "42704", "only an unknown stream may fail: {e}"),
        }
    }
    let hidden: i64 = admin.query_one("SELECT eventstore.delete_stream('race-1', hard => true, reason => 'end of the race')", &[]).unwrap().get(0);
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut refused = 0;
    for a in appenders {
        let (acked, r) = a.join().unwrap();
        all.extend(acked);
        refused += r;
    }
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "no sequence was given twice");
    let version: i64 = admin.query_one("SELECT version FROM eventstore.streams WHERE stream_id = 'race-1'", &[]).unwrap().get(0);
    assert_eq!(version as usize, all.len(), "no sequence was skipped: version {version}, {} appends", all.len());
    assert_eq!(hidden as usize, all.len(), "the hard delete removed every event");
    assert!(refused > 0, "appends after the hard delete were refused");
    assert!(deletes > 10, "{deletes} soft deletes");
    let left: i64 = admin.query_one("SELECT count(*) FROM eventstore.events WHERE stream_id = 'race-1'", &[]).unwrap().get(0);
    assert_eq!(left, 0);
    assert_eq!(violations(&mut admin), Vec::<String>::new());
    check_indexes(&mut admin);
    println!("{} appends, {deletes} soft deletes, {refused} appends refused after the hard delete", all.len());
    drop(admin);
    drop_db(&u, "es_lifecycle_race");
}

/// Four writers fill streams and finish them; a janitor hard-deletes, archives or truncates
/// finished streams; two readers follow read_all and a consumer follows a subscription all the
/// while. Each sees every event still in the store at the end exactly once, in order, and gets to
/// the head (no stall over the removed positions).
#[test]
fn the_feed_passes_over_deleted_and_archived_streams() {
    let u = url_for("es_lifecycle_feed");
    let mut setup = fresh_db(&u, "es_lifecycle_feed", None);
    setup.batch_execute("SELECT eventstore.create_subscription('janitor-sub')").unwrap();
    let stop_writers = Arc::new(AtomicBool::new(false));
    let finished: Arc<Mutex<Vec<String>>> = Arc::default();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (u, stop, finished) = (u.clone(), stop_writers.clone(), finished.clone());
            thread::spawn(move || {
                let mut c = connect_to(&u);
                let mut k = 0;
                while !stop.load(Ordering::Relaxed) {
                    let stream = format!("feed-{w}-{k}");
                    for i in 0..5 {
                        c.execute("SELECT eventstore.append_event($1, 'Feed', 'Tick', jsonb_build_object('i', $2::int))", &[&stream, &i]).unwrap();
                    }
                    finished.lock().unwrap().push(stream);
                    k += 1;
                }
            })
        })
        .collect();
    let stop_janitor = Arc::new(AtomicBool::new(false));
    let janitor = {
        let (u, stop, finished) = (u.clone(), stop_janitor.clone(), finished.clone());
        thread::spawn(move || {
            let mut c = connect_to(&u);
            let mut rng = Rng::new(3);
            let mut done = BTreeMap::<&str, u32>::new();
            while !stop.load(Ordering::Relaxed) {
                let next = finished.lock().unwrap().pop();
                let Some(stream) = next else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let action = match rng.below(4) {
                    0 => {
                        c.execute("SELECT eventstore.delete_stream($1, hard => true, reason => 'janitor')", &[&stream]).unwrap();
                        "hard delete"
                    }
                    1 => {
                        c.execute("SELECT eventstore.archive_stream($1)", &[&stream]).unwrap();
                        "archive"
                    }
                    2 => {
                        c.execute("SELECT eventstore.truncate_stream($1, 4, 'janitor')", &[&stream]).unwrap();
                        "truncate"
                    }
                    _ => "keep",
                };
                *done.entry(action).or_default() += 1;
            }
            done
        })
    };
    let stop_readers = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (u, stop) = (u.clone(), stop_readers.clone());
            thread::spawn(move || {
                let mut c = connect_to(&u);
                let mut seen: Vec<(i64, String, i64)> = Vec::new();
                let mut after = 0i64;
                loop {
                    let stopping = stop.load(Ordering::Relaxed);
                    let rows = if r < 2 {
                        c.query("SELECT global_position, stream_id, sequence FROM eventstore.read_all($1, 200)", &[&after]).unwrap()
                    } else {
                        let rows = c.query("SELECT global_position, stream_id, sequence FROM eventstore.poll('janitor-sub', 200)", &[]).unwrap();
                        if let Some(last) = rows.last() {
                            c.execute("SELECT eventstore.ack('janitor-sub', $1)", &[&last.get::<_, i64>(0)]).unwrap();
                        }
                        rows
                    };
                    for row in &rows {
                        let p: i64 = row.get(0);
                        seen.push((p, row.get(1), row.get(2)));
                        after = p;
                    }
                    if rows.is_empty() {
                        if stopping {
                            return seen; // caught up after everyone stopped
                        }
                        thread::sleep(Duration::from_millis(5));
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(env_or("LIFECYCLE_SECONDS", 6)));
    stop_writers.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    thread::sleep(Duration::from_millis(300));
    stop_janitor.store(true, Ordering::Relaxed);
    let done = janitor.join().unwrap();
    stop_readers.store(true, Ordering::Relaxed);
    let remaining: HashSet<i64> = setup
        .query("SELECT global_position FROM eventstore.events", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (r, reader) in readers.into_iter().enumerate() {
        let seen = reader.join().unwrap();
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "reader {r}: every event once, in position order");
        let positions: HashSet<i64> = seen.iter().map(|s| s.0).collect();
        let missing: Vec<_> = remaining.difference(&positions).take(10).collect();
        assert!(missing.is_empty(), "reader {r} never saw events still in the store: {missing:?}");
        println!("reader {r}: {} events seen, {} still in the store", seen.len(), remaining.len());
    }
    println!("janitor: {done:?}");
    assert!(done.values().all(|n| *n > 0), "every kind of removal happened: {done:?}");
    assert_eq!(violations(&mut setup), Vec::<String>::new());
    check_indexes(&mut setup);
    drop(setup);
    drop_db(&u, "es_lifecycle_feed");
}

/// SIGKILL to the server while a hard delete or an archive of a 20,000-event stream runs: after
/// crash recovery the stream is whole or entirely gone (archived), never half-moved.
#[test]
fn a_crash_in_the_middle_of_a_delete_or_an_archive_leaves_nothing_half_done() {
    let cluster = Scratch::create("lifecycle_crash", 54331);
    let url = cluster.url("lifecycle");
    let mut c = fresh_db(&url, "lifecycle", None);
    let rounds = 4;
    for i in 0..rounds {
        c.batch_execute(&format!(
            "SELECT eventstore.append_events('big-{i}', 'Big', (SELECT jsonb_agg(jsonb_build_object('type', 'T', 'payload', jsonb_build_object('k', k))) \
             FROM generate_series(1, 5000) k)) FROM generate_series(1, 4)"
        ))
        .unwrap();
    }
    drop(c);
    let mut rng = Rng::new(11);
    let mut outcomes = Vec::new();
    for i in 0..rounds {
        let (stmt, kind) = if i % 2 == 0 {
            (format!("SELECT eventstore.delete_stream('big-{i}', hard => true, reason => 'crash test')"), "delete")
        } else {
            (format!("SELECT eventstore.archive_stream('big-{i}')"), "archive")
        };
        let u = url.clone();
        let worker = thread::spawn(move || Client::connect(&u, NoTls).map(|mut c| c.batch_execute(&stmt)));
        thread::sleep(Duration::from_millis(30 + rng.below(400)));
        cluster.kill9();
        let _ = worker.join();
        cluster.start();
        let mut c = Client::connect(&url, NoTls).unwrap();
        let r = c
            .query_one(
                "SELECT s.state, (SELECT count(*) FROM eventstore.events e WHERE e.stream_id = s.stream_id), \
                        (SELECT count(*) FROM eventstore.archived_events a WHERE a.stream_id = s.stream_id) \
                 FROM eventstore.streams s WHERE s.stream_id = $1",
                &[&format!("big-{i}")],
            )
            .unwrap();
        let (state, hot, archived): (String, i64, i64) = (r.get(0), r.get(1), r.get(2));
        let whole = state == "live" && hot == 20_000 && archived == 0;
        let done = match kind {
            "delete" => state == "tombstone" && hot == 0 && archived == 0,
            _ => state == "archived" && hot == 0 && archived == 20_000,
        };
        assert!(whole || done, "{kind} of big-{i} half done after the crash: {state}, {hot} hot, {archived} archived");
        assert_eq!(violations(&mut c), Vec::<String>::new());
        check_indexes(&mut c);
        outcomes.push(format!("{kind}: {}", if done { "done" } else { "not done" }));
    }
    println!("after each crash: {outcomes:?}");
}

/// Values erased or redacted are in no table of the store afterwards (searched row by row as
/// text), while the events keep their positions and types.
#[test]
fn erasure_leaves_no_trace_in_any_table() {
    let u = url_for("es_lifecycle_erase");
    let mut c = fresh_db(&u, "es_lifecycle_erase", None);
    let secret = format!("secret-{}", uuid::Uuid::new_v4());
    let kept = format!("kept-{}", uuid::Uuid::new_v4());
    let redacted = format!("redacted-{}", uuid::Uuid::new_v4());
    let payload = serde_json::json!({"email": secret, "note": kept, "nested": [{"email": redacted}]});
    let meta = serde_json::json!({"ip": secret});
    c.execute("SELECT eventstore.append_event('person-9', 'Person', 'Registered', $1, $2)", &[&payload, &meta]).unwrap();
    c.execute("SELECT eventstore.append_event('person-9', 'Person', 'Moved', $1)", &[&payload]).unwrap();
    c.execute("SELECT eventstore.take_snapshot('person-9', 2, $1)", &[&payload]).unwrap();
    c.execute("SELECT eventstore.record_command('Register', $1, 'person-9')", &[&payload]).unwrap();
    c.execute("SELECT eventstore.append_event('person-10', 'Person', 'Registered', $1)", &[&payload]).unwrap();
    c.execute("SELECT eventstore.archive_stream('person-10')", &[]).unwrap();
    let tables: Vec<String> = c
        .query("SELECT relname::text FROM pg_class WHERE relnamespace = 'eventstore'::regnamespace AND relkind = 'r'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let found = |c: &mut Client, value: &str| -> Vec<String> {
        tables
            .iter()
            .filter(|t| {
                let n: i64 = c
                    .query_one(&format!("SELECT count(*) FROM eventstore.{t} x WHERE x::text LIKE '%' || $1 || '%'"), &[&value])
                    .unwrap()
                    .get(0);
                n > 0
            })
            .cloned()
            .collect()
    };
    assert!(found(&mut c, &secret).len() >= 4, "the values are there to begin with");
    // a redaction of one path: gone from every table; the rest of the payload stays
    c.execute("SELECT eventstore.redact_events('person-9', NULL, ARRAY['payload.nested.*.email'], 'request 1')", &[]).unwrap();
    c.execute("SELECT eventstore.redact_events('person-10', NULL, ARRAY['payload.nested.*.email'], 'request 1')", &[]).unwrap();
    let commands: Vec<uuid::Uuid> = c.query("SELECT command_id FROM eventstore.commands", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    for id in commands {
        c.execute("SELECT eventstore.redact_command($1, ARRAY['payload.nested.*.email'], 'request 1')", &[&id]).unwrap();
    }
    assert_eq!(found(&mut c, &redacted), Vec::<String>::new(), "a redacted value is in no table");
    assert!(!found(&mut c, &kept).is_empty(), "what was not redacted stays");
    // erasure of both streams (one of them archived): the personal data is in no table any more
    c.execute("SELECT eventstore.erase_stream('person-9', 'request 2')", &[]).unwrap();
    c.execute("SELECT eventstore.erase_stream('person-10', 'request 2')", &[]).unwrap();
    assert_eq!(found(&mut c, &secret), Vec::<String>::new(), "an erased value is in no table of the store");
    assert_eq!(found(&mut c, &kept), Vec::<String>::new());
    let events: i64 = c.query_one("SELECT count(*) FROM eventstore.read_all(0, 100) WHERE stream_id = 'person-9'", &[]).unwrap().get(0);
    assert_eq!(events, 2, "the erased events keep their places in the feed");
    let logged: i64 = c.query_one("SELECT count(*) FROM eventstore.audit_log WHERE reason LIKE 'request%'", &[]).unwrap().get(0);
    assert!(logged >= 5);
    assert_eq!(violations(&mut c), Vec::<String>::new());
    drop(c);
    drop_db(&u, "es_lifecycle_erase");
}
