//! The notifier worker: it sends each committed transaction's notification once, wakes listeners
//! when a held-back feed moves on, never drops a transaction's notification while it stops and
//! starts again, and gets out of the way of DROP DATABASE and CREATE DATABASE ... TEMPLATE.

use pg_eventstore_client_tests::*;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const DB: &str = "pg_eventstore_notifier_tests";

/// The highest position the current transaction appended.
const OWN_MAX: &str = "SELECT max(global_position) FROM eventstore.events WHERE xmin = pg_current_xact_id()::xid";

fn db_url() -> String {
    url_for(DB)
}

fn connect_db() -> Client {
    Client::connect(&db_url(), NoTls).unwrap()
}

/// The notifier of this database; while one hands over to its successor both are there for a
/// moment, and the successor (the newer) is the one that goes on.
fn notifier_pid(c: &mut Client) -> Option<i32> {
    c.query_opt(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'pg_eventstore notifier' \
         ORDER BY backend_start DESC LIMIT 1",
        &[],
    )
    .unwrap()
    .map(|r| r.get(0))
}

/// The first append of a database starts its notifier; wait until it runs.
fn await_notifier(c: &mut Client) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        c.execute("SELECT eventstore.append_event($1, 'Warm', 'Up', '{}')", &[&unique("warm")]).unwrap();
        if let Some(pid) = notifier_pid(c) {
            return pid;
        }
        assert!(Instant::now() < deadline, "no notifier started");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Notifications on `channel` until `until` says stop or `limit` passes: (sender pid, payload).
fn collect(listener: &mut Client, limit: Duration, mut until: impl FnMut(&[(i32, String, String)]) -> bool) -> Vec<(i32, String, String)> {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut notes = listener.notifications();
    while started.elapsed() < limit && !until(&got) {
        let mut it = notes.timeout_iter(Duration::from_millis(50));
        while let Some(n) = it.next().unwrap() {
            got.push((n.process_id(), n.channel().to_string(), n.payload().to_string()));
            if started.elapsed() >= limit {
                break;
            }
        }
    }
    got
}

#[test]
fn notifier() {
    let mut admin = fresh_db(&db_url(), DB, None);
    one_notification_per_transaction_from_the_notifier(&mut admin);
    a_held_back_feed_wakes_listeners_when_it_moves_on(&mut admin);
    a_transaction_open_while_the_notifier_is_terminated_is_announced(&mut admin);
    a_held_back_transaction_is_announced_after_the_notifier_is_stopped(&mut admin, "pg_terminate_backend");
    a_held_back_transaction_is_announced_after_the_notifier_is_stopped(&mut admin, "pg_cancel_backend");
    a_cancel_does_not_stop_the_notifier(&mut admin);
    no_transaction_goes_unnotified_while_the_notifier_stops_and_starts(&mut admin);
    copy_and_drop_do_not_wait_for_the_notifier(admin);
}

fn one_notification_per_transaction_from_the_notifier(admin: &mut Client) {
    let pid = await_notifier(admin);
    let mut listener = connect_db();
    listener.batch_execute("LISTEN eventstore; LISTEN \"eventstore.Order\"; LISTEN \"eventstore.Invoice\"").unwrap();
    collect(&mut listener, Duration::from_millis(300), |_| false); // the warm-up's
    let mut w = connect_db();
    let mut tx = w.transaction().unwrap();
    for (stream, category) in [("order-1", "Order"), ("order-1", "Order"), ("invoice-1", "Invoice")] {
        tx.execute("SELECT eventstore.append_event($1, $2, 'Happened', '{}')", &[&stream, &category]).unwrap();
    }
    let last: i64 = tx.query_one(OWN_MAX, &[]).unwrap().get(0);
    tx.commit().unwrap();
    let got = collect(&mut listener, Duration::from_secs(5), |g| g.len() >= 3);
    let got: Vec<_> = got.into_iter().chain(collect(&mut listener, Duration::from_millis(300), |_| false)).collect();
    assert_eq!(got.len(), 3, "one notification per channel: {got:?}");
    for (sender, channel, payload) in &got {
        assert_eq!(*sender, pid, "sent by the notifier, not by the appending session: {got:?}");
        assert_eq!(payload, &last.to_string(), "carrying the transaction's highest position ({channel})");
    }
    let channels: HashSet<_> = got.iter().map(|g| g.1.as_str()).collect();
    assert_eq!(channels, HashSet::from(["eventstore", "eventstore.Order", "eventstore.Invoice"]));
}

/// A transaction that merely holds an xid holds the feed back; when it ends, listeners must learn
/// that the feed moved on, although nothing was appended then.
fn a_held_back_feed_wakes_listeners_when_it_moves_on(admin: &mut Client) {
    await_notifier(admin);
    let mut listener = connect_db();
    listener.batch_execute("LISTEN eventstore").unwrap();
    collect(&mut listener, Duration::from_millis(300), |_| false);
    let mut blocker = connect_db();
    blocker.batch_execute("BEGIN; SELECT txid_current()").unwrap();
    let mut w = connect_db();
    let mut tx = w.transaction().unwrap();
    tx.execute("SELECT eventstore.append_event('held-1', 'Held', 'Happened', '{}')", &[]).unwrap();
    let position: i64 = tx.query_one(OWN_MAX, &[]).unwrap().get(0);
    tx.commit().unwrap();
    let early = collect(&mut listener, Duration::from_millis(600), |g| !g.is_empty());
    let readable: i64 = w.query_one("SELECT count(*) FROM eventstore.read_all($1::bigint - 1, 10)", &[&position]).unwrap().get(0);
    assert_eq!(readable, 0, "the feed is held back");
    assert!(early.is_empty(), "no wake-up while read_all cannot return the event: {early:?}");
    blocker.batch_execute("COMMIT").unwrap();
    let woke = Instant::now();
    let got = collect(&mut listener, Duration::from_secs(5), |g| !g.is_empty());
    assert_eq!(got.len(), 1, "woken once the feed moved on: {got:?}");
    assert_eq!(got[0].2, position.to_string());
    assert!(woke.elapsed() < Duration::from_secs(2), "within a poll interval, not {:?}", woke.elapsed());
    let readable: i64 = listener.query_one("SELECT count(*) FROM eventstore.read_all($1::bigint - 1, 10)", &[&position]).unwrap().get(0);
    assert_eq!(readable, 1, "and read_all returns it now");
}

/// Waits until no process of the database has `pid` (the notifier it was) any more.
fn await_exit(c: &mut Client, pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid]).unwrap().is_some() {
        assert!(Instant::now() < deadline, "process {pid} did not exit");
        thread::sleep(Duration::from_millis(20));
    }
}

fn payloads(got: &[(i32, String, String)]) -> HashSet<String> {
    got.iter().map(|g| g.2.clone()).collect()
}

/// Bug 5 of issue 15: a transaction appends while the notifier runs, the notifier is terminated
/// before it commits; after the commit its notification must still arrive (0.3.0: never).
fn a_transaction_open_while_the_notifier_is_terminated_is_announced(admin: &mut Client) {
    let pid = await_notifier(admin);
    let mut listener = connect_db();
    listener.batch_execute("LISTEN eventstore").unwrap();
    collect(&mut listener, Duration::from_millis(300), |_| false);
    let mut w = connect_db();
    let mut tx = w.transaction().unwrap();
    tx.execute("SELECT eventstore.append_event($1, 'Open', 'Happened', '{}')", &[&unique("open")]).unwrap();
    let position: i64 = tx.query_one(OWN_MAX, &[]).unwrap().get(0);
    admin.execute("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
    await_exit(admin, pid);
    tx.commit().unwrap();
    let got = collect(&mut listener, Duration::from_secs(5), |g| payloads(g).contains(&position.to_string()));
    assert!(payloads(&got).contains(&position.to_string()), "the commit after the notifier's end was announced: {got:?}");
}

/// Bug 5 of issue 15: a committed transaction waits behind an open one for its events to become
/// readable; the notifier is terminated or cancelled meanwhile. When the feed moves on, the
/// notification must arrive although nothing else is appended (0.3.0: never).
fn a_held_back_transaction_is_announced_after_the_notifier_is_stopped(admin: &mut Client, how: &str) {
    let pid = await_notifier(admin);
    let mut listener = connect_db();
    listener.batch_execute("LISTEN eventstore").unwrap();
    collect(&mut listener, Duration::from_millis(300), |_| false);
    let mut blocker = connect_db();
    blocker.batch_execute("BEGIN; SELECT txid_current()").unwrap();
    let mut w = connect_db();
    let mut tx = w.transaction().unwrap();
    tx.execute("SELECT eventstore.append_event($1, 'Held', 'Happened', '{}')", &[&unique("held")]).unwrap();
    let position: i64 = tx.query_one(OWN_MAX, &[]).unwrap().get(0);
    tx.commit().unwrap();
    thread::sleep(Duration::from_millis(100));
    admin.execute(&format!("SELECT {how}($1)"), &[&pid]).unwrap();
    thread::sleep(Duration::from_millis(300));
    blocker.batch_execute("COMMIT").unwrap();
    let got = collect(&mut listener, Duration::from_secs(5), |g| payloads(g).contains(&position.to_string()));
    assert!(
        payloads(&got).contains(&position.to_string()),
        "after {how} of the notifier, the held-back transaction was announced when the feed moved on: {got:?}"
    );
}

/// A cancel interrupts what the notifier is doing, not the notifier (0.3.0: it exited for good).
fn a_cancel_does_not_stop_the_notifier(admin: &mut Client) {
    let pid = await_notifier(admin);
    for _ in 0..5 {
        admin.execute("SELECT pg_cancel_backend($1)", &[&pid]).unwrap();
        thread::sleep(Duration::from_millis(60));
    }
    thread::sleep(Duration::from_millis(300));
    assert_eq!(notifier_pid(admin), Some(pid), "the notifier survived five cancels");
}

/// The notifier stops after 20 ms without appends here. Four sessions append with short pauses and,
/// every half second, all pause for 150 ms, so the notifier stops and is started again many times
/// while they run; one of them sends its own notifications. Every committed transaction's highest
/// position must arrive as a payload.
fn no_transaction_goes_unnotified_while_the_notifier_stops_and_starts(admin: &mut Client) {
    admin.batch_execute(&format!("ALTER DATABASE {DB} SET pg_eventstore.notifier_idle_timeout = 20")).unwrap();
    if let Some(pid) = notifier_pid(admin) {
        admin.execute("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
    }
    let mut listener = connect_db();
    listener.batch_execute("LISTEN eventstore; LISTEN \"eventstore.Busy\"").unwrap();
    let seconds: u64 = env_or("PG_EVENTSTORE_NOTIFIER_SECONDS", 6);
    let stop = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut c = connect_db();
                if w == 3 {
                    c.batch_execute("SET pg_eventstore.notifier = off").unwrap();
                }
                let mut rng = Rng::new(w + 1);
                let mut maxima = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let mut tx = c.transaction().unwrap();
                    for _ in 0..=rng.below(3) {
                        let stream = format!("w{w}-{}", rng.below(20));
                        tx.execute("SELECT eventstore.append_event($1, 'Busy', 'Happened', '{}')", &[&stream]).unwrap();
                    }
                    let max: i64 = tx.query_one(OWN_MAX, &[]).unwrap().get(0);
                    tx.commit().unwrap();
                    maxima.push(max);
                    thread::sleep(Duration::from_millis(rng.below(30)));
                    let phase = epoch.elapsed().as_millis() % 500;
                    if phase >= 350 {
                        thread::sleep(Duration::from_millis((500 - phase) as u64));
                    }
                }
                maxima
            })
        })
        .collect();
    let mut got = Vec::new();
    let mut notifiers = HashSet::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        got.extend(collect(&mut listener, Duration::from_millis(200), |_| false));
        if let Some(pid) = notifier_pid(admin) {
            notifiers.insert(pid);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let expected: HashSet<String> = writers.into_iter().flat_map(|w| w.join().unwrap()).map(|m| m.to_string()).collect();
    // every transaction on both channels: the stream type's too, which a bare "the feed moved"
    // announcement would not cover
    let on = |got: &[(i32, String, String)], channel: &str| -> HashSet<String> {
        got.iter().filter(|g| g.1 == channel).map(|g| g.2.clone()).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(expected.is_subset(&on(&got, "eventstore")) && expected.is_subset(&on(&got, "eventstore.Busy")))
        && Instant::now() < deadline
    {
        got.extend(collect(&mut listener, Duration::from_millis(200), |_| false));
    }
    for channel in ["eventstore", "eventstore.Busy"] {
        let seen = on(&got, channel);
        let missing: Vec<_> = expected.difference(&seen).collect();
        assert!(missing.is_empty(), "{} of {} transactions never notified on {channel}: {missing:?}", missing.len(), expected.len());
    }
    let senders: HashMap<i32, usize> = got.iter().fold(HashMap::new(), |mut m, g| {
        *m.entry(g.0).or_default() += 1;
        m
    });
    println!(
        "{} transactions, {} notifications from {} processes, {} notifier processes seen",
        expected.len(),
        got.len(),
        senders.len(),
        notifiers.len()
    );
    assert!(expected.len() > 100, "enough transactions: {}", expected.len());
    assert!(notifiers.len() >= 2, "the notifier stopped and started again during the run: {notifiers:?}");
    admin.batch_execute(&format!("ALTER DATABASE {DB} RESET pg_eventstore.notifier_idle_timeout")).unwrap();
}

/// DROP DATABASE and CREATE DATABASE ... TEMPLATE need the database to themselves; they wait at
/// most 5 s for other sessions, and the notifier leaves within a quarter of a second.
fn copy_and_drop_do_not_wait_for_the_notifier(mut admin: Client) {
    await_notifier(&mut admin);
    drop(admin);
    let mut pg = Client::connect(&url_for("postgres"), NoTls).unwrap();
    let copy = format!("{DB}_copy");
    pg.batch_execute(&format!("DROP DATABASE IF EXISTS {copy}")).unwrap();
    let t = Instant::now();
    pg.batch_execute(&format!("CREATE DATABASE {copy} TEMPLATE {DB}")).unwrap();
    assert!(t.elapsed() < Duration::from_secs(3), "copy waited {:?}", t.elapsed());
    let mut c = Client::connect(&url_for(DB), NoTls).unwrap();
    await_notifier(&mut c);
    drop(c);
    let t = Instant::now();
    pg.batch_execute(&format!("DROP DATABASE {DB}")).unwrap();
    assert!(t.elapsed() < Duration::from_secs(3), "drop waited {:?}", t.elapsed());
    pg.batch_execute(&format!("DROP DATABASE {copy}")).unwrap();
}

/// DROP EXTENSION right after the first append, while the notifier that append started is still
/// reading where to begin: neither waits for the other in a cycle (each notifier transaction
/// takes a share lock on the extension first, which DROP EXTENSION locks before any table), so
/// the drop never dies of a deadlock.
#[test]
fn drop_extension_while_the_notifier_starts() {
    const DB: &str = "pg_eventstore_notifier_drop_tests";
    let mut c = empty_db(&url_for(DB), DB);
    let mut rng = Rng::new(7);
    for round in 0..150 {
        c.batch_execute("CREATE EXTENSION pg_eventstore").unwrap();
        c.batch_execute("SELECT eventstore.append_event('s', 'T', 'E', '{}')").unwrap();
        thread::sleep(Duration::from_micros(rng.below(8_000)));
        if let Err(e) = c.batch_execute("DROP EXTENSION pg_eventstore") {
            panic!("round {round}: DROP EXTENSION failed: {:?}", db_error(&e));
        }
    }
    drop(c);
    drop_db(&url_for(DB), DB);
}
