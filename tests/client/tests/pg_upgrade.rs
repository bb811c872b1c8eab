//! pg_upgrade from one PostgreSQL major to another (tests/pg_upgrade.sh runs it: 15 to 17, the
//! extension installed in both): a store created on the old major carries on in the upgraded
//! cluster. The feed's horizons are full transaction ids (xid8) recorded on the old cluster;
//! pg_upgrade carries the transaction id counter and its epoch over, so the new cluster's ids
//! continue above them, and the feed neither holds back forever nor skips anything.

use pg_eventstore_client_tests::*;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use std::time::Duration;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run tests/pg_upgrade.sh"))
}

fn major(c: &mut Client) -> i32 {
    c.query_one("SELECT current_setting('server_version_num')::int / 10000", &[]).unwrap().get(0)
}

#[test]
#[ignore = "needs two PostgreSQL installations: tests/pg_upgrade.sh runs it"]
fn a_store_carries_on_after_pg_upgrade() {
    let (old_bin, new_bin) = (env("PG_UPGRADE_OLD_BINDIR"), env("PG_UPGRADE_NEW_BINDIR"));
    let old = Scratch::init_in(&old_bin, "upgrade_old", 54340, &[]);
    old.start();
    let url = old.url("app");
    let mut c = empty_db(&url, "app");
    c.batch_execute("CREATE EXTENSION pg_eventstore").unwrap();
    let old_major = major(&mut c);
    // Well past the ids a fresh cluster starts with, so that a new cluster that did not carry
    // the counter over would hand out ids below the recorded horizons.
    c.batch_execute("DO $$BEGIN WHILE pg_current_xact_id()::text::bigint < 20000 LOOP COMMIT; END LOOP; END$$").unwrap();
    populate(&mut c);
    populate_lifecycle(&mut c);
    let before = store_digest(&mut c);
    let recorded: i64 = c.query_one("SELECT max(horizon_xid::text::bigint) FROM eventstore.events", &[]).unwrap().get(0);
    drop(c);
    old.stop();

    let new = Scratch::init_in(&new_bin, "upgrade_new", 54341, &[]);
    // pg_upgrade writes its logs into the current directory; it must be the postgres user's
    let work = "/tmp/pg_eventstore_upgrade_work";
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work).unwrap();
    std::process::Command::new("chown").args(["postgres", work]).status().unwrap();
    let out = std::process::Command::new("sudo")
        .args(["-u", "postgres", &format!("{new_bin}/pg_upgrade")])
        .args(["-b", &old_bin, "-B", &new_bin, "-d", &old.dir, "-D", &new.dir, "-p", "54340", "-P", "54341"])
        .args(["-s", work])
        .current_dir(work)
        .output()
        .unwrap();
    if !out.status.success() {
        // its logs are inside the new cluster's directory, which goes with it
        let logs = std::process::Command::new("sh")
            .args(["-c", &format!("tail -n 20 {}/pg_upgrade_output.d/*/log/*.log", new.dir)])
            .output()
            .unwrap();
        panic!(
            "pg_upgrade failed:\n{}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&logs.stdout)
        );
    }
    new.start();

    let mut c = Client::connect(&new.url("app"), NoTls).unwrap();
    let new_major = major(&mut c);
    assert!(new_major > old_major, "upgraded from {old_major} to {new_major}");
    let now: i64 = c.query_one("SELECT pg_current_xact_id()::text::bigint", &[]).unwrap().get(0);
    assert!(now > recorded, "the new cluster's transaction ids ({now}) continue above the recorded horizons ({recorded})");
    let lag: i64 = c.query_one("SELECT lagging_events FROM eventstore.feed_status()", &[]).unwrap().get(0);
    assert_eq!(lag, 0, "nothing is held back after the upgrade");
    check_indexes(&mut c);
    check_store_carries_on(&mut c, &before);

    // the notifier starts in the new cluster and announces appends
    let mut listener = Client::connect(&new.url("app"), NoTls).unwrap();
    listener.batch_execute("LISTEN eventstore").unwrap();
    c.execute("SELECT eventstore.append_event('after-upgrade', 'Account', 'Opened', '{}')", &[]).unwrap();
    let mut notes = listener.notifications();
    let got = notes.timeout_iter(Duration::from_secs(10)).next().unwrap();
    assert!(got.is_some(), "no notification after the upgrade");
    drop(new);
    let _ = std::fs::remove_dir_all(work);
}
