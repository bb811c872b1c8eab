//! The notifier and two-phase commit, on a cluster of its own (the machine's cluster has
//! max_prepared_transactions = 0): an append that is prepared and committed later, by any session,
//! is announced; and preparing leaves nothing behind that outlives the session.

use pg_eventstore_client_tests::*;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use std::thread;
use std::time::{Duration, Instant};

fn payloads_until(listener: &mut Client, limit: Duration, want: &str) -> Vec<String> {
    let started = Instant::now();
    let mut got = Vec::new();
    while started.elapsed() < limit && !got.iter().any(|p| p == want) {
        let mut notes = listener.notifications();
        let mut it = notes.timeout_iter(Duration::from_millis(50));
        while let Some(n) = it.next().unwrap() {
            got.push(n.payload().to_string());
        }
    }
    got
}

#[test]
fn prepared_appends_are_announced_and_leave_nothing_behind() {
    let cluster = Scratch::create_with("twophase", 54330, &["max_prepared_transactions=5"]);
    let url = cluster.url("twophase");
    let mut admin = fresh_db(&url, "twophase", None);
    // The notifier stops after 100 ms without appends: the prepared transaction is committed long after.
    admin.batch_execute("ALTER DATABASE twophase SET pg_eventstore.notifier_idle_timeout = 100").unwrap();
    let mut listener = Client::connect(&url, NoTls).unwrap();
    listener.batch_execute("LISTEN eventstore").unwrap();

    // Bug 6 of issue 15: a prepared append, committed from another session after the notifier
    // would have gone idle, is announced (0.3.0: never).
    let mut w = Client::connect(&url, NoTls).unwrap();
    w.batch_execute("BEGIN; SELECT eventstore.append_event('prepared-1', 'Prep', 'Happened', '{}'); PREPARE TRANSACTION 'append-1'")
        .unwrap();
    thread::sleep(Duration::from_millis(1000));
    admin.batch_execute("COMMIT PREPARED 'append-1'").unwrap();
    let position: i64 = admin
        .query_one("SELECT global_position FROM eventstore.events WHERE stream_id = 'prepared-1'", &[])
        .unwrap()
        .get(0);
    let got = payloads_until(&mut listener, Duration::from_secs(5), &position.to_string());
    assert!(got.contains(&position.to_string()), "the prepared append was announced after COMMIT PREPARED: {got:?}");

    drop(w);
    drop(listener);
    drop(admin);

    // Bug 7 of issue 15: a session prepares an append made while no notifier ran, and its next
    // transaction appends while one runs. Nothing it took may outlive it, so a plain DROP DATABASE succeeds once
    // it has gone (0.3.0: the lock of the notifier's hand-over stayed held, the notifier could
    // never stop, and the drop failed after waiting 5 s for it).
    let url = cluster.url("twophase7");
    let mut admin = fresh_db(&url, "twophase7", None);
    let mut w = Client::connect(&url, NoTls).unwrap();
    w.batch_execute("BEGIN; SELECT eventstore.append_event('prepared-2', 'Prep', 'Happened', '{}'); PREPARE TRANSACTION 'append-2'")
        .unwrap();
    admin.batch_execute("COMMIT PREPARED 'append-2'").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !notifier_running(&mut admin) {
        assert!(Instant::now() < deadline, "no notifier started");
        admin.batch_execute("SELECT eventstore.append_event('warm', 'Prep', 'Up', '{}')").unwrap();
        thread::sleep(Duration::from_millis(50));
    }
    // (0.3.0 looked for a notifier at most every 100 ms per session)
    thread::sleep(Duration::from_millis(200));
    // A simple query, as psql sends it: no statement of the extended protocol runs in between.
    w.batch_execute("SELECT eventstore.append_event('prepared-2', 'Prep', 'Again', '{}')").unwrap();
    drop(w);
    drop(admin);
    let mut pg = Client::connect(&cluster.url("postgres"), NoTls).unwrap();
    thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    pg.batch_execute("DROP DATABASE twophase7").unwrap_or_else(|e| panic!("DROP DATABASE after the sessions left: {:?}", e.as_db_error().map(|d| d.message())));
    assert!(t.elapsed() < Duration::from_secs(3), "drop waited {:?}", t.elapsed());
}

fn notifier_running(c: &mut Client) -> bool {
    c.query_opt("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'pg_eventstore notifier'", &[])
        .unwrap()
        .is_some()
}
