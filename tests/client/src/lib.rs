//! Shared helpers for the client tests: connections to the test database and error inspection.

use postgres::{Client, NoTls};

/// Connection string of the database prepared by tests/client.sh (extension installed).
pub fn url() -> String {
    std::env::var("PG_EVENTSTORE_TEST_URL")
        .unwrap_or_else(|_| "host=/var/run/postgresql dbname=pg_eventstore_client_tests".to_string())
}

pub fn connect() -> Client {
    Client::connect(&url(), NoTls).unwrap_or_else(|e| panic!("cannot connect to {}: {e}", url()))
}

/// A stream id no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

/// SQLSTATE and message of a database error.
pub fn db_error(e: &postgres::Error) -> (String, String) {
    let db = e.as_db_error().unwrap_or_else(|| panic!("not a database error: {e}"));
    (db.code().code().to_string(), db.message().to_string())
}

/// Asserts that no message of the store ever carries Rust panic text.
pub fn assert_clean_message(message: &str) {
    for needle in ["panicked", "RUST_BACKTRACE", "unwrap()", "src/"] {
        assert!(!message.contains(needle), "panic text reached the client: {message}");
    }
}

pub fn version(c: &mut Client, stream_id: &str) -> i64 {
    c.query_one("SELECT eventstore.stream_version($1)", &[&stream_id]).unwrap().get(0)
}

pub fn sequences(c: &mut Client, stream_id: &str) -> Vec<i64> {
    c.query("SELECT sequence FROM eventstore.load_stream($1)", &[&stream_id])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Connection string for another database of the same cluster.
pub fn url_for(db: &str) -> String {
    let base = url();
    let rest: Vec<&str> = base.split_whitespace().filter(|p| !p.starts_with("dbname=")).collect();
    format!("{} dbname={db}", rest.join(" "))
}

/// The same server's `postgres` database, for creating and dropping others.
fn admin_url(url: &str, db: &str) -> String {
    url.replace(&format!("dbname={db}"), "dbname=postgres")
}

/// A new, empty database (no extension), connected.
pub fn empty_db(url: &str, db: &str) -> Client {
    let admin_url = admin_url(url, db);
    let mut admin = Client::connect(&admin_url, NoTls).unwrap_or_else(|e| panic!("cannot connect to {admin_url}: {e}"));
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    Client::connect(url, NoTls).unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// A new, empty database with the extension at `version` (None = the default, newest one).
pub fn fresh_db(url: &str, db: &str, version: Option<&str>) -> Client {
    let mut c = empty_db(url, db);
    match version {
        Some(v) => c.batch_execute(&format!("CREATE EXTENSION pg_eventstore VERSION '{v}'")).unwrap(),
        None => c.batch_execute("CREATE EXTENSION pg_eventstore").unwrap(),
    }
    c
}

pub fn drop_db(url: &str, db: &str) {
    if let Ok(mut admin) = Client::connect(&admin_url(url, db), NoTls) {
        let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    }
}

/// The installed version of the extension.
pub fn extension_version(c: &mut Client) -> String {
    c.query_one("SELECT extversion FROM pg_extension WHERE extname = 'pg_eventstore'", &[]).unwrap().get(0)
}

/// A store with something of everything: streams of two types, a causation chain, snapshots, a
/// snapshot threshold, and a subscription part-way through the feed.
pub fn populate(c: &mut Client) {
    // one transaction per statement, as an application would: the feed shows only committed events
    let script = 
        "SELECT eventstore.set_snapshot_threshold('Account', 3);
         SELECT eventstore.record_command('Open', '{\"n\": 1}', 'acct-1', 'user-1', command_id => 'a0000000-0000-0000-0000-000000000001');
         SELECT eventstore.append_events('acct-' || i, 'Account',
                    jsonb_build_array(jsonb_build_object('type', 'Opened', 'payload', jsonb_build_object('n', i)),
                                      jsonb_build_object('type', 'Deposited', 'payload', jsonb_build_object('amount', i * 10),
                                                         'metadata', jsonb_build_object('trace', 'Zoë ✓'))),
                    command_id => CASE WHEN i = 1 THEN 'a0000000-0000-0000-0000-000000000001'::uuid END)
         FROM generate_series(1, 20) i;
         SELECT eventstore.record_command('Notify', '{}', 'mail-1', NULL, 'acct-1', 2, 'a0000000-0000-0000-0000-000000000002');
         SELECT eventstore.append_event('mail-1', 'Mail', 'Sent', '{\"to\": \"x\"}', command_id => 'a0000000-0000-0000-0000-000000000002');
         SELECT eventstore.append_event('acct-' || i, 'Account', 'Withdrawn', jsonb_build_object('amount', i)) FROM generate_series(1, 5) i;
         SELECT eventstore.take_snapshot('acct-' || i, 2, jsonb_build_object('balance', i * 10)) FROM generate_series(1, 10) i;
         SELECT eventstore.create_subscription('projection', ARRAY['Account']);
         SELECT count(*) FROM eventstore.poll('projection', 10);
         SELECT eventstore.ack('projection', (SELECT max(global_position) FROM eventstore.read_all(0, 10, ARRAY['Account'])));";
    for statement in script.split(";\n") {
        c.batch_execute(statement).unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

/// What the lifecycle functions leave behind (0.5.0 on): a soft-deleted and reopened stream, a
/// tombstone, an archived stream, a truncated one, redacted and erased events, a retention setting
/// and the audit log's entries. Needs `populate` first.
pub fn populate_lifecycle(c: &mut Client) {
    let script = "SELECT eventstore.append_events('life-soft', 'Life', '[{\"type\": \"A\", \"payload\": {}}, {\"type\": \"B\", \"payload\": {}}]');
         SELECT eventstore.delete_stream('life-soft');
         SELECT eventstore.append_event('life-soft', 'Life', 'Reopened', '{}');
         SELECT eventstore.delete_stream('acct-20', hard => true, reason => 'closed');
         SELECT eventstore.append_events('life-old', 'Life', '[{\"type\": \"A\", \"payload\": {\"n\": 1}}, {\"type\": \"B\", \"payload\": {\"n\": 2}}]');
         SELECT eventstore.archive_stream('life-old');
         SELECT eventstore.truncate_stream('acct-19', 2, 'kept the last one');
         SELECT eventstore.append_event('person-1', 'Person', 'Registered', '{\"email\": \"p@example.com\", \"name\": \"P\"}', '{\"ip\": \"192.0.2.1\"}');
         SELECT eventstore.redact_events('person-1', NULL, ARRAY['payload.email', 'metadata.ip'], 'request 1');
         SELECT eventstore.set_retention('Ticker', max_count => 10, max_age => interval '400 days', keep_after_snapshot => true)";
    for statement in script.split(";\n") {
        c.batch_execute(statement).unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

const STORE_TABLES: [&str; 8] =
    ["stream_types", "streams", "commands", "events", "snapshots", "subscription_state", "archived_events", "audit_log"];

/// Every row of every table of the store (and the position sequence), to compare two stores.
pub fn store_digest(c: &mut Client) -> Vec<(String, i64, String)> {
    let columns = store_columns(c);
    store_digest_of(c, &columns)
}

/// The store's tables and their columns as installed (tables a later version adds are absent).
pub fn store_columns(c: &mut Client) -> Vec<(String, Vec<String>)> {
    STORE_TABLES
        .iter()
        .filter_map(|t| {
            let cols: Vec<String> = c
                .query(
                    "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass('eventstore.' || $1::text) \
                     AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                    &[t],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            (!cols.is_empty()).then(|| (t.to_string(), cols))
        })
        .collect()
}

/// The digest of the given tables' given columns: what an upgrade must leave as it was (the
/// columns it adds are left out).
pub fn store_digest_of(c: &mut Client, tables: &[(String, Vec<String>)]) -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    for (t, cols) in tables {
        let row = c
            .query_one(
                &format!(
                    "SELECT count(*), COALESCE(md5(string_agg(r, E'\\n' ORDER BY r)), '') FROM \
                     (SELECT (SELECT jsonb_object_agg(key, value) FROM jsonb_each(to_jsonb(t)) WHERE key = ANY ($1))::text AS r \
                      FROM eventstore.{t} t) x"
                ),
                &[cols],
            )
            .unwrap();
        out.push((t.clone(), row.get(0), row.get(1)));
    }
    let seq = c.query_one("SELECT last_value, is_called::text FROM eventstore.global_position_seq", &[]).unwrap();
    out.push(("global_position_seq".into(), seq.get(0), seq.get(1)));
    out
}

/// The installed schema as text lines (tables, columns, constraints, indexes, triggers, functions
/// with their settings and grants, views, extension membership, pg_dump registration), to compare
/// an upgraded store with a fresh install.
pub fn schema_fingerprint(c: &mut Client) -> Vec<String> {
    c.query(include_str!("../sql/schema_fingerprint.sql"), &[])
        .unwrap()
        .iter()
        .map(|r| format!("{} {} :: {}", r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, String>(2)))
        .collect()
}

/// What must hold on a copy `c` of a store whose digest was `before` (`populate` and
/// `populate_lifecycle`), brought back by pg_restore or pg_upgrade: every row as it was, the feed,
/// appends, the subscription and the rules carry on.
pub fn check_store_carries_on(c: &mut Client, before: &[(String, i64, String)]) {
    assert_eq!(store_digest(c), before, "the copy differs from the original");
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

pub fn violations(c: &mut Client) -> Vec<String> {
    c.query("SELECT format('%s %s#%s: %s', invariant, stream_id, sequence, detail) FROM eventstore.verify()", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Checks every index of the store's tables against its table with contrib's amcheck
/// (bt_index_check with heapallindexed): the store writes index entries itself (src/direct.rs),
/// so a missing or wrong entry must show up here. Panics on the first broken index.
pub fn check_indexes(c: &mut Client) {
    c.batch_execute("CREATE EXTENSION IF NOT EXISTS amcheck").unwrap();
    let n: i64 = c
        .query_one(
            "SELECT count(bt_index_check(i.indexrelid, true)) FROM pg_index i \
             JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname = 'eventstore'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(n >= 5, "checked the store's indexes ({n})");
}

/// Directory of the Postgres server programs (initdb, pg_ctl, pg_dump, pg_restore).
pub fn pg_bindir() -> String {
    std::env::var("PG_BINDIR").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_string())
}

/// Runs a server program as the postgres OS user (initdb and the server refuse root).
pub fn as_postgres(program: &str, args: &[&str]) -> std::process::Output {
    as_postgres_in(&pg_bindir(), program, args)
}

/// The same with the programs of another installation.
pub fn as_postgres_in(bindir: &str, program: &str, args: &[&str]) -> std::process::Output {
    let path = format!("{bindir}/{program}");
    let root = unsafe { libc_geteuid() } == 0;
    let mut cmd = if root {
        let mut c = std::process::Command::new("sudo");
        c.args(["-u", "postgres", &path]);
        c
    } else {
        std::process::Command::new(&path)
    };
    cmd.args(args).output().unwrap_or_else(|e| panic!("cannot run {path}: {e}"))
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Runs a client program (pg_dump, pg_restore) and fails the test with its output if it fails.
pub fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let path = format!("{}/{program}", pg_bindir());
    let out = std::process::Command::new(&path)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {path}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{program} {args:?} failed: {text}");
    text
}

/// A throwaway cluster of its own (fresh initdb, own port and socket directory), for tests that
/// kill the server or need a cluster younger than the main one.
pub struct Scratch {
    pub dir: String,
    pub port: u16,
    /// The server programs it runs with.
    pub bindir: String,
    /// Server settings of this cluster (`-c name=value ...`).
    settings: String,
}

impl Scratch {
    pub fn create(name: &str, port: u16) -> Scratch {
        Scratch::create_with(name, port, &[])
    }

    /// A cluster with some settings of its own, e.g. `max_prepared_transactions=5`.
    pub fn create_with(name: &str, port: u16, settings: &[&str]) -> Scratch {
        let s = Scratch::init_in(&pg_bindir(), name, port, settings);
        s.start();
        s
    }

    /// A new cluster of another installation's programs, initialised but not started.
    pub fn init_in(bindir: &str, name: &str, port: u16, settings: &[&str]) -> Scratch {
        let dir = format!("/tmp/pg_eventstore_{name}");
        let settings = settings.iter().map(|s| format!(" -c {s}")).collect();
        let s = Scratch { dir, port, bindir: bindir.to_string(), settings };
        s.stop_quietly();
        let _ = std::fs::remove_dir_all(&s.dir);
        std::fs::create_dir_all(&s.dir).unwrap();
        let chown = std::process::Command::new("chown").args(["postgres:postgres", &s.dir]).status();
        assert!(chown.is_ok_and(|st| st.success()) || unsafe { libc_geteuid() } != 0, "cannot chown {}", s.dir);
        let out = s.as_postgres("initdb", &["-D", &s.dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]);
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        s
    }

    /// Runs one of this cluster's server programs as the postgres OS user.
    pub fn as_postgres(&self, program: &str, args: &[&str]) -> std::process::Output {
        as_postgres_in(&self.bindir, program, args)
    }

    pub fn url(&self, db: &str) -> String {
        format!("host={} port={} user=postgres dbname={db}", self.dir, self.port)
    }

    pub fn start(&self) {
        let opts = format!("-p {} -k {} -c listen_addresses=''{}", self.port, self.dir, self.settings);
        let log = format!("{}/server.log", self.dir);
        let out = self.as_postgres("pg_ctl", &["-D", &self.dir, "-o", &opts, "-l", &log, "-w", "-t", "120", "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// The postmaster's pid, from postmaster.pid.
    pub fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(format!("{}/postmaster.pid", self.dir)).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// SIGKILL to the postmaster and every one of its processes at once: no shutdown, no flush.
    pub fn kill9(&self) {
        let pid = self.postmaster_pid().expect("the scratch cluster is running");
        let children = std::process::Command::new("pgrep").args(["-P", &pid.to_string()]).output().unwrap();
        let mut pids = vec![pid.to_string()];
        pids.extend(String::from_utf8_lossy(&children.stdout).split_whitespace().map(String::from));
        // a child may have exited since pgrep listed it (kill then fails for that one only)
        // (the loop below checks that every one of them is gone)
        let _ = std::process::Command::new("kill").arg("-9").args(&pids).status().unwrap();
        for _ in 0..200 {
            let alive = pids.iter().any(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("server processes survived SIGKILL");
    }

    /// A clean shutdown (a checkpoint, then exit), as pg_upgrade needs.
    pub fn stop(&self) {
        let out = self.as_postgres("pg_ctl", &["-D", &self.dir, "-m", "fast", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn stop_quietly(&self) {
        if std::path::Path::new(&format!("{}/postmaster.pid", self.dir)).exists() {
            let _ = self.as_postgres("pg_ctl", &["-D", &self.dir, "-m", "immediate", "-w", "stop"]);
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.stop_quietly();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A small deterministic PRNG (xorshift64*), so a failing fuzz or crash run can be replayed by seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
