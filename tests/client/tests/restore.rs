//! pg_dump / pg_restore: a dump of a database using the store brings back every row, the triggers
//! keep working, and the global feed and subscriptions carry on — in the same cluster and in a
//! freshly initialised one whose transaction ids are younger than the ones recorded in the events.
//!
//! The documented restore (README, "Dump and restore"): as a superuser, with
//! PGOPTIONS='-c session_replication_role=replica' so that the store's rules, which a restore of
//! finished rows would trip over (and circular foreign keys), do not fire while rows come back;
//! then eventstore.verify() checks every invariant on the result.

use pg_eventstore_client_tests::*;
use postgres::Client;

fn dump(url: &str, file: &str) {
    let conn = parse(url);
    let mut args = vec!["-Fc", "-f", file];
    args.extend(conn.iter().map(String::as_str));
    run("pg_dump", &args, &[]);
}

fn restore(url: &str, file: &str) -> String {
    let conn = parse(url);
    let mut args = vec!["--exit-on-error", "--no-owner"];
    args.extend(conn.iter().map(String::as_str));
    args.push(file);
    run("pg_restore", &args, &[("PGOPTIONS", "-c session_replication_role=replica")])
}

/// Connection string -> pg_dump/pg_restore options.
fn parse(url: &str) -> Vec<String> {
    url.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            match k {
                "host" => format!("--host={v}"),
                "port" => format!("--port={v}"),
                "user" => format!("--username={v}"),
                "dbname" => format!("--dbname={v}"),
                _ => panic!("unexpected connection option {k}"),
            }
        })
        .collect()
}

/// What must hold on a restored copy `c` of a store whose digest was `before`.
fn check_restored(c: &mut Client, before: &[(String, i64, String)]) {
    assert_eq!(store_digest(c), before, "the restored store differs from the original");
    assert_eq!(violations(c), Vec::<String>::new());
    let (old_head, old_count): (i64, i64) = {
        let r = c.query_one("SELECT max(global_position), count(*) FROM eventstore.events", &[]).unwrap();
        (r.get(0), r.get(1))
    };
    // the feed hands out every restored event, in order, right away
    let fed: Vec<i64> =
        c.query("SELECT global_position FROM eventstore.read_all(0, 100000)", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(fed.len() as i64, old_count);
    assert!(fed.windows(2).all(|w| w[0] < w[1]));
    // new appends come after the old ones, and the feed reaches them at once
    let seq: i64 = c.query_one("SELECT eventstore.append_event('acct-2', 'Account', 'Closed', '{}')", &[]).unwrap().get(0);
    assert_eq!(seq, 4, "acct-2 had 3 events");
    c.execute("SELECT eventstore.append_event('new-1', 'Account', 'Opened', '{}')", &[]).unwrap();
    let after: Vec<(i64, String)> = c
        .query("SELECT global_position, stream_id FROM eventstore.read_all($1)", &[&old_head])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(after.iter().map(|a| a.1.as_str()).collect::<Vec<_>>(), vec!["acct-2", "new-1"]);
    assert!(after[0].0 > old_head);
    // the subscription resumes after its checkpoint
    let checkpoint: i64 =
        c.query_one("SELECT checkpoint FROM eventstore.subscriptions WHERE name = 'projection'", &[]).unwrap().get(0);
    assert!(checkpoint > 0);
    let polled: Vec<i64> =
        c.query("SELECT global_position FROM eventstore.poll('projection', 1000)", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    let expected: i64 = c
        .query_one(
            "SELECT count(*) FROM eventstore.events WHERE stream_type = 'Account' AND global_position > $1",
            &[&checkpoint],
        )
        .unwrap()
        .get(0);
    assert_eq!(polled.len() as i64, expected);
    assert!(polled[0] > checkpoint);
    c.execute("SELECT eventstore.ack('projection', $1)", &[polled.last().unwrap()]).unwrap();
    // and the rules still hold for direct writes
    let e = c
        .execute("INSERT INTO eventstore.events (stream_id, sequence, event_type, payload) VALUES ('acct-3', 9, 'X', '{}')", &[])
        .unwrap_err();
    assert_eq!(db_error(&e).0, "40001");
    let e = c.execute("DELETE FROM eventstore.events WHERE stream_id = 'acct-3'", &[]).unwrap_err();
    assert_eq!(db_error(&e).0, "0A000");
    // and the lifecycle state came back: a tombstone refuses appends, an archived stream restores,
    // the audit log goes on numbering
    let e = c.execute("SELECT eventstore.append_event('acct-20', 'Account', 'X', '{}')", &[]).unwrap_err();
    assert_eq!(db_error(&e).0, "55000");
    let restored: i64 = c.query_one("SELECT eventstore.restore_stream('life-old')", &[]).unwrap().get(0);
    assert_eq!(restored, 2);
    let entries: i64 = c.query_one("SELECT count(*) FROM eventstore.audit_log", &[]).unwrap().get(0);
    assert!(entries >= 5, "{entries} audit entries");
    assert_eq!(violations(c), Vec::<String>::new());
}

#[test]
fn dump_and_restore_into_the_same_cluster() {
    let (src_db, dst_db) = ("es_dump_src", "es_dump_dst");
    let src_url = url_for(src_db);
    let mut src = fresh_db(&src_url, src_db, None);
    populate(&mut src);
    populate_lifecycle(&mut src);
    let before = store_digest(&mut src);
    let file = "/tmp/pg_eventstore_same_cluster.dump";
    dump(&src_url, file);

    let dst_url = url_for(dst_db);
    drop(empty_db(&dst_url, dst_db));
    restore(&dst_url, file);
    let mut dst = Client::connect(&dst_url, postgres::NoTls).unwrap();
    check_restored(&mut dst, &before);
    drop((src, dst));
    drop_db(&src_url, src_db);
    drop_db(&dst_url, dst_db);
    let _ = std::fs::remove_file(file);
}

#[test]
fn dump_and_restore_into_a_younger_cluster() {
    let src_db = "es_dump_old";
    let src_url = url_for(src_db);
    let mut src = fresh_db(&src_url, src_db, None);
    // The target starts at transaction id ~750; make sure the source's ids are well past that, so
    // the restored events carry transaction ids from the target's future.
    src.batch_execute(
        "DO $$BEGIN
            WHILE pg_current_xact_id()::text::bigint < 20000 LOOP COMMIT; END LOOP;
         END$$",
    )
    .unwrap();
    populate(&mut src);
    populate_lifecycle(&mut src);
    let before = store_digest(&mut src);
    let file = "/tmp/pg_eventstore_young_cluster.dump";
    dump(&src_url, file);

    let young = Scratch::create("young", 54329);
    let dst_url = young.url("restored");
    drop(empty_db(&dst_url, "restored"));
    restore(&dst_url, file);
    let mut dst = Client::connect(&dst_url, postgres::NoTls).unwrap();
    let (now, recorded): (String, String) = {
        let r = dst
            .query_one("SELECT pg_current_xact_id()::text, max(horizon_xid)::text FROM eventstore.events", &[])
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(
        now.parse::<u64>().unwrap() < recorded.parse::<u64>().unwrap(),
        "the target cluster ({now}) should be younger than the dump's events ({recorded})"
    );
    check_restored(&mut dst, &before);
    drop((src, dst));
    drop_db(&src_url, src_db);
    let _ = std::fs::remove_file(file);
}
