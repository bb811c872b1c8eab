//! The global feed with real concurrent sessions: a reader never skips an event that commits late,
//! sees every event exactly once and in order, consumer groups partition the streams, LISTEN wakes
//! a waiting client, and a subscription moves to a second worker only when the first one is gone.

use pg_eventstore_client_tests::*;
use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Only the events of this test: each test appends to its own stream type.
fn read(c: &mut Client, after: i64, category: &str) -> Vec<(i64, String, i64)> {
    c.query(
        "SELECT global_position, stream_id, sequence FROM eventstore.read_all($1, 500, ARRAY[$2])",
        &[&after, &category],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// Reads until `n` events arrived (other sessions' open transactions may hold the horizon back).
fn read_until(c: &mut Client, after: i64, category: &str, n: usize) -> Vec<(i64, String, i64)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = read(c, after, category);
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn append(c: &mut Client, stream: &str, category: &str) -> i64 {
    c.query_one("SELECT eventstore.append_event($1, $2, 'Happened', '{}')", &[&stream, &category]).unwrap().get(0)
}

fn position_of(c: &mut Client, stream: &str, seq: i64) -> i64 {
    c.query_one("SELECT global_position FROM eventstore.events WHERE stream_id = $1 AND sequence = $2", &[&stream, &seq])
        .unwrap()
        .get(0)
}

#[test]
fn a_held_open_transaction_delays_the_feed_and_loses_nothing() {
    let category = unique("Held");
    let (slow_stream, fast_stream) = (unique("slow"), unique("fast"));
    let mut reader = connect();
    let mut fast = connect();
    let mut slow = connect();

    let mut slow_tx = slow.transaction().unwrap();
    slow_tx
        .execute("SELECT eventstore.append_event($1, $2, 'Happened', '{}')", &[&slow_stream, &category])
        .unwrap();
    let slow_position: i64 = slow_tx
        .query_one("SELECT global_position FROM eventstore.events WHERE stream_id = $1", &[&slow_stream])
        .unwrap()
        .get(0);
    append(&mut fast, &fast_stream, &category);
    let fast_position = position_of(&mut reader, &fast_stream, 1);
    assert!(fast_position > slow_position, "the committed event has the later position");

    // The later position is committed, the earlier one is not: the reader must wait, not skip.
    assert!(read(&mut reader, 0, &category).is_empty(), "nothing past an unsettled position");
    let status = reader.query_one("SELECT safe_position, head_position, lagging_events, blocking_pid FROM eventstore.feed_status()", &[]).unwrap();
    let (safe, head, lagging, blocker): (i64, i64, i64, Option<i32>) = (status.get(0), status.get(1), status.get(2), status.get(3));
    assert!(safe < fast_position && head >= fast_position && lagging >= 1, "feed_status shows the lag: {safe} {head} {lagging}");
    let slow_pid: i32 = slow_tx.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    assert_eq!(blocker, Some(slow_pid), "feed_status names the open transaction");

    slow_tx.commit().unwrap();
    let got = read_until(&mut reader, 0, &category, 2);
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        vec![slow_position, fast_position],
        "both events, in position order, once the transaction ends"
    );

    // A rolled-back transaction leaves a hole that the feed passes without waiting.
    let mut tx = slow.transaction().unwrap();
    tx.execute("SELECT eventstore.append_event($1, $2, 'Happened', '{}')", &[&slow_stream, &category]).unwrap();
    append(&mut fast, &fast_stream, &category);
    tx.rollback().unwrap();
    let after = read_until(&mut reader, fast_position, &category, 1);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].1, fast_stream);
}

#[test]
fn four_writers_two_readers_every_event_once_in_order() {
    let category = unique("Load");
    let writers = 4;
    let per_writer = 750;
    let done = Arc::new(AtomicBool::new(false));
    let written = Arc::new(Mutex::new(Vec::new()));

    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (category, done) = (category.clone(), done.clone());
            thread::spawn(move || {
                let mut c = connect();
                let mut seen: Vec<(i64, String, i64)> = Vec::new();
                let mut after = 0;
                let mut idle_after_done = 0;
                loop {
                    let batch = read(&mut c, after, &category);
                    if let Some(last) = batch.last() {
                        after = last.0;
                    }
                    let empty = batch.is_empty();
                    seen.extend(batch);
                    if empty {
                        if done.load(Ordering::SeqCst) {
                            idle_after_done += 1;
                            if idle_after_done > 3 {
                                break;
                            }
                        }
                        thread::sleep(Duration::from_millis(5));
                    }
                }
                seen
            })
        })
        .collect();

    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (category, written) = (category.clone(), written.clone());
            thread::spawn(move || {
                let mut c = connect();
                let streams: Vec<String> = (0..5).map(|i| format!("{category}-w{w}-s{i}")).collect();
                for n in 0..per_writer {
                    let stream = &streams[n % streams.len()];
                    if n % 10 == 0 {
                        // now and then a batch, and now and then a transaction that stays open a bit
                        let mut tx = c.transaction().unwrap();
                        tx.execute(
                            "SELECT eventstore.append_events($1, $2, '[{\"type\": \"A\", \"payload\": {}}, {\"type\": \"B\", \"payload\": {}}]')",
                            &[stream, &category],
                        )
                        .unwrap();
                        thread::sleep(Duration::from_millis(2));
                        tx.commit().unwrap();
                        written.lock().unwrap().push((stream.clone(), 2));
                    } else {
                        append(&mut c, stream, &category);
                        written.lock().unwrap().push((stream.clone(), 1));
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);

    let total: i64 = written.lock().unwrap().iter().map(|w| w.1).sum();
    let mut c = connect();
    let stored: i64 = c.query_one("SELECT count(*) FROM eventstore.events WHERE stream_type = $1", &[&category]).unwrap().get(0);
    assert_eq!(stored, total);
    for r in readers {
        let seen = r.join().unwrap();
        assert_eq!(seen.len() as i64, total, "every event seen");
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "in position order, none twice");
        let mut next_seq: HashMap<String, i64> = HashMap::new();
        for (_, stream, seq) in &seen {
            let expect = next_seq.entry(stream.clone()).or_insert(1);
            assert_eq!(seq, expect, "each stream in sequence order, no gap");
            *expect += 1;
        }
    }
}

#[test]
fn consumer_groups_partition_streams_without_overlap() {
    let category = unique("Group");
    let mut c = connect();
    for s in 0..40 {
        for _ in 0..3 {
            append(&mut c, &format!("{category}-{s}"), &category);
        }
    }
    let size = 3;
    let mut owner: HashMap<String, i32> = HashMap::new();
    let mut total = 0;
    for member in 0..size {
        let rows = c
            .query(
                "SELECT stream_id, sequence FROM eventstore.read_all(0, 1000, ARRAY[$1], NULL, $2, $3)",
                &[&category, &member, &size],
            )
            .unwrap();
        assert!(!rows.is_empty(), "member {member} gets a share");
        let mut last: HashMap<String, i64> = HashMap::new();
        for r in rows {
            let (s, seq): (String, i64) = (r.get(0), r.get(1));
            assert_eq!(*owner.entry(s.clone()).or_insert(member), member, "stream {s} belongs to one member");
            let prev = last.insert(s, seq).unwrap_or(0);
            assert_eq!(seq, prev + 1, "a member sees its streams in order");
            total += 1;
        }
    }
    assert_eq!(owner.len(), 40, "every stream has a member");
    assert_eq!(total, 120, "nothing missed, nothing twice");
}

#[test]
fn listen_wakes_a_waiting_client() {
    let category = unique("Wake");
    let mut listener = connect();
    listener.batch_execute("LISTEN eventstore").unwrap();
    let channel = format!("eventstore.{category}");
    if channel.len() <= 63 {
        listener.batch_execute(&format!("LISTEN \"{channel}\"")).unwrap();
    }
    let stream = unique("wake");
    let c2 = category.clone();
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        let mut c = connect();
        let mut tx = c.transaction().unwrap();
        for _ in 0..3 {
            tx.execute("SELECT eventstore.append_event($1, $2, 'Happened', '{}')", &[&stream, &c2]).unwrap();
        }
        tx.commit().unwrap();
        position_of(&mut c, &stream, 3)
    });
    let started = Instant::now();
    let mut payloads = Vec::new();
    let mut notes = listener.notifications();
    let mut it = notes.timeout_iter(Duration::from_secs(10));
    while let Some(n) = it.next().unwrap() {
        payloads.push((n.channel().to_string(), n.payload().to_string()));
        if payloads.len() == 2 || started.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    let last = writer.join().unwrap();
    assert!(!payloads.is_empty(), "the listener woke up");
    let main: Vec<_> = payloads.iter().filter(|p| p.0 == "eventstore").collect();
    assert_eq!(main.len(), 1, "one notification per transaction: {payloads:?}");
    assert_eq!(main[0].1, last.to_string(), "carrying the highest position");
    if channel.len() <= 63 {
        assert_eq!(payloads.iter().filter(|p| p.0 == channel).count(), 1, "and one on the stream type's channel");
    }
}

#[test]
fn a_subscription_has_one_worker_at_a_time_and_survives_its_death() {
    let category = unique("Sub");
    let name = unique("projection");
    let mut admin = connect();
    admin
        .execute("SELECT eventstore.create_subscription($1, ARRAY[$2])", &[&name, &category])
        .unwrap();
    for i in 0..10 {
        append(&mut admin, &format!("{category}-{}", i % 3), &category);
    }
    let poll = |c: &mut Client, n: i32| -> Vec<i64> {
        c.query("SELECT global_position FROM eventstore.poll($1, $2)", &[&name, &n])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let mut first = connect();
    let mut second = connect();
    let got = poll(&mut first, 4);
    assert_eq!(got.len(), 4);
    assert!(poll(&mut second, 4).is_empty(), "a second worker gets nothing while the first holds the lease");
    let e = second.execute("SELECT eventstore.ack($1, $2)", &[&name, &got[3]]).unwrap_err();
    assert_eq!(db_error(&e).0, "55000");
    first.execute("SELECT eventstore.ack($1, $2)", &[&name, &got[1]]).unwrap();
    let e = first.execute("SELECT eventstore.ack($1, $2)", &[&name, &(got[3] + 1000)]).unwrap_err();
    assert_eq!(db_error(&e).0, "22023", "an ack beyond what was delivered");
    let e = first.execute("SELECT eventstore.ack($1, $2)", &[&name, &got[0]]).unwrap_err();
    assert_eq!(db_error(&e).0, "22023", "the checkpoint never moves back");

    // The first worker dies with two events delivered but not acknowledged.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut taken = Vec::new();
    while taken.is_empty() && Instant::now() < deadline {
        taken = poll(&mut second, 100);
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(taken.first(), Some(&got[2]), "the next worker resumes after the last ack");
    assert_eq!(taken.len(), 8);
    second.execute("SELECT eventstore.ack($1, $2)", &[&name, taken.last().unwrap()]).unwrap();
    let lag: i64 = admin
        .query_one("SELECT lag_events FROM eventstore.subscriptions WHERE name = $1", &[&name])
        .unwrap()
        .get(0);
    assert_eq!(lag, 0);
    let all: HashSet<i64> = got[..2].iter().chain(taken.iter()).copied().collect();
    assert_eq!(all.len(), 10, "every event processed once");
}
