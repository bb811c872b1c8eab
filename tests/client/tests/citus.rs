//! The store distributed over a Citus cluster (tests/citus.sh runs these against a coordinator and
//! two workers on this machine): eventstore.distribute(), and the stream functions run through the
//! coordinator with the guarantees they have on one node.

use pg_eventstore_client_tests::*;
use postgres::{Client, NoTls};
use serde_json::json;
use std::collections::BTreeMap;

fn ports() -> Vec<u16> {
    std::env::var("PG_EVENTSTORE_CITUS_PORTS")
        .expect("PG_EVENTSTORE_CITUS_PORTS is not set: run tests/citus.sh")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

fn node(port: u16) -> Client {
    let base = std::env::var("PG_EVENTSTORE_CITUS").expect("run tests/citus.sh");
    Client::connect(&format!("{base} port={port}"), NoTls).unwrap()
}

fn coordinator() -> Client {
    node(ports()[0])
}

/// Distributes the store once (the tests share one cluster, one at a time). The store holds data
/// by then, as a store that outgrew one machine does: streams of type Pre, a command and the event
/// it caused, a snapshot, an archived stream, and a subscription part-way through them
/// (a_store_that_held_data_keeps_it_once_distributed checks them).
fn distributed() -> Client {
    let mut c = coordinator();
    let done: bool = c
        .query_one("SELECT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = 'eventstore.events'::regclass)", &[])
        .unwrap()
        .get(0);
    if !done {
        c.batch_execute(
            "SELECT eventstore.append_events('pre-' || i, 'Pre', '[{\"type\": \"A\", \"payload\": {}}, {\"type\": \"B\", \"payload\": {}}]')
               FROM generate_series(1, 10) i;
             SELECT eventstore.record_command('Close', '{}', command_id => 'c0000000-0000-4000-8000-000000000001',
                                              caused_by_stream_id => 'pre-1', caused_by_sequence => 2);
             SELECT eventstore.append_event('pre-1', 'Pre', 'C', '{}', command_id => 'c0000000-0000-4000-8000-000000000001');
             SELECT eventstore.take_snapshot('pre-1', 3, '{\"closed\": true}');
             SELECT eventstore.append_events('pre-archived', 'Archived', '[{\"type\": \"A\", \"payload\": {}}, {\"type\": \"B\", \"payload\": {}}]');
             SELECT eventstore.archive_stream('pre-archived');
             SELECT eventstore.create_subscription('pre-distribution', stream_types => ARRAY['Pre'])",
        )
        .unwrap();
        // (a statement of its own: the feed holds back what the same transaction wrote)
        c.execute("SELECT eventstore.ack('pre-distribution', (SELECT max(global_position) FROM eventstore.poll('pre-distribution', 5)))", &[])
            .unwrap();
        c.execute("SELECT eventstore.distribute(shard_count => 8)", &[]).unwrap();
    }
    c
}

fn code_of(r: Result<impl Sized, postgres::Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => {
            let (code, message) = db_error(&e);
            assert_clean_message(&message);
            code
        }
    }
}

/// The node (Citus group id) that holds a stream.
fn group_of(c: &mut Client, stream_id: &str) -> i64 {
    c.query_one(
        "SELECT n.groupid::bigint FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)
           JOIN pg_dist_node n USING (groupid)
          WHERE s.logicalrelid = 'eventstore.events'::regclass
            AND s.shardid = get_shard_id_for_distribution_column('eventstore.events', $1::text)",
        &[&stream_id],
    )
    .unwrap()
    .get(0)
}

/// Before a shard move: Citus drops the placements earlier moves left behind first, and refuses
/// the move while one of them cannot be dropped yet (a transaction on its old node still holds
/// it). Recover prepared transactions and clean up until nothing is left, for up to 30 s.
fn settle_earlier_moves(c: &mut Client) {
    let t = std::time::Instant::now();
    loop {
        c.execute("SELECT recover_prepared_transactions()", &[]).unwrap();
        let _ = c.batch_execute("CALL citus_cleanup_orphaned_resources()");
        let left: i64 = c.query_one("SELECT count(*) FROM pg_dist_cleanup", &[]).unwrap().get(0);
        if left == 0 {
            return;
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(30), "{left} leftovers of earlier shard moves stay");
        eprintln!("waiting for {left} leftovers of earlier shard moves ({:?})", t.elapsed());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// What every node says about itself: no violations, and its copies of the tables (shells, which
/// queries never read) hold no rows.
fn check_every_node() {
    for port in ports() {
        let mut n = node(port);
        let shells: Vec<(String, i64)> = n
            .query(
                "SELECT c.relname::text, pg_relation_size(c.oid) FROM pg_class c
                  WHERE c.relnamespace = 'eventstore'::regnamespace AND c.relkind = 'r'
                    AND c.relname IN ('streams', 'events', 'snapshots', 'archived_events')",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for (table, size) in shells {
            assert_eq!(size, 0, "node {port}: rows were written into the shell of eventstore.{table}");
        }
        let bad: Vec<String> = n
            .query("SELECT invariant || ' ' || coalesce(stream_id, '') || ' ' || detail FROM eventstore.verify()", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(bad.is_empty(), "node {port}: verify() found {bad:?}");
    }
}

#[test]
#[ignore = "needs a Citus cluster: tests/citus.sh runs it"]
fn distribute_is_refused_where_it_cannot_work() {
    let mut worker = node(ports()[1]);
    assert_eq!(code_of(worker.batch_execute("SELECT eventstore.distribute()")), "55000");
    let mut c = distributed();
    assert_eq!(code_of(c.batch_execute("SELECT eventstore.distribute()")), "55000");
    assert_eq!(code_of(c.batch_execute("SELECT eventstore.distribute(0)")), "22023");
}

#[test]
#[ignore = "needs a Citus cluster: tests/citus.sh runs it"]
fn the_core_contract_through_the_coordinator() {
    let mut c = distributed();
    let streams: Vec<String> = (0..12).map(|_| unique("account")).collect();
    for s in &streams {
        let v: i64 = c
            .query_one("SELECT eventstore.append_event($1, 'Account', 'Opened', $2)", &[s, &json!({"owner": s})])
            .unwrap()
            .get(0);
        assert_eq!(v, 1);
    }
    // the streams spread over both workers
    let groups: std::collections::BTreeSet<i64> = streams.iter().map(|s| group_of(&mut c, s)).collect();
    assert!(groups.len() >= 2, "12 streams on one node: {groups:?}");

    let s = &streams[0];
    let batch = json!([{"type": "Deposited", "payload": {"amount": 5}}, {"type": "Deposited", "payload": {"amount": 7}}]);
    let last: i64 = c.query_one("SELECT eventstore.append_events($1, 'Account', $2, 1)", &[s, &batch]).unwrap().get(0);
    assert_eq!(last, 3);
    // optimistic concurrency: a stale expected version is a serialization failure
    assert_eq!(
        code_of(c.query_one("SELECT eventstore.append_event($1, 'Account', 'Closed', '{}', expected_version => 1)", &[s])),
        "40001"
    );
    // an event id retried in its stream is stored once
    let id = uuid::Uuid::new_v4();
    let first: i64 = c
        .query_one("SELECT eventstore.append_event($1, 'Account', 'Noted', '{}', event_id => $2)", &[s, &id])
        .unwrap()
        .get(0);
    let again: i64 = c
        .query_one("SELECT eventstore.append_event($1, 'Account', 'Noted', '{}', event_id => $2)", &[s, &id])
        .unwrap()
        .get(0);
    assert_eq!((first, again), (4, 4));
    // and looked up on every node: an id of one stream is refused for a stream on the other worker
    let elsewhere = streams.iter().find(|t| group_of(&mut c, t) != group_of(&mut c, s)).unwrap().clone();
    assert_eq!(
        code_of(c.query_one("SELECT eventstore.append_event($1, 'Account', 'Noted', '{}', event_id => $2)", &[&elsewhere, &id])),
        "23505"
    );
    assert_eq!(sequences(&mut c, s), vec![1, 2, 3, 4]);
    assert_eq!(version(&mut c, s), 4);
    let types: Vec<String> =
        c.query("SELECT event_type FROM eventstore.load_stream($1, 2)", &[s]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(types, ["Deposited", "Deposited", "Noted"]);
    let back: Vec<i64> = c
        .query("SELECT sequence FROM eventstore.read_stream_backward($1, max_count => 2)", &[s])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(back, [4, 3]);
    let last_type: String = c.query_one("SELECT event_type FROM eventstore.last_event($1)", &[s]).unwrap().get(0);
    assert_eq!(last_type, "Noted");

    // snapshots
    c.execute("SELECT eventstore.take_snapshot($1, 3, $2)", &[s, &json!({"balance": 12})]).unwrap();
    let snap: serde_json::Value =
        c.query_one("SELECT payload FROM eventstore.load_snapshot($1)", &[s]).unwrap().get(0);
    assert_eq!(snap, json!({"balance": 12}));
    assert_eq!(code_of(c.execute("SELECT eventstore.take_snapshot($1, 9, '{}')", &[s])), "22023");

    // commands and the events they caused, in one transaction and apart
    let cmd: uuid::Uuid = c
        .query_one("SELECT eventstore.record_command('OpenAccount', '{}', stream_id => $1)", &[&streams[1]])
        .unwrap()
        .get(0);
    c.execute("SELECT eventstore.append_event($1, 'Account', 'Renamed', '{}', command_id => $2)", &[&streams[1], &cmd])
        .unwrap();
    let mut tx = c.transaction().unwrap();
    let cmd2: uuid::Uuid = tx.query_one("SELECT eventstore.record_command('Rename', '{}')", &[]).unwrap().get(0);
    tx.execute("SELECT eventstore.append_event($1, 'Account', 'Renamed', '{}', command_id => $2)", &[&streams[2], &cmd2])
        .unwrap();
    tx.commit().unwrap();
    assert_eq!(
        code_of(c.execute(
            "SELECT eventstore.append_event($1, 'Account', 'Renamed', '{}', command_id => $2)",
            &[&streams[3], &uuid::Uuid::new_v4()]
        )),
        "23503"
    );
    // a call Citus cannot delegate (a volatile argument, or once per row of a query) runs on the
    // coordinator, which has the stream's node append
    let v: i64 = c
        .query_one("SELECT eventstore.append_event($1, 'Account', 'Renamed', '{}', event_id => gen_random_uuid())", &[&streams[3]])
        .unwrap()
        .get(0);
    assert_eq!(v, 2);
    let per_row: Vec<i64> = c
        .query(
            "SELECT eventstore.append_event(s, 'Account', 'Noted', '{}') FROM unnest($1::text[]) s ORDER BY s",
            &[&vec![streams[4].clone(), streams[5].clone()]],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(per_row, vec![2, 2]);
    assert_eq!(version(&mut c, &streams[3]), 2);
    let caused: i64 = c
        .query_one("SELECT count(*) FROM eventstore.events WHERE command_id IN ($1, $2)", &[&cmd, &cmd2])
        .unwrap()
        .get(0);
    assert_eq!(caused, 2);

    // causation across nodes: commands caused by events on either worker, checked by the node
    // that holds the causing event, with the root command's correlation id
    let other = streams.iter().find(|t| group_of(&mut c, t) != group_of(&mut c, &streams[1])).unwrap().clone();
    let follow: uuid::Uuid = c
        .query_one(
            "SELECT eventstore.record_command('Follow', '{}', caused_by_stream_id => $1, caused_by_sequence => 2)",
            &[&streams[1]],
        )
        .unwrap()
        .get(0);
    let followed: i64 = c
        .query_one("SELECT eventstore.append_event($1, 'Account', 'Followed', '{}', command_id => $2)", &[&other, &follow])
        .unwrap()
        .get(0);
    let then: uuid::Uuid = c
        .query_one(
            "SELECT eventstore.record_command('Then', '{}', caused_by_stream_id => $1, caused_by_sequence => $2)",
            &[&other, &followed],
        )
        .unwrap()
        .get(0);
    let correlations: Vec<uuid::Uuid> = c
        .query("SELECT correlation_id FROM eventstore.commands WHERE command_id IN ($1, $2, $3)", &[&cmd, &follow, &then])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(correlations, vec![cmd; 3], "one causation chain, one correlation id");
    let chain: Vec<(i32, String, Option<String>, Option<i64>)> = c
        .query("SELECT depth, kind, stream_id, sequence FROM eventstore.causation_chain($1, $2)", &[&other, &followed])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        chain,
        vec![
            (0, "event".to_string(), Some(other.clone()), Some(followed)),
            (1, "command".to_string(), None, None),
            (2, "event".to_string(), Some(streams[1].clone()), Some(2)),
            (3, "command".to_string(), Some(streams[1].clone()), None),
        ]
    );
    assert_eq!(
        code_of(c.query_one(
            "SELECT eventstore.record_command('Ghost', '{}', caused_by_stream_id => $1, caused_by_sequence => 99)",
            &[&other]
        )),
        "23503"
    );
    // a direct INSERT with a wrong correlation id is refused by the node that holds the cause
    assert_eq!(
        code_of(c.execute(
            "INSERT INTO eventstore.commands (command_type, payload, caused_by_stream_id, caused_by_sequence, correlation_id)
             VALUES ('Forged', '{}', $1, 2, gen_random_uuid())",
            &[&streams[1]]
        )),
        "428C9"
    );

    // a direct INSERT of an event cannot claim its id across the cluster: refused
    let v = version(&mut c, &streams[1]);
    assert_eq!(
        code_of(c.execute(
            "INSERT INTO eventstore.events (stream_id, sequence, event_type, payload) VALUES ($1, $2, 'Direct', '{}')",
            &[&streams[1], &(v + 1)]
        )),
        "0A000"
    );
    assert_eq!(version(&mut c, &streams[1]), v);

    // a failed append inside a transaction leaves nothing behind
    let before = version(&mut c, &streams[4]);
    let mut tx = c.transaction().unwrap();
    tx.execute("SELECT eventstore.append_event($1, 'Account', 'Frozen', '{}')", &[&streams[4]]).unwrap();
    drop(tx);
    assert_eq!(version(&mut c, &streams[4]), before);
    check_every_node();
}

#[test]
#[ignore = "needs a Citus cluster: tests/citus.sh runs it"]
fn positions_are_unique_and_name_the_node_that_assigned_them() {
    let mut c = distributed();
    let streams: Vec<String> = (0..16).map(|_| unique("pos")).collect();
    for s in &streams {
        for _ in 0..3 {
            c.execute("SELECT eventstore.append_event($1, 'Pos', 'E', '{}')", &[s]).unwrap();
        }
    }
    let mut per_node: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for s in &streams {
        let g = group_of(&mut c, s);
        let positions: Vec<i64> = c
            .query("SELECT global_position FROM eventstore.events WHERE stream_id = $1 ORDER BY sequence", &[s])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{s}: {positions:?}");
        for p in positions {
            assert_eq!(p >> 48, g, "{s}: position {p} is not from node group {g}'s range");
            per_node.entry(g).or_default().push(p);
        }
    }
    let all: Vec<i64> = per_node.values().flatten().copied().collect();
    let unique_count = all.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert_eq!(unique_count, all.len(), "a position was given twice");
}

#[test]
#[ignore = "needs a Citus cluster: tests/citus.sh runs it"]
fn concurrent_writers_keep_every_stream_gapless() {
    distributed();
    let streams: Vec<String> = (0..6).map(|_| unique("busy")).collect();
    let per_writer = env_or("PG_EVENTSTORE_CITUS_APPENDS", 60);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let streams = streams.clone();
            std::thread::spawn(move || {
                let mut c = coordinator();
                let mut done = 0;
                let mut conflicts = 0;
                for i in 0..per_writer {
                    let s = &streams[(w + i) % streams.len()];
                    loop {
                        let v = version(&mut c, s);
                        match c.execute(
                            "SELECT eventstore.append_event($1, 'Busy', 'E', $2, expected_version => $3)",
                            &[s, &json!({"writer": w, "i": i}), &v],
                        ) {
                            Ok(_) => break,
                            Err(e) if db_error(&e).0 == "40001" => conflicts += 1,
                            Err(e) => panic!("writer {w}: {e}"),
                        }
                    }
                    done += 1;
                }
                (done, conflicts)
            })
        })
        .collect();
    let mut total = 0;
    for w in writers {
        total += w.join().unwrap().0;
    }
    let mut c = coordinator();
    let mut stored = 0;
    for s in &streams {
        let seqs = sequences(&mut c, s);
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "{s} has a gap");
        stored += seqs.len();
    }
    assert_eq!(stored, total);
    check_every_node();
}

#[test]
#[ignore = "needs a Citus cluster: tests/citus.sh runs it"]
fn what_a_distributed_store_cannot_do_says_so() {
    let mut c = distributed();
    let s = unique("limits");
    c.execute("SELECT eventstore.append_event($1, 'L', 'E', '{}')", &[&s]).unwrap();
    for sql in [
        "SELECT * FROM eventstore.read_all(0, 10)",
        "SELECT * FROM eventstore.feed_status()",
        "SELECT * FROM eventstore.read_category_backward('L')",
    ] {
        assert_eq!(code_of(c.batch_execute(sql)), "0A000", "{sql}");
    }
    // the lifecycle functions change rows through the coordinator, which keeps the audit log
    let mut w = node(ports()[1]);
    assert_eq!(code_of(w.execute("SELECT eventstore.delete_stream($1, reason => 'gone')", &[&s])), "0A000");
    assert_eq!(version(&mut c, &s), 1);
}

/// Writers appending through the coordinator, each to streams of its own, until `stop` is set;
/// returns what each writer had acknowledged: (stream, sequence, payload marker). Errors while a
/// node is down or a shard is moving are expected; an append that returned is acknowledged.
fn writers(n: usize, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Vec<std::thread::JoinHandle<Vec<(String, i64, i64)>>> {
    writers_of("Load", n, stop)
}

/// The same with streams of the given type.
fn writers_of(
    stream_type: &str,
    n: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<(String, i64, i64)>>> {
    (0..n)
        .map(|w| {
            let stop = stop.clone();
            let stream_type = stream_type.to_string();
            std::thread::spawn(move || {
                let streams: Vec<String> = (0..8).map(|_| unique(&format!("load{w}"))).collect();
                let mut acked = Vec::new();
                let mut c: Option<Client> = None;
                let mut i: i64 = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let conn = match c.as_mut() {
                        Some(conn) if !conn.is_closed() => conn,
                        _ => match Client::connect(
                            &format!("{} port={}", std::env::var("PG_EVENTSTORE_CITUS").unwrap(), ports()[0]),
                            NoTls,
                        ) {
                            Ok(conn) => c.insert(conn),
                            Err(_) => {
                                std::thread::sleep(std::time::Duration::from_millis(50));
                                continue;
                            }
                        },
                    };
                    let s = &streams[(i as usize) % streams.len()];
                    i += 1;
                    // the three ways an append runs: delegated to the stream's worker; delegated, and
                    // claiming a new event id (on whichever node holds its shard); and inside a
                    // transaction block, on the coordinator, which claims the id and has the
                    // stream's worker append (a two-phase commit over both)
                    let (payload, id) = (json!({"i": i}), uuid::Uuid::new_v4());
                    let sql = "SELECT eventstore.append_event($1, $3, 'E', $2, event_id => $4)";
                    let appended = match i % 3 {
                        0 => conn.query_one("SELECT eventstore.append_event($1, $3, 'E', $2)", &[s, &payload, &stream_type]),
                        1 => conn.query_one(sql, &[s, &payload, &stream_type, &id]),
                        _ => conn.transaction().and_then(|mut tx| {
                            let r = tx.query_one(sql, &[s, &payload, &stream_type, &id])?;
                            tx.commit().map(|_| r)
                        }),
                    };
                    match appended {
                        Ok(r) => acked.push((s.clone(), r.get::<_, i64>(0), i)),
                        Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                    }
                }
                acked
            })
        })
        .collect()
}

/// Finishes the two-phase commits each node coordinated that a crash left prepared: until then
/// they hold the feed of the nodes they prepared on.
fn recover_every_node() {
    let t = std::time::Instant::now();
    loop {
        let mut left = 0;
        for &p in &ports() {
            let mut n = node(p);
            n.execute("SELECT recover_prepared_transactions()", &[]).unwrap();
            left += n.query_one("SELECT count(*) FROM pg_prepared_xacts", &[]).unwrap().get::<_, i64>(0);
        }
        if left == 0 {
            return;
        }
        eprintln!("{left} prepared transactions left after recovery ({:?})", t.elapsed());
        assert!(t.elapsed() < std::time::Duration::from_secs(30), "{left} prepared transactions stay");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn check_acknowledged(acked: &[(String, i64, i64)]) {
    let mut c = coordinator();
    // a two-phase commit acknowledged to its client while a node was down finishes there when the
    // node that coordinated it recovers it (its maintenance daemon does every minute; the test does
    // not wait): the coordinator, or a worker whose delegated append claimed an id on the other
    recover_every_node();
    for shape in 0..3 {
        assert!(acked.iter().any(|a| a.2 % 3 == shape), "no append of shape {shape} was acknowledged");
    }
    for (s, seq, marker) in acked {
        let row = c
            .query_opt("SELECT payload FROM eventstore.load_stream($1, $2, 1) WHERE sequence = $2", &[s, seq])
            .unwrap();
        let payload: serde_json::Value = row.unwrap_or_else(|| panic!("acknowledged event {s}#{seq} is gone")).get(0);
        assert_eq!(payload, json!({"i": marker}), "{s}#{seq}");
    }
    let streams: std::collections::BTreeSet<&String> = acked.iter().map(|(s, _, _)| s).collect();
    for s in streams {
        let seqs = sequences(&mut c, s);
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "{s} has a gap");
    }
}

fn data_dir(name: &str) -> String {
    format!("{}/{name}", std::env::var("PG_EVENTSTORE_CITUS_DATA").expect("run tests/citus.sh"))
}

#[test]
#[ignore = "needs a Citus cluster: tests/citus.sh runs it"]
fn a_worker_killed_mid_load_loses_no_acknowledged_event() {
    distributed();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handles = writers(4, stop.clone());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SIGKILL to the worker's postmaster and every process of it, as a crash would
    let dir = data_dir("w2");
    let pid = std::fs::read_to_string(format!("{dir}/postmaster.pid")).unwrap().lines().next().unwrap().to_string();
    let children = std::process::Command::new("pgrep").args(["-P", &pid]).output().unwrap();
    let mut pids = vec![pid.clone()];
    pids.extend(String::from_utf8_lossy(&children.stdout).split_whitespace().map(String::from));
    let _ = std::process::Command::new("kill").arg("-9").args(&pids).status();
    // Dead, or a zombie nobody reaps (the cluster script's pg_ctl, its parent, has exited): then
    // its pid still answers, and the lock file it left would stop the restart. (Scratch::kill9
    // waits for its servers to be reaped; these never are.)
    let dead = |p: &String| {
        std::fs::read_to_string(format!("/proc/{p}/stat")).map_or(true, |st| st.split_whitespace().nth(2) == Some("Z"))
    };
    for _ in 0..200 {
        if pids.iter().all(dead) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(pids.iter().all(dead), "the worker's processes survived SIGKILL");
    let _ = std::fs::remove_file(format!("{dir}/postmaster.pid"));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = as_postgres("pg_ctl", &["-D", &dir, "-l", &format!("{dir}/../w2.log"), "-w", "start"]);
    assert!(out.status.success(), "restart: {}", String::from_utf8_lossy(&out.stderr));
    let restarted = std::time::SystemTime::now();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: Vec<_> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert!(acked.len() > 50, "only {} appends were acknowledged", acked.len());
    // appends reached the restarted worker again
    let mut c = coordinator();
    let group: i64 = node(ports()[2]).query_one("SELECT groupid::bigint FROM pg_dist_local_group", &[]).unwrap().get(0);
    let streams: std::collections::BTreeSet<&String> = acked.iter().map(|(s, _, _)| s).collect();
    let on_killed: Vec<&String> = streams.into_iter().filter(|s| group_of(&mut c, s) == group).collect();
    let after_restart: i64 = c
        .query_one(
            "SELECT count(*) FROM eventstore.events WHERE stream_id = ANY ($1) AND created_at > $2",
            &[&on_killed, &restarted],
        )
        .unwrap()
        .get(0);
    assert!(after_restart > 0, "no append on the killed worker's streams after its restart");
    check_acknowledged(&acked);
    check_every_node();
}

#[test]
#[ignore = "needs a Citus cluster: tests/citus.sh runs it"]
fn a_shard_moved_under_load_keeps_every_stream() {
    let mut c = distributed();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handles = writers(3, stop.clone());
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let (from, to) = (ports()[1], ports()[2]);
    let shard = move_busy_shard(&mut c, from, to);
    std::thread::sleep(std::time::Duration::from_millis(1000));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: Vec<_> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let streams: std::collections::BTreeSet<&String> = acked.iter().map(|(s, _, _)| s).collect();
    let moved: Vec<&String> = streams
        .into_iter()
        .filter(|s| {
            c.query_one("SELECT get_shard_id_for_distribution_column('eventstore.streams', $1::text)", &[s])
                .unwrap()
                .get::<_, i64>(0)
                == shard
        })
        .collect();
    assert!(!moved.is_empty(), "no stream of the moved shard was written");
    check_acknowledged(&acked);
    check_every_node();
    // appends to the moved streams carry on on their new node, with its positions
    let s = moved[0];
    c.execute("SELECT eventstore.append_event($1, 'Load', 'E', '{}')", &[s]).unwrap();
    let to_group: i64 =
        c.query_one("SELECT groupid::bigint FROM pg_dist_node WHERE nodeport = $1", &[&(to as i32)]).unwrap().get(0);
    let last: i64 = c
        .query_one("SELECT global_position FROM eventstore.last_event($1)", &[s])
        .unwrap()
        .get(0);
    assert_eq!(last >> 48, to_group);
}

/// One reader of read_all_nodes: its checkpoint per node, and every row in the order it came.
fn feed_reader(
    writing: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<(i32, i64, String, i64)>> {
    std::thread::spawn(move || {
        let mut c = coordinator();
        let mut after: BTreeMap<String, i64> = BTreeMap::new();
        let mut seen = Vec::new();
        let mut quiet = 0;
        loop {
            let writing_now = writing.load(std::sync::atomic::Ordering::Relaxed);
            let rows = c
                .query(
                    "SELECT node, global_position, stream_id, sequence FROM eventstore.read_all_nodes($1, 200)",
                    &[&json!(after)],
                )
                .unwrap();
            for r in &rows {
                let (node, position): (i32, i64) = (r.get(0), r.get(1));
                after.insert(node.to_string(), position);
                seen.push((node, position, r.get(2), r.get(3)));
            }
            if rows.is_empty() {
                // after the writers stopped, a few empty reads in a row: everything committed is read
                quiet = if writing_now { 0 } else { quiet + 1 };
                if quiet >= 5 {
                    return seen;
                }
                std::thread::sleep(std::time::Duration::from_millis(30));
            }
        }
    })
}

/// Moves the shard of a stream the writers are busy with from one worker to the other, its rows
/// copied by logical replication while the appends go on, then switched over.
fn move_busy_shard(c: &mut Client, from: u16, to: u16) -> i64 {
    let recent: Vec<String> = c
        .query(
            "SELECT stream_id FROM eventstore.streams WHERE stream_id LIKE 'load%' AND created_at > now() - interval '3 seconds'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let shard: i64 = recent
        .iter()
        .find_map(|s| {
            c.query_opt(
                "SELECT p.shardid FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
                  WHERE p.shardid = get_shard_id_for_distribution_column('eventstore.streams', $1::text) AND n.nodeport = $2",
                &[s, &(from as i32)],
            )
            .unwrap()
            .map(|r| r.get(0))
        })
        .expect("no stream being written lives on the worker to move from");
    settle_earlier_moves(c);
    c.execute(
        "SELECT citus_move_shard_placement($1, '127.0.0.1', $2, '127.0.0.1', $3, shard_transfer_mode => 'force_logical')",
        &[&shard, &(from as i32), &(to as i32)],
    )
    .unwrap();
    shard
}

#[test]
#[ignore = "needs a Citus cluster: tests/citus.sh runs it"]
fn feed_readers_across_nodes_see_every_event_once_in_order_through_a_shard_move() {
    let mut c = distributed();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let handles = writers(4, stop.clone());
    let readers: Vec<_> = (0..2).map(|_| feed_reader(writing.clone())).collect();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    // from the second worker to the first: the moved streams go on with positions of a lower range
    // than their earlier events', which readers must still get after those
    move_busy_shard(&mut c, ports()[2], ports()[1]);
    std::thread::sleep(std::time::Duration::from_millis(1000));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: Vec<_> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    // and one that starts now, from the beginning: it meets the moved streams' new events (from the
    // first worker's range, which it reads first) before their earlier ones (the second worker's)
    let mut readers = readers;
    readers.push(feed_reader(writing.clone()));
    let stored: std::collections::BTreeSet<(String, i64)> = c
        .query("SELECT stream_id, sequence FROM eventstore.events", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (s, seq, _) in &acked {
        assert!(stored.contains(&(s.clone(), *seq)), "acknowledged {s}#{seq} is not stored");
    }
    for (i, reader) in readers.into_iter().enumerate() {
        let seen = reader.join().unwrap();
        let mut once = std::collections::BTreeSet::new();
        let mut last_position: BTreeMap<i32, i64> = BTreeMap::new();
        let mut last_sequence: BTreeMap<String, i64> = BTreeMap::new();
        for (node, position, s, seq) in &seen {
            assert!(once.insert((s.clone(), *seq)), "reader {i} got {s}#{seq} twice");
            assert_eq!(position >> 48, *node as i64, "reader {i}: position {position} is not node {node}'s");
            let lp = last_position.insert(*node, *position).unwrap_or(0);
            assert!(*position > lp, "reader {i}: node {node} went from {lp} back to {position}");
            let ls = last_sequence.insert(s.clone(), *seq).unwrap_or(0);
            if *seq != ls + 1 {
                let stored: Vec<(i64, i64)> = c
                    .query("SELECT sequence, global_position FROM eventstore.events WHERE stream_id = $1 ORDER BY 1", &[s])
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect();
                let got: Vec<&(i32, i64, String, i64)> = seen.iter().filter(|x| &x.2 == s).collect();
                panic!("reader {i}: {s} went from {ls} to {seq}; stored {stored:?}; delivered {got:?}");
            }
        }
        assert_eq!(once, stored, "reader {i} did not get exactly the stored events");
    }
    check_every_node();
}

/// One consumer of a durable subscription, as an application runs it: poll a batch, handle it,
/// acknowledge it. What it handled and acknowledged goes to `acked` (in the order the acks
/// happened, which the subscription's row lock serializes). It fails on purpose now and then: no
/// ack at all, or an ack of the batch's middle row; the next poll must then bring exactly the
/// unacknowledged rest of that batch. `killed` tells it to report its session's pid and wait.
#[allow(clippy::type_complexity)]
fn subscriber(
    name: String,
    id: usize,
    writing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::Mutex<Vec<(i64, String, i64)>>>,
    pause: Option<std::sync::mpsc::Sender<i32>>,
) -> std::thread::JoinHandle<(usize, usize, usize)> {
    std::thread::spawn(move || {
        let mut c = coordinator();
        let mut expect_next: Option<Vec<i64>> = None;
        let (mut batches, mut redelivered, mut spanning) = (0, 0, 0);
        let mut quiet = 0;
        let mut pause = pause;
        loop {
            let writing_now = writing.load(std::sync::atomic::Ordering::Relaxed);
            let rows: Vec<(i64, String, i64)> = match c.query(
                "SELECT global_position, stream_id, sequence FROM eventstore.poll($1, 40)",
                &[&name],
            ) {
                Ok(rows) => rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect(),
                Err(e) if c.is_closed() => {
                    eprintln!("subscriber {id}: {e}; reconnecting");
                    c = coordinator();
                    expect_next = None;
                    continue;
                }
                Err(e) => panic!("subscriber {id}: poll failed: {e}"),
            };
            if let Some(expected) = expect_next.take() {
                let got: Vec<i64> = rows.iter().map(|r| r.0).collect();
                assert_eq!(got, expected, "subscriber {id}: the poll after a failed batch brings exactly its unacknowledged rows");
                redelivered += 1;
            }
            if rows.is_empty() {
                quiet = if writing_now { 0 } else { quiet + 1 };
                if quiet >= 8 {
                    eprintln!("subscriber {id}: {batches} batches, {redelivered} redelivered, {spanning} acked in the first of two nodes");
                    return (batches, redelivered, spanning);
                }
                std::thread::sleep(std::time::Duration::from_millis(40));
                continue;
            }
            quiet = 0;
            batches += 1;
            if let Some(tx) = pause.take() {
                // polled and not acknowledged: the test ends this session now
                let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
                tx.send(pid).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(500));
                assert!(c.execute("SELECT eventstore.ack($1, $2)", &[&name, &rows.last().unwrap().0]).is_err());
                c = coordinator();
                continue;
            }
            // every fifth batch fails before its ack; of the other batches from two nodes the ack
            // names one of the first node's rows (it moves one node's checkpoint and leaves the
            // other's), and every fifth of the rest acks its middle row
            let first_node = rows.iter().take_while(|r| r.0 >> 48 == rows[0].0 >> 48).count();
            let upto = if batches % 5 == 0 {
                expect_next = Some(rows.iter().map(|r| r.0).collect());
                continue;
            } else if first_node < rows.len() {
                spanning += 1;
                first_node.div_ceil(2)
            } else if batches % 5 == 3 && rows.len() >= 2 {
                rows.len() / 2
            } else {
                rows.len()
            };
            let mut log = acked.lock().unwrap();
            c.execute("SELECT eventstore.ack($1, $2)", &[&name, &rows[upto - 1].0]).unwrap();
            log.extend(rows[..upto].iter().cloned());
            if upto < rows.len() {
                expect_next = Some(rows[upto..].iter().map(|r| r.0).collect());
            }
        }
    })
}

#[test]
#[ignore = "needs a Citus cluster: tests/citus.sh runs it"]
fn a_durable_subscription_across_nodes_delivers_every_event_and_acknowledges_each_once() {
    let mut c = distributed();
    // a stream type of its own, so that the subscription follows the writers live
    let name = unique("durable");
    let stream_type = unique("Durable");
    c.execute("SELECT eventstore.create_subscription($1, stream_types => ARRAY[$2])", &[&name, &stream_type]).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let handles = writers_of(&stream_type, 4, stop.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    // the first consumer takes the lease, polls one batch and loses its session before the ack;
    // the second then takes over from the checkpoint
    let first = subscriber(name.clone(), 0, writing.clone(), acked.clone(), Some(tx));
    let pid = rx.recv().unwrap();
    let second = subscriber(name.clone(), 1, writing.clone(), acked.clone(), None);
    c.execute("SELECT pg_terminate_backend($1::integer)", &[&pid]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    // from the worker with more shards to the other (the feed test moved one the other way)
    let on_first: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node n USING (groupid)
              WHERE s.logicalrelid = 'eventstore.events'::regclass AND n.nodeport = $1",
            &[&(ports()[1] as i32)],
        )
        .unwrap()
        .get(0);
    if on_first >= 4 {
        move_busy_shard(&mut c, ports()[1], ports()[2]);
    } else {
        move_busy_shard(&mut c, ports()[2], ports()[1]);
    }
    std::thread::sleep(std::time::Duration::from_millis(800));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written: Vec<_> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    let (b0, r0, s0) = first.join().unwrap();
    let (b1, r1, s1) = second.join().unwrap();
    assert!(
        b0 + b1 > 10 && r0 + r1 > 2,
        "too little happened: {b0} + {b1} batches, {r0} + {r1} redeliveries, {s0} + {s1} acks within two nodes' batches"
    );

    let stored: std::collections::BTreeSet<(String, i64)> = c
        .query("SELECT stream_id, sequence FROM eventstore.events WHERE stream_type = $1", &[&stream_type])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (s, seq, _) in &written {
        assert!(stored.contains(&(s.clone(), *seq)), "acknowledged append {s}#{seq} is not stored");
    }
    let acked = acked.lock().unwrap();
    let mut once = std::collections::BTreeSet::new();
    let mut last_position: BTreeMap<i64, i64> = BTreeMap::new();
    let mut last_sequence: BTreeMap<String, i64> = BTreeMap::new();
    for (position, s, seq) in acked.iter() {
        assert!(once.insert((s.clone(), *seq)), "{s}#{seq} was acknowledged twice");
        let lp = last_position.insert(position >> 48, *position).unwrap_or(0);
        assert!(*position > lp, "node {} went from {lp} back to {position}", position >> 48);
        let ls = last_sequence.insert(s.clone(), *seq).unwrap_or(0);
        assert_eq!(*seq, ls + 1, "{s} went from {ls} to {seq}");
    }
    assert_eq!(once, stored, "the acknowledged events are not exactly the stored ones");
    let lag: i64 = c
        .query_one("SELECT lag_events FROM eventstore.subscriptions WHERE name = $1", &[&name])
        .unwrap()
        .get(0);
    assert_eq!(lag, 0);
    check_every_node();
}

#[test]
#[ignore = "needs a Citus cluster: tests/citus.sh runs it"]
fn a_distributed_subscription_acknowledges_rows_of_its_batch_and_refuses_the_rest() {
    let mut c = distributed();
    let name = unique("batches");
    let stream_type = unique("Batch");
    assert_eq!(code_of(c.execute("SELECT eventstore.create_subscription($1, start_from => 7)", &[&name])), "0A000");
    let mut w = node(ports()[1]);
    assert_eq!(code_of(w.execute("SELECT eventstore.create_subscription($1)", &[&name])), "0A000");
    c.execute("SELECT eventstore.create_subscription($1, stream_types => ARRAY[$2])", &[&name, &stream_type]).unwrap();
    // three events on each worker
    let (mut on1, mut on2) = (Vec::new(), Vec::new());
    while on1.len() < 3 || on2.len() < 3 {
        let s = unique("batch");
        let g = group_of(&mut c, &s);
        let list = if g == group_of(&mut c, "batch-a") { &mut on1 } else { &mut on2 };
        if list.len() < 3 {
            c.execute("SELECT eventstore.append_event($1, $2, 'E', '{}')", &[&s, &stream_type]).unwrap();
            list.push(s);
        }
    }
    let poll = |c: &mut Client, n: i32| -> Vec<i64> {
        c.query("SELECT global_position FROM eventstore.poll($1, $2)", &[&name, &n]).unwrap().iter().map(|r| r.get(0)).collect()
    };
    let batch = poll(&mut c, 100);
    assert_eq!(batch.len(), 6);
    let (n1, n2) = (batch[0] >> 48, batch[5] >> 48);
    assert!(n1 < n2 && batch[2] >> 48 == n1 && batch[3] >> 48 == n2, "node by node: {batch:?}");
    // only the session that polled may acknowledge, and only what it was delivered
    let mut other = coordinator();
    assert_eq!(code_of(other.execute("SELECT eventstore.ack($1, $2)", &[&name, &batch[1]])), "55000");
    assert_eq!(code_of(c.execute("SELECT eventstore.ack($1, $2)", &[&name, &(batch[5] + 1)])), "22023");
    // an ack of the first node's second row moves that node only; more events arrive meanwhile,
    // and the next polls bring exactly the rest of the batch, then the new ones
    c.execute("SELECT eventstore.ack($1, $2)", &[&name, &batch[1]]).unwrap();
    let checkpoint: serde_json::Value = c
        .query_one("SELECT checkpoint_nodes FROM eventstore.subscriptions WHERE name = $1", &[&name])
        .unwrap()
        .get(0);
    assert_eq!(checkpoint, json!({ n1.to_string(): batch[1] }));
    for s in on1.iter().chain(&on2) {
        c.execute("SELECT eventstore.append_event($1, $2, 'E', '{}')", &[s, &stream_type]).unwrap();
    }
    assert_eq!(poll(&mut c, 2), batch[2..4]);
    assert_eq!(poll(&mut c, 100), batch[2..]);
    // an ack of a second node's row covers the first node's rows before it
    c.execute("SELECT eventstore.ack($1, $2)", &[&name, &batch[3]]).unwrap();
    assert_eq!(poll(&mut c, 100), batch[4..]);
    c.execute("SELECT eventstore.ack($1, $2)", &[&name, &batch[5]]).unwrap();
    c.execute("SELECT eventstore.ack($1, $2)", &[&name, &batch[5]]).unwrap(); // a repeated ack changes nothing
    assert_eq!(code_of(c.execute("SELECT eventstore.ack($1, $2)", &[&name, &batch[4]])), "22023"); // backwards
    let next = poll(&mut c, 100);
    assert_eq!(next.len(), 6);
    assert!(next[0] > batch[2] && next[3] > batch[5], "the new events after the old: {next:?}");
    let (lag, checkpoint): (i64, serde_json::Value) = {
        let r = c.query_one("SELECT lag_events, checkpoint_nodes FROM eventstore.subscriptions WHERE name = $1", &[&name]).unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((lag, checkpoint), (6, json!({ n1.to_string(): batch[2], n2.to_string(): batch[5] })));
    c.execute("SELECT eventstore.ack($1, $2)", &[&name, &next[5]]).unwrap();
    assert_eq!(poll(&mut c, 100), Vec::<i64>::new());
    c.execute("SELECT eventstore.delete_subscription($1)", &[&name]).unwrap();
}

#[test]
#[ignore = "needs a Citus cluster: tests/citus.sh runs it"]
fn feed_filters_and_consumer_groups_split_the_streams_of_every_node() {
    let mut c = distributed();
    let (kept, other) = (unique("Kept"), unique("Other"));
    let mut streams = Vec::new();
    for i in 0..24 {
        // on each of the first two workers in turn (earlier tests moved shards about)
        let s = std::iter::repeat_with(|| unique("grouped")).find(|s| group_of(&mut c, s) == 1 + i % 2).unwrap();
        let t = if i % 3 == 0 { &other } else { &kept };
        c.execute("SELECT eventstore.append_events($1, $2, '[{\"type\": \"A\", \"payload\": {}}, {\"type\": \"B\", \"payload\": {}}]')", &[&s, t])
            .unwrap();
        if i % 3 != 0 {
            streams.push(s);
        }
    }
    let read = |c: &mut Client, member: Option<i32>, event_types: Option<Vec<&str>>| -> Vec<(i32, String, i64, String)> {
        let mut after = json!({});
        let mut got = Vec::new();
        loop {
            let rows = c
                .query(
                    "SELECT node, global_position, stream_id, sequence, event_type FROM eventstore.read_all_nodes($1, 5,
                        stream_types => ARRAY[$2], event_types => $3, consumer_group_member => $4,
                        consumer_group_size => CASE WHEN $4::integer IS NULL THEN NULL ELSE 3 END)",
                    &[&after, &kept, &event_types, &member],
                )
                .unwrap();
            if rows.is_empty() {
                return got;
            }
            for r in rows {
                after[r.get::<_, i32>(0).to_string()] = json!(r.get::<_, i64>(1));
                got.push((r.get(0), r.get(2), r.get(3), r.get(4)));
            }
        }
    };
    let all = read(&mut c, None, None);
    assert_eq!(all.len(), streams.len() * 2);
    assert!(all.iter().any(|r| r.0 == 1) && all.iter().any(|r| r.0 == 2), "both workers hold some streams");
    let mut split: Vec<_> = (0..3).flat_map(|m| read(&mut c, Some(m), None)).collect();
    for m in 0..3 {
        let mine: std::collections::BTreeSet<String> = read(&mut c, Some(m), None).into_iter().map(|r| r.1).collect();
        for n in (m + 1)..3 {
            let theirs: std::collections::BTreeSet<String> = read(&mut c, Some(n), None).into_iter().map(|r| r.1).collect();
            assert!(mine.is_disjoint(&theirs), "members {m} and {n} share a stream");
        }
    }
    let mut all_sorted = all.clone();
    all_sorted.sort();
    split.sort();
    assert_eq!(split, all_sorted, "the members together read every event once");
    let b_only = read(&mut c, None, Some(vec!["B"]));
    assert_eq!(b_only.len(), streams.len());
    assert!(b_only.iter().all(|r| r.2 == 2 && r.3 == "B"));
    assert_eq!(
        code_of(c.execute("SELECT count(*) FROM eventstore.read_all_nodes('{}', 10, consumer_group_member => 3, consumer_group_size => 3)", &[])),
        "22023"
    );
    assert_eq!(code_of(c.execute("SELECT count(*) FROM eventstore.read_all_nodes('{}', 10, up_to => '[1]')", &[])), "22023");
    assert_eq!(code_of(c.execute("SELECT count(*) FROM eventstore.read_all_nodes('{}', 10, up_to => '{\"x\": 1}')", &[])), "22023");
}

#[test]
#[ignore = "needs a Citus cluster: tests/citus.sh runs it"]
fn a_node_added_after_distribute_takes_appends_once_prepared() {
    let mut c = distributed();
    let port: i32 = 5514;
    if c.query_opt("SELECT 1 FROM pg_dist_node WHERE nodeport = $1", &[&port]).unwrap().is_none() {
        let status = std::process::Command::new("bash")
            .args([concat!(env!("CARGO_MANIFEST_DIR"), "/../citus/cluster.sh"), "node", "w3", "5514"])
            .status()
            .unwrap();
        assert!(status.success(), "could not start a fourth node");
        c.execute("SELECT citus_add_node('127.0.0.1', $1)", &[&port]).unwrap();
        // what citus_rebalance_start would do first: copies of the reference tables there
        c.execute("SELECT replicate_reference_tables()", &[]).unwrap();
    }
    let s = unique("grown");
    c.execute("SELECT eventstore.append_events($1, 'Grown', '[{\"type\": \"A\", \"payload\": {}}, {\"type\": \"B\", \"payload\": {}}]')", &[&s])
        .unwrap();
    let from: i32 = c
        .query_one(
            "SELECT n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
              WHERE p.shardid = get_shard_id_for_distribution_column('eventstore.streams', $1::text)",
            &[&s],
        )
        .unwrap()
        .get(0);
    let shard: i64 = c
        .query_one("SELECT get_shard_id_for_distribution_column('eventstore.streams', $1::text)", &[&s])
        .unwrap()
        .get(0);
    let move_to = |c: &mut Client, from: i32, to: i32| {
        settle_earlier_moves(c);
        c.execute(
            "SELECT citus_move_shard_placement($1, '127.0.0.1', $2, '127.0.0.1', $3, shard_transfer_mode => 'block_writes')",
            &[&shard, &from, &to],
        )
        .unwrap();
    };
    move_to(&mut c, from, port);
    // the new node's copy of the store still has a fresh install's position range: appends wait
    let append = |c: &mut Client| code_of(c.execute("SELECT eventstore.append_event($1, 'Grown', 'C', '{}')", &[&s]));
    assert_eq!(append(&mut c), "55000");
    c.execute("SELECT eventstore.prepare_nodes()", &[]).unwrap();
    c.execute("SELECT eventstore.prepare_nodes()", &[]).unwrap(); // again: nothing changes
    assert_eq!(append(&mut c), "ok");
    let group: i64 = c.query_one("SELECT groupid::bigint FROM pg_dist_node WHERE nodeport = $1", &[&port]).unwrap().get(0);
    let rows: Vec<(i32, i64, i64)> = c
        .query(
            "SELECT node, global_position, sequence FROM eventstore.read_all_nodes('{}', 1000000) WHERE stream_id = $1",
            &[&s],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(rows.iter().map(|r| r.2).collect::<Vec<_>>(), vec![1, 2, 3], "{rows:?}");
    assert_eq!((rows[2].0 as i64, rows[2].1 >> 48), (group, group), "the new node's own range: {rows:?}");
    let mut w3 = node(port as u16);
    assert_eq!(violations(&mut w3), Vec::<String>::new());
    // the shard goes back; the node stays in the cluster (its range holds an event the feed reads
    // through it)
    move_to(&mut c, port, from);
    assert_eq!(append(&mut c), "ok");
    check_every_node();
}

#[test]
#[ignore = "needs a Citus cluster: tests/citus.sh runs it"]
fn a_store_that_held_data_keeps_it_once_distributed() {
    let mut c = distributed();
    let events: Vec<(String, i64, i64)> = c
        .query("SELECT stream_id, sequence, global_position FROM eventstore.events WHERE stream_type = 'Pre' AND global_position < 1::bigint << 48", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(events.len(), 21, "the events written before distribute(), with the coordinator's positions");
    assert_eq!(version(&mut c, "pre-1"), 3);
    let snapshot: serde_json::Value = c.query_one("SELECT payload FROM eventstore.load_snapshot('pre-1')", &[]).unwrap().get(0);
    assert_eq!(snapshot, json!({"closed": true}));
    let chain: i64 = c.query_one("SELECT count(*) FROM eventstore.causation_chain('pre-1', 3)", &[]).unwrap().get(0);
    assert!(chain >= 2, "the event, its command and the event that caused it");
    // every event id stored before is claimed, archived ones too: naming one for another stream is
    // refused; the archived stream comes back whole
    let claimed: i64 = c
        .query_one("SELECT count(*) FROM eventstore.event_ids WHERE stream_id LIKE 'pre-%'", &[])
        .unwrap()
        .get(0);
    assert_eq!(claimed, 23);
    let archived: uuid::Uuid = c.query_one("SELECT event_id FROM eventstore.load_archived_stream('pre-archived', 2, 1)", &[]).unwrap().get(0);
    assert_eq!(
        code_of(c.execute("SELECT eventstore.append_event($1, 'Pre', 'E', '{}', event_id => $2)", &[&unique("pre-reuse"), &archived])),
        "23505"
    );
    let restored: i64 = c.query_one("SELECT eventstore.restore_stream('pre-archived')", &[]).unwrap().get(0);
    assert_eq!((restored, version(&mut c, "pre-archived")), (2, 2));
    // the streams go on where they were, on whichever node they went to
    c.execute("SELECT eventstore.append_event('pre-2', 'Pre', 'D', '{}', expected_version => 2)", &[]).unwrap();
    // the subscription made before goes on from its checkpoint: the 5 events it acknowledged are
    // not delivered again, the other 16 and the new one are, in order per stream
    let checkpoint: serde_json::Value = c
        .query_one("SELECT checkpoint_nodes FROM eventstore.subscriptions WHERE name = 'pre-distribution'", &[])
        .unwrap()
        .get(0);
    let acked = checkpoint["0"].as_i64().unwrap();
    let mut got: Vec<(i64, String, i64)> = Vec::new();
    loop {
        let rows = c.query("SELECT global_position, stream_id, sequence FROM eventstore.poll('pre-distribution', 7)", &[]).unwrap();
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            got.push((r.get(0), r.get(1), r.get(2)));
        }
        c.execute("SELECT eventstore.ack('pre-distribution', $1)", &[&got.last().unwrap().0]).unwrap();
    }
    let expected: std::collections::BTreeSet<(String, i64)> =
        events.iter().filter(|e| e.2 > acked).map(|e| (e.0.clone(), e.1)).chain([("pre-2".to_string(), 3)]).collect();
    assert_eq!(got.iter().map(|g| (g.1.clone(), g.2)).collect::<std::collections::BTreeSet<_>>(), expected);
    assert_eq!(got.len(), expected.len());
    check_every_node();
}

#[test]
#[ignore = "needs a Citus cluster: tests/citus.sh runs it"]
fn event_ids_are_checked_across_nodes_inside_a_client_transaction() {
    let mut c = distributed();
    let a = unique("txid-a");
    let b = loop {
        let b = unique("txid-b");
        if group_of(&mut c, &b) != group_of(&mut c, &a) {
            break b;
        }
    };
    let (id1, id2) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    // inside a transaction block, as the cqrs-es adapter and the typed client append: a new id, a
    // retry of the same append (idempotent), and a second event
    let mut tx = c.transaction().unwrap();
    let first: i64 = tx.query_one("SELECT eventstore.append_event($1, 'TxId', 'E', '{}', event_id => $2)", &[&a, &id1]).unwrap().get(0);
    let again: i64 = tx.query_one("SELECT eventstore.append_event($1, 'TxId', 'E', '{}', event_id => $2)", &[&a, &id1]).unwrap().get(0);
    tx.execute("SELECT eventstore.append_event($1, 'TxId', 'E', '{}', event_id => $2)", &[&b, &id2]).unwrap();
    tx.commit().unwrap();
    assert_eq!((first, again), (1, 1));
    // an id of a stream on the other node, in a transaction: refused, and nothing is written
    let mut tx = c.transaction().unwrap();
    assert_eq!(code_of(tx.execute("SELECT eventstore.append_event($1, 'TxId', 'E', '{}', event_id => $2)", &[&b, &id1])), "23505");
    drop(tx);
    // and one used before distribute() (pre-1's first event)
    let old: uuid::Uuid = c.query_one("SELECT event_id FROM eventstore.load_stream('pre-1', 1, 1)", &[]).unwrap().get(0);
    let mut tx = c.transaction().unwrap();
    assert_eq!(code_of(tx.execute("SELECT eventstore.append_event($1, 'TxId', 'E', '{}', event_id => $2)", &[&a, &old])), "23505");
    drop(tx);
    // and one the store generated since (not claimed, but marked, so looked up on every node)
    c.execute("SELECT eventstore.append_event($1, 'TxId', 'Generated', '{}')", &[&b]).unwrap();
    let generated: uuid::Uuid = c.query_one("SELECT event_id FROM eventstore.last_event($1)", &[&b]).unwrap().get(0);
    assert_eq!(code_of(c.execute("SELECT eventstore.append_event($1, 'TxId', 'E', '{}', event_id => $2)", &[&a, &generated])), "23505");
    // and one the store generated in the same transaction, not yet committed, on the other node
    let mut tx = c.transaction().unwrap();
    tx.execute("SELECT eventstore.append_event($1, 'TxId', 'Generated', '{}')", &[&b]).unwrap();
    let fresh: uuid::Uuid = tx.query_one("SELECT event_id FROM eventstore.last_event($1)", &[&b]).unwrap().get(0);
    assert_eq!(code_of(tx.execute("SELECT eventstore.append_event($1, 'TxId', 'E', '{}', event_id => $2)", &[&a, &fresh])), "23505");
    drop(tx);
    assert_eq!((version(&mut c, &a), version(&mut c, &b)), (1, 2));
    check_every_node();
}

/// The cluster-wide rule of event ids under a race: two appends using one new id in streams on
/// different nodes, let go at once, inside transaction blocks (held open a moment, so that the
/// other meets the claim uncommitted) and on their own. One commits; the other is refused (23505)
/// and writes nothing, whichever node it runs on.
#[test]
#[ignore = "needs a Citus cluster: tests/citus.sh runs it"]
fn appends_racing_to_use_one_new_event_id_on_two_nodes_commit_once() {
    let mut c = distributed();
    let pair = streams_on_every_worker(&mut c, "race-id", 1);
    let mut ids = Vec::new();
    for round in 0..24 {
        let id = uuid::Uuid::new_v4();
        ids.push(id);
        let in_block = round % 2 == 0;
        let go = std::sync::Arc::new(std::sync::Barrier::new(2));
        let racers: Vec<_> = pair
            .iter()
            .cloned()
            .map(|s| {
                let go = go.clone();
                std::thread::spawn(move || {
                    let mut c = coordinator();
                    let sql = "SELECT eventstore.append_event($1, 'Race', 'E', '{}', event_id => $2)";
                    if in_block {
                        let mut tx = c.transaction().unwrap();
                        tx.execute("SELECT 1", &[]).unwrap();
                        go.wait();
                        let r = tx.execute(sql, &[&s, &id]).and_then(|_| {
                            std::thread::sleep(std::time::Duration::from_millis(30));
                            tx.commit()
                        });
                        code_of(r)
                    } else {
                        go.wait();
                        code_of(c.execute(sql, &[&s, &id]))
                    }
                })
            })
            .collect();
        let mut codes: Vec<String> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        codes.sort();
        assert_eq!(codes, vec!["23505".to_string(), "ok".to_string()], "round {round} (in a block: {in_block})");
    }
    let stored: i64 = c
        .query_one("SELECT count(*) FROM eventstore.events WHERE event_id = ANY ($1)", &[&ids])
        .unwrap()
        .get(0);
    assert_eq!(stored, ids.len() as i64, "each id stored once");
    let versions: i64 = pair.iter().map(|s| version(&mut c, s)).sum();
    assert_eq!(versions, ids.len() as i64);
    check_every_node();
}

/// A client's transaction that writes a table of its own (distributed too) and appends with an
/// event id commits on every node, and no worker restarts: the sessions opened to them before are
/// still there afterwards. (0.7.0 as first written looked the id up from inside the call Citus
/// delegated, a nested distributed query that Citus leaves open at the two-phase commit; by hand,
/// on a store of 32 shards, a worker crashed at COMMIT PREPARED in about one such transaction in
/// four. This test's store of 8 shards did not show it in 24 rounds: it guards the shape.)
#[test]
#[ignore = "needs a Citus cluster: tests/citus.sh runs it"]
fn a_transaction_writing_its_own_table_and_appends_on_several_nodes_commits_everywhere() {
    let mut c = distributed();
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS outbox (id uuid PRIMARY KEY, stream_id text NOT NULL);
         SELECT create_distributed_table('outbox', 'id') WHERE NOT EXISTS
             (SELECT FROM pg_dist_partition WHERE logicalrelid = 'outbox'::regclass)",
    )
    .unwrap();
    let mut watchers: Vec<Client> = ports()[1..].iter().map(|&p| node(p)).collect();
    let streams = streams_on_every_worker(&mut c, "outboxed", 1);
    let mut ids = Vec::new();
    for round in 0..24 {
        // a new session each time, as the crash came in a session's first such commit
        let mut c = coordinator();
        let s = &streams[round % 2];
        let id = uuid::Uuid::new_v4();
        ids.push(id);
        let mut tx = c.transaction().unwrap();
        tx.execute("INSERT INTO outbox VALUES ($1, $2)", &[&id, s]).unwrap();
        tx.execute("SELECT eventstore.append_event($1, 'Outboxed', 'E', '{}', event_id => $2)", &[s, &id]).unwrap();
        tx.commit().unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    // and on its own, with a volatile id: the coordinator has the stream's node append
    c.execute("SELECT eventstore.append_event($1, 'Outboxed', 'G', '{}', event_id => gen_random_uuid())", &[&streams[1]])
        .unwrap();
    for w in &mut watchers {
        w.query_one("SELECT 1", &[]).expect("a worker restarted");
    }
    let count = |c: &mut Client, sql: &str| -> i64 { c.query_one(sql, &[&ids]).unwrap().get(0) };
    assert_eq!(count(&mut c, "SELECT count(*) FROM outbox WHERE id = ANY ($1)"), ids.len() as i64);
    assert_eq!(count(&mut c, "SELECT count(*) FROM eventstore.events WHERE event_id = ANY ($1)"), ids.len() as i64);
    check_every_node();
}

/// `per_worker` streams of the given prefix on each node that holds shards, node by node.
fn streams_on_every_worker(c: &mut Client, prefix: &str, per_worker: usize) -> Vec<String> {
    let mut by_group: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for i in 0..200 {
        let s = format!("{}-{i}", unique(prefix));
        by_group.entry(group_of(c, &s)).or_default().push(s);
        if by_group.len() >= 2 && by_group.values().all(|v| v.len() >= per_worker) {
            break;
        }
    }
    let full: Vec<&Vec<String>> = by_group.values().filter(|v| v.len() >= per_worker).collect();
    assert!(full.len() >= 2, "streams of {prefix} on fewer than two nodes: {by_group:?}");
    full.iter().flat_map(|v| v[..per_worker].to_vec()).collect()
}

#[test]
#[ignore = "needs a Citus cluster: tests/citus.sh runs it"]
fn lifecycle_functions_change_rows_on_the_node_that_holds_them() {
    let mut c = distributed();
    let streams = streams_on_every_worker(&mut c, "life", 3);
    let payload = json!({"email": "a@example.org", "n": 1});
    for s in &streams {
        let cmd: uuid::Uuid = c
            .query_one("SELECT eventstore.record_command('Register', $2, $1)", &[s, &json!({"iban": "DE89", "name": "A"})])
            .unwrap()
            .get(0);
        for _ in 0..3 {
            c.execute("SELECT eventstore.append_event($1, 'Person', 'Registered', $2, command_id => $3)", &[s, &payload, &cmd])
                .unwrap();
        }
        c.execute("SELECT eventstore.take_snapshot($1, 2, '{\"name\": \"A\"}')", &[s]).unwrap();
    }
    let payloads = |c: &mut Client, s: &str| -> Vec<serde_json::Value> {
        c.query("SELECT payload FROM eventstore.load_stream($1)", &[&s]).unwrap().iter().map(|r| r.get(0)).collect()
    };
    let one = |c: &mut Client, sql: &str, s: &str| -> i64 { c.query_one(sql, &[&s]).unwrap().get(0) };
    // one stream of each kind per worker: streams[k] and streams[k + 3]
    for w in [0, 3] {
        let (truncated, redacted, erased) = (&streams[w], &streams[w + 1], &streams[w + 2]);
        assert_eq!(one(&mut c, "SELECT eventstore.truncate_stream($1, 3, 'older than a year')", truncated), 2);
        let left: Vec<i64> =
            c.query("SELECT sequence FROM eventstore.load_stream($1)", &[truncated]).unwrap().iter().map(|r| r.get(0)).collect();
        assert_eq!(left, vec![3]);
        assert_eq!(one(&mut c, "SELECT eventstore.redact_events($1, ARRAY[2], ARRAY['payload.email'], 'asked')", redacted), 1);
        assert_eq!(payloads(&mut c, redacted)[1], json!({"email": null, "n": 1}));
        assert_eq!(payloads(&mut c, redacted)[0], payload);
        assert_eq!(one(&mut c, "SELECT eventstore.erase_stream($1, 'right to erasure')", erased), 3);
        assert!(payloads(&mut c, erased).iter().all(|p| *p == json!({})));
        // the commands recorded for the stream are erased on every node's copy of the reference table
        for port in ports() {
            let kept: i64 = node(port)
                .query_one("SELECT count(*) FROM eventstore.commands WHERE stream_id = $1 AND payload <> '{}'", &[erased])
                .unwrap()
                .get(0);
            assert_eq!(kept, 0, "node {port} kept the payload of a command of {erased}");
        }
        assert_eq!(one(&mut c, "SELECT count(*) FROM eventstore.load_snapshot($1)", erased), 0);
    }
    let cmd: uuid::Uuid =
        c.query_one("SELECT command_id FROM eventstore.commands WHERE stream_id = $1", &[&streams[0]]).unwrap().get(0);
    let n: i64 = c
        .query_one("SELECT eventstore.redact_command($1, ARRAY['payload.iban'], 'asked')", &[&cmd])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    for port in ports() {
        let p: serde_json::Value =
            node(port).query_one("SELECT payload FROM eventstore.commands WHERE command_id = $1", &[&cmd]).unwrap().get(0);
        assert_eq!(p, json!({"iban": null, "name": "A"}), "node {port}");
    }

    // archive and restore: the events come back with their positions
    let archived = &streams[1];
    let positions = |c: &mut Client| -> Vec<(i64, i64)> {
        c.query("SELECT sequence, global_position FROM eventstore.load_stream($1)", &[archived])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let before = positions(&mut c);
    assert_eq!(one(&mut c, "SELECT eventstore.archive_stream($1)", archived), 3);
    assert_eq!(one(&mut c, "SELECT count(*) FROM eventstore.load_stream($1)", archived), 0);
    assert_eq!(code_of(c.execute("SELECT eventstore.append_event($1, 'Person', 'Late', '{}')", &[archived])), "55000");
    assert_eq!(one(&mut c, "SELECT count(*) FROM eventstore.load_archived_stream($1, 0)", archived), 3);
    assert_eq!(one(&mut c, "SELECT eventstore.restore_stream($1)", archived), 3);
    assert_eq!(before, positions(&mut c));

    // deletion, soft (an append reopens) and hard (a tombstone)
    let (soft, hard) = (&streams[4], &streams[5]);
    assert_eq!(one(&mut c, "SELECT eventstore.delete_stream($1)", soft), 3);
    assert_eq!(version(&mut c, soft), 0);
    c.execute("SELECT eventstore.append_event($1, 'Person', 'Back', '{}')", &[soft]).unwrap();
    assert_eq!(version(&mut c, soft), 4);
    assert_eq!(one(&mut c, "SELECT eventstore.delete_stream($1, hard => true, reason => 'closed')", hard), 3);
    assert_eq!(code_of(c.execute("SELECT eventstore.append_event($1, 'Person', 'Again', '{}')", &[hard])), "55000");

    // commands no event points at go, from every node; the others stay
    let lone: uuid::Uuid = c
        .query_one("SELECT eventstore.record_command('Register', '{}', $1)", &[&streams[3]])
        .unwrap()
        .get(0);
    assert_eq!(one(&mut c, "SELECT eventstore.delete_commands_without_events($1, reason => 'unused')", &streams[3]), 1);
    for port in ports() {
        let left: Vec<uuid::Uuid> = node(port)
            .query("SELECT command_id FROM eventstore.commands WHERE stream_id = $1", &[&streams[3]])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(!left.contains(&lone) && left.len() == 1, "node {port}: {left:?}");
    }

    // retention, over every node
    let kept_streams = streams_on_every_worker(&mut c, "kept", 1);
    for s in &kept_streams {
        let batch = json!([{"type": "A", "payload": {}}, {"type": "B", "payload": {}}, {"type": "C", "payload": {}}]);
        c.execute("SELECT eventstore.append_events($1, 'Kept', $2)", &[s, &batch]).unwrap();
    }
    c.execute("SELECT eventstore.set_retention('Kept', max_count => 1)", &[]).unwrap();
    let removed: Vec<(String, i64)> = c
        .query("SELECT stream_id, events_removed FROM eventstore.apply_retention() WHERE stream_type = 'Kept' ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut expected: Vec<(String, i64)> = kept_streams.iter().map(|s| (s.clone(), 2)).collect();
    expected.sort();
    assert_eq!(removed, expected);
    for s in &kept_streams {
        assert_eq!(one(&mut c, "SELECT count(*) FROM eventstore.load_stream($1)", s), 1);
    }
    c.execute("SELECT eventstore.set_retention('Kept')", &[]).unwrap();

    // a lifecycle call that the client's transaction rolls back leaves everything as it was
    let kept = &streams[2];
    c.batch_execute("BEGIN").unwrap();
    c.execute("SELECT eventstore.delete_stream($1, hard => true, reason => 'oops')", &[kept]).unwrap();
    c.batch_execute("ROLLBACK").unwrap();
    assert_eq!(version(&mut c, kept), 3);

    // the audit log is the coordinator's: one entry per change
    let actions: Vec<String> = c
        .query("SELECT action FROM eventstore.audit_log WHERE stream_id = ANY ($1) ORDER BY entry_id", &[&streams])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let count = |a: &str| actions.iter().filter(|x| *x == a).count();
    assert_eq!((count("truncate_stream"), count("redact_events"), count("erase_stream")), (2, 2, 2), "{actions:?}");
    assert_eq!((count("archive_stream"), count("restore_stream"), count("delete_stream")), (1, 1, 1), "{actions:?}");

    // the grant is gone everywhere, and direct changes are refused as before, the owner's too
    for port in ports() {
        let mut n = node(port);
        let left: i64 = n.query_one("SELECT count(*) FROM eventstore.lifecycle_grants", &[]).unwrap().get(0);
        assert_eq!(left, 0, "node {port}");
    }
    for sql in [
        "UPDATE eventstore.events SET payload = '{}' WHERE stream_id = $1",
        "DELETE FROM eventstore.events WHERE stream_id = $1",
        "UPDATE eventstore.commands SET payload = '{}' WHERE stream_id = $1",
        "UPDATE eventstore.streams SET state = 'deleted' WHERE stream_id = $1",
    ] {
        assert_eq!(code_of(c.execute(sql, &[kept])), "0A000", "{sql}");
    }
    // only the store's owner writes the grant (a superuser, who can do anything, is the owner here)
    c.batch_execute("DO $$ BEGIN CREATE ROLE lifecycle_client; EXCEPTION WHEN duplicate_object THEN END $$").unwrap();
    c.batch_execute("BEGIN; SET LOCAL ROLE lifecycle_client").unwrap();
    assert_eq!(code_of(c.execute("INSERT INTO eventstore.lifecycle_grants VALUES (NULL)", &[])), "42501");
    c.batch_execute("ROLLBACK").unwrap();
    check_every_node();
}

#[test]
#[ignore = "needs a Citus cluster: tests/citus.sh runs it"]
fn lifecycle_functions_and_appends_on_the_same_streams_keep_every_rule() {
    let mut c = distributed();
    let streams = std::sync::Arc::new(streams_on_every_worker(&mut c, "busy", 2));
    for s in streams.iter() {
        c.execute("SELECT eventstore.append_event($1, 'Busy', 'E', '{\"i\": 0, \"email\": \"x\"}')", &[s]).unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, streams) = (stop.clone(), streams.clone());
            std::thread::spawn(move || {
                let mut c = coordinator();
                let (mut ok, mut refused) = (0, 0);
                let mut i = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let s = &streams[(w + i) % streams.len()];
                    match c.execute("SELECT eventstore.append_event($1, 'Busy', 'E', $2)", &[s, &json!({"i": i, "email": "x"})]) {
                        Ok(_) => ok += 1,
                        // archived or deleted for good by now: refused, nothing written
                        Err(e) if db_error(&e).0 == "55000" => refused += 1,
                        Err(e) => panic!("writer {w}: {e:?}"),
                    }
                }
                (ok, refused)
            })
        })
        .collect();
    for round in 0..3 {
        for (k, s) in streams.iter().enumerate() {
            let v = version(&mut c, s);
            match (round + k) % 4 {
                0 => {
                    c.execute("SELECT eventstore.truncate_stream($1, $2, 'old')", &[s, &v]).unwrap();
                }
                1 => {
                    c.execute("SELECT eventstore.redact_events($1, NULL, ARRAY['payload.email'], 'asked')", &[s]).unwrap();
                }
                2 => {
                    c.execute("SELECT eventstore.erase_stream($1, 'asked')", &[s]).unwrap();
                }
                _ => {
                    c.execute("SELECT eventstore.archive_stream($1)", &[s]).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    c.execute("SELECT eventstore.restore_stream($1)", &[s]).unwrap();
                }
            }
        }
    }
    let hard = &streams[0];
    c.execute("SELECT eventstore.delete_stream($1, hard => true, reason => 'closed')", &[hard]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut refused) = (0, 0);
    for w in writers {
        let (o, r) = w.join().unwrap();
        ok += o;
        refused += r;
    }
    assert!(ok > 50 && refused > 0, "{ok} appends, {refused} refused");
    // every stream gapless from its truncation point to its version
    for s in streams.iter().skip(1) {
        let seqs = sequences(&mut c, s);
        let v = version(&mut c, s);
        assert_eq!(seqs.last().copied(), Some(v), "{s}");
        assert_eq!(seqs, (seqs[0]..=v).collect::<Vec<_>>(), "{s} has a gap");
    }
    assert_eq!(code_of(c.execute("SELECT eventstore.append_event($1, 'Busy', 'E', '{}')", &[hard])), "55000");
    for port in ports() {
        let left: i64 = node(port).query_one("SELECT count(*) FROM eventstore.lifecycle_grants", &[]).unwrap().get(0);
        assert_eq!(left, 0, "node {port}");
    }
    check_every_node();
}
