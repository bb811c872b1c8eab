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
    check_store_carries_on(&mut dst, &before);
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
            .query_one("SELECT pg_current_xact_id()::text, max(horizon_xid::text::numeric)::text FROM eventstore.events", &[])
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(
        now.parse::<u64>().unwrap() < recorded.parse::<u64>().unwrap(),
        "the target cluster ({now}) should be younger than the dump's events ({recorded})"
    );
    check_store_carries_on(&mut dst, &before);
    drop((src, dst));
    drop_db(&src_url, src_db);
    let _ = std::fs::remove_file(file);
}
