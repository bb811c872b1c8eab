//! Concurrent sessions against one stream: no gaps, no duplicates, no leaked unique violations;
//! optimistic concurrency has exactly one winner and a 40001 for everyone else.

use pg_eventstore_client_tests::*;
use serde_json::json;
use std::sync::{Arc, Barrier};
use std::thread;

const SESSIONS: usize = 8;

/// Runs `f(session_index)` in SESSIONS threads, each with its own connection, released together.
fn race<T: Send + 'static>(f: impl Fn(usize, &mut postgres::Client) -> T + Send + Sync + 'static) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(SESSIONS));
    let f = Arc::new(f);
    let handles: Vec<_> = (0..SESSIONS)
        .map(|i| {
            let (barrier, f) = (barrier.clone(), f.clone());
            thread::spawn(move || {
                let mut c = connect();
                barrier.wait();
                f(i, &mut c)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().expect("session thread")).collect()
}

fn append(c: &mut postgres::Client, stream: &str, expected: Option<i64>) -> Result<i64, postgres::Error> {
    c.query_one(
        "SELECT eventstore.append_event($1, 'Race', 'Tick', $2, expected_version => $3)",
        &[&stream, &json!({"n": 1}), &expected],
    )
    .map(|r| r.get(0))
}

#[test]
fn same_expected_version_has_exactly_one_winner() {
    let stream = unique("race");
    let mut c = connect();
    append(&mut c, &stream, None).unwrap();
    for round in 1..=20i64 {
        let s = stream.clone();
        let results = race(move |_, c| append(c, &s, Some(round)));
        let winners: Vec<i64> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
        assert_eq!(winners, vec![round + 1], "round {round}: exactly one append wins");
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            let (code, message) = db_error(e);
            assert_eq!(code, "40001", "loser gets a serialization failure: {message}");
            assert!(message.contains(&stream), "message names the stream: {message}");
            assert!(
                message.contains(&format!("expected version {round}"))
                    && message.contains(&format!("actual version {}", round + 1)),
                "message names both versions: {message}"
            );
            assert_clean_message(&message);
        }
    }
    assert_eq!(sequences(&mut c, &stream), (1..=21).collect::<Vec<_>>());
}

#[test]
fn appends_without_expected_version_all_succeed_in_order() {
    let stream = unique("free");
    let per_session = 150;
    let s = stream.clone();
    let results = race(move |_, c| {
        (0..per_session).map(|_| append(c, &s, None).expect("append without expected_version")).collect::<Vec<_>>()
    });
    for seqs in &results {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "each session sees its own appends in order");
    }
    let mut all: Vec<i64> = results.into_iter().flatten().collect();
    all.sort();
    let n = (SESSIONS * per_session) as i64;
    assert_eq!(all, (1..=n).collect::<Vec<_>>(), "returned sequences are 1..n, no duplicates");
    let mut c = connect();
    assert_eq!(sequences(&mut c, &stream), (1..=n).collect::<Vec<_>>(), "stored sequences have no gap");
    assert_eq!(version(&mut c, &stream), n);
}

#[test]
fn racing_first_appends_to_a_new_stream() {
    // expected_version 0: one creator wins, the others get 40001 (never 23505).
    let stream = unique("fresh");
    let s = stream.clone();
    let results = race(move |_, c| append(c, &s, Some(0)));
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(db_error(e).0, "40001", "{e}");
    }
    // expected_version NULL: everybody succeeds, sequences 1..=SESSIONS.
    let stream = unique("fresh-any");
    let s = stream.clone();
    let mut seqs: Vec<i64> = race(move |_, c| append(c, &s, None).expect("append")).into_iter().collect();
    seqs.sort();
    assert_eq!(seqs, (1..=SESSIONS as i64).collect::<Vec<_>>());
}

#[test]
fn racing_retries_of_one_event_store_it_once() {
    for existing in [false, true] {
        let stream = unique("retry");
        let mut c = connect();
        if existing {
            append(&mut c, &stream, None).unwrap();
        }
        let id = uuid::Uuid::new_v4();
        let s = stream.clone();
        let results = race(move |_, c| {
            c.query_one(
                "SELECT eventstore.append_event($1, 'Race', 'Paid', '{}', event_id => $2)",
                &[&s, &id],
            )
            .map(|r| r.get::<_, i64>(0))
        });
        let expected_seq = if existing { 2 } else { 1 };
        for r in &results {
            match r {
                Ok(seq) => assert_eq!(*seq, expected_seq),
                Err(e) => panic!("a retry failed: {:?}", db_error(e)),
            }
        }
        assert_eq!(version(&mut c, &stream), expected_seq, "the event was stored once");
        let n: i64 = c.query_one("SELECT count(*) FROM eventstore.events WHERE event_id = $1", &[&id]).unwrap().get(0);
        assert_eq!(n, 1);
    }
}

#[test]
fn concurrent_batches_stay_whole_and_contiguous() {
    let stream = unique("batches");
    let s = stream.clone();
    race(move |i, c| {
        for b in 0..20 {
            let events: Vec<_> = (0..5).map(|k| json!({"type": "Item", "payload": {"session": i, "batch": b, "k": k}})).collect();
            c.query_one("SELECT eventstore.append_events($1, 'Race', $2)", &[&s, &json!(events)]).expect("batch");
        }
    });
    let mut c = connect();
    let rows = c
        .query("SELECT sequence, payload FROM eventstore.load_stream($1)", &[&stream])
        .unwrap();
    assert_eq!(rows.len(), SESSIONS * 20 * 5);
    for (chunk_no, chunk) in rows.chunks(5).enumerate() {
        let first: serde_json::Value = chunk[0].get(1);
        for (k, row) in chunk.iter().enumerate() {
            let seq: i64 = row.get(0);
            let p: serde_json::Value = row.get(1);
            assert_eq!(seq, (chunk_no * 5 + k + 1) as i64);
            assert_eq!((p["session"].clone(), p["batch"].clone(), p["k"].as_i64()), (first["session"].clone(), first["batch"].clone(), Some(k as i64)), "a batch is contiguous");
        }
    }
}

#[test]
fn concurrent_direct_inserts_cannot_gap_or_duplicate() {
    let stream = unique("direct");
    let mut c = connect();
    append(&mut c, &stream, None).unwrap();
    let s = stream.clone();
    let results = race(move |_, c| {
        let mut ok = 0;
        let mut conflicts = 0;
        for _ in 0..30 {
            let v = version(c, &s);
            let r = c.execute(
                "INSERT INTO eventstore.events (stream_id, sequence, event_type, payload) VALUES ($1, $2, 'Tick', '{}')",
                &[&s, &(v + 1)],
            );
            match r {
                Ok(_) => ok += 1,
                Err(e) => {
                    let (code, message) = db_error(&e);
                    assert!(code == "40001" || code == "23505", "unexpected {code}: {message}");
                    assert_eq!(code, "40001", "a lost race is a concurrency conflict, not a unique violation: {message}");
                    conflicts += 1;
                }
            }
        }
        (ok, conflicts)
    });
    let ok: i64 = results.iter().map(|r| r.0).sum();
    assert_eq!(version(&mut c, &stream), ok + 1);
    assert_eq!(sequences(&mut c, &stream), (1..=ok + 1).collect::<Vec<_>>());
}

#[test]
fn global_positions_are_unique_and_follow_each_stream() {
    let streams: Vec<String> = (0..SESSIONS).map(|_| unique("pos")).collect();
    let shared = Arc::new(streams.clone());
    race(move |i, c| {
        for _ in 0..50 {
            append(c, &shared[i], None).unwrap();
        }
    });
    let mut c = connect();
    let rows = c
        .query(
            "SELECT stream_id, sequence, global_position FROM eventstore.events WHERE stream_id = ANY($1) ORDER BY global_position",
            &[&streams],
        )
        .unwrap();
    assert_eq!(rows.len(), SESSIONS * 50);
    let mut last_seq = std::collections::HashMap::new();
    let mut last_pos = 0i64;
    for r in rows {
        let (s, seq, pos): (String, i64, i64) = (r.get(0), r.get(1), r.get(2));
        assert!(pos > last_pos, "positions unique and increasing");
        last_pos = pos;
        let prev = last_seq.insert(s, seq).unwrap_or(0);
        assert_eq!(seq, prev + 1, "within a stream, position order is sequence order");
    }
}

#[test]
fn repeatable_read_and_serializable_appends_win_or_fail_with_40001() {
    // In these levels a stream row changed after the transaction's snapshot cannot be waited for
    // and re-read (READ COMMITTED does that): the append fails with 40001 and writes nothing.
    for level in ["REPEATABLE READ", "SERIALIZABLE"] {
        let stream = unique("rr");
        let mut c = connect();
        append(&mut c, &stream, None).unwrap();
        let s = stream.clone();
        let results = race(move |_, c| {
            let mut ok = 0i64;
            for _ in 0..25 {
                let mut tx = c.build_transaction().isolation_level(match level {
                    "SERIALIZABLE" => postgres::IsolationLevel::Serializable,
                    _ => postgres::IsolationLevel::RepeatableRead,
                }).start().unwrap();
                let r = tx.query_one("SELECT eventstore.append_event($1, 'Race', 'Tick', '{}')", &[&s]);
                match r {
                    Ok(_) => match tx.commit() {
                        Ok(()) => ok += 1,
                        Err(e) => assert_eq!(db_error(&e).0, "40001", "{e}"),
                    },
                    Err(e) => {
                        let (code, message) = db_error(&e);
                        assert_eq!(code, "40001", "{level}: {message}");
                        assert_clean_message(&message);
                    }
                }
            }
            ok
        });
        let ok: i64 = results.iter().sum();
        assert!(ok >= 10, "{level}: appends still get through ({ok})");
        assert_eq!(version(&mut c, &stream), ok + 1, "{level}");
        assert_eq!(sequences(&mut c, &stream), (1..=ok + 1).collect::<Vec<_>>(), "{level}: no gap");
    }
}
