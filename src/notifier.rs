//! The feed's notifications, and the notifier: one background worker per database that sends
//! them, so that appending transactions stay off the lock Postgres takes for every committing
//! NOTIFY (`PreCommit_Notify` holds it until the commit record is flushed, which serialises commits).
//!
//! The notifier reads the events after its watermark, stops at the first one the feed cannot
//! return yet (see feed.rs), and sends one notification per committed transaction (grouped by
//! the rows' xmin) with that transaction's highest position, in one transaction of its own. It
//! also notices when the feed advances without any append (an unrelated transaction that held the
//! horizon back ends), which a NOTIFY sent at commit cannot.
//!
//! The protocol, which is what keeps every committed append announced whatever stops the notifier:
//! - A running notifier holds the session lock ALIVE. An appending transaction, after it has
//!   committed (or prepared), looks at ALIVE: held, it sets the notifier's latch; free, it asks the
//!   postmaster for a new notifier. No lock is held while a transaction runs.
//! - A notifier that stops releases ALIVE first and then sweeps once more, so a transaction that
//!   saw it held is in that sweep. If anything is still unsettled then, or a prepared transaction
//!   of the database may yet commit, it starts a successor before it goes.
//! - Every notifier starts from the position up to which its predecessor had announced everything
//!   (eventstore.notifier_state, written when a notifier stops and every few seconds), so what
//!   committed while none was running is announced by the next one. A spurious notification is
//!   harmless; a missing one is not.
//! - A transaction that sees no notifier running before it commits also sends its own NOTIFY.

use crate::spi::{Spi, Stmt};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::pg_sys::{self, Datum};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::CStr;
use std::time::{Duration, Instant};

const WORKER_TYPE: &CStr = c"pg_eventstore notifier";

pub static NOTIFY: pgrx::GucSetting<bool> = pgrx::GucSetting::<bool>::new(true);
pub static ENABLED: pgrx::GucSetting<bool> = pgrx::GucSetting::<bool>::new(true);
pub static IDLE_TIMEOUT_MS: pgrx::GucSetting<i32> = pgrx::GucSetting::<i32>::new(60_000);

pub fn init() {
    pgrx::GucRegistry::define_bool_guc(
        c"pg_eventstore.notify",
        c"NOTIFY listeners when a transaction that appended events commits",
        c"Sends the highest appended global position on channel \"eventstore\" and \"eventstore.<stream_type>\".",
        &NOTIFY,
        pgrx::GucContext::Userset,
        pgrx::GucFlags::default(),
    );
    pgrx::GucRegistry::define_bool_guc(
        c"pg_eventstore.notifier",
        c"Leave notifications to the notifier background worker",
        c"Off: every appending transaction sends its own NOTIFY, which serialises concurrent commits.",
        &ENABLED,
        pgrx::GucContext::Userset,
        pgrx::GucFlags::default(),
    );
    pgrx::GucRegistry::define_int_guc(
        c"pg_eventstore.notifier_idle_timeout",
        c"How long the notifier waits without appends before it stops and frees its worker slot",
        c"The notifier of a database reads this when it starts (ALTER DATABASE ... SET works).",
        &IDLE_TIMEOUT_MS,
        10,
        86_400_000,
        pgrx::GucContext::Suset,
        pgrx::GucFlags::UNIT_MS,
    );
    unsafe { pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut()) };
}

// ---------------------------------------------------------------------------------------------
// The lock
// ---------------------------------------------------------------------------------------------

/// Held (AccessExclusive, as a session lock) by the running notifier of this database; appending
/// transactions probe it after they commit.
fn alive_tag() -> pg_sys::LOCKTAG {
    tag(3)
}

/// Held by a notifier for its whole life, so that only one at a time takes ALIVE (which committing
/// transactions probe all the time, so a notifier must wait for it rather than try once).
fn singleton_tag() -> pg_sys::LOCKTAG {
    tag(2)
}

fn tag(kind: u16) -> pg_sys::LOCKTAG {
    pg_sys::LOCKTAG {
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: pg_sys::ExtensionRelationId.to_u32(),
        locktag_field3: 0,
        locktag_field4: kind,
        locktag_type: pg_sys::LockTagType::LOCKTAG_OBJECT as u8,
        locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
    }
}

fn lock(t: &pg_sys::LOCKTAG, mode: u32) -> bool {
    unsafe { pg_sys::LockAcquire(t, mode as i32, true, true) != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL }
}

fn lock_waiting(t: &pg_sys::LOCKTAG, mode: u32) {
    unsafe { pg_sys::LockAcquire(t, mode as i32, true, false) };
}

fn unlock(t: &pg_sys::LOCKTAG, mode: u32) {
    unsafe { pg_sys::LockRelease(t, mode as i32, true) };
}

/// Held (or about to be taken) by a notifier right now. The lock manager's partition lock orders
/// this with the notifier's release: a transaction that finds ALIVE held committed before the
/// notifier's last sweep.
fn notifier_alive() -> bool {
    let t = alive_tag();
    if lock(&t, pg_sys::AccessShareLock) {
        unlock(&t, pg_sys::AccessShareLock);
        false
    } else {
        true
    }
}

// ---------------------------------------------------------------------------------------------
// The appender's side
// ---------------------------------------------------------------------------------------------

/// What this transaction appended: for its own NOTIFY when no notifier runs.
struct Pending {
    max_position: i64,
    stream_types: BTreeSet<String>,
    /// The role that owns the store's tables, as whom a notifier is started.
    owner: pg_sys::Oid,
}

thread_local! {
    static PENDING: RefCell<Option<Pending>> = const { RefCell::new(None) };
    /// The notifier last found running: its pid and PGPROC (PGPROC slots stay where they are in
    /// shared memory; a slot that has gone to another process shows another pid).
    static KNOWN: Cell<Option<(i32, *mut pg_sys::PGPROC)>> = const { Cell::new(None) };
    static NEXT_LOOKUP: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The last notifier this backend asked for, while it may not have started yet.
    static REQUESTED: Cell<*mut pg_sys::BackgroundWorkerHandle> = const { Cell::new(std::ptr::null_mut()) };
    static NEXT_WARNING: Cell<Option<Instant>> = const { Cell::new(None) };
}

const LOOKUP_INTERVAL: Duration = Duration::from_millis(100);

/// Called for every appended event (by the store's functions and by the events trigger).
pub fn note_append(stream_type: &str, position: i64, owner: pg_sys::Oid) {
    // A distributed store has no global feed yet (README "Running on Citus"), so nothing to
    // announce; the notifier's sweep there would be a query over every shard of the cluster.
    if !NOTIFY.get() || crate::distributed::distributed() {
        return;
    }
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        match p.as_mut() {
            Some(p) => {
                p.max_position = p.max_position.max(position);
                if !p.stream_types.contains(stream_type) {
                    p.stream_types.insert(stream_type.to_string());
                }
            }
            None => *p = Some(Pending { max_position: position, stream_types: BTreeSet::from([stream_type.to_string()]), owner }),
        }
    });
}

/// The notifier's PGPROC if the last one found still runs under the pid it had.
fn known_notifier() -> Option<*mut pg_sys::PGPROC> {
    KNOWN.get().and_then(|(pid, proc_)| (unsafe { (*proc_).pid } == pid).then_some(proc_))
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn xact_callback(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT => {
            let own = PENDING.with(|p| {
                p.borrow().as_ref().filter(|_| !ENABLED.get() || !looks_running()).map(|p| {
                    (p.max_position, p.stream_types.clone())
                })
            });
            if let Some((max, types)) = own {
                crate::feed::send(max, types.iter().map(String::as_str));
            }
        }
        XACT_EVENT_COMMIT | XACT_EVENT_PREPARE => {
            if let Some(p) = PENDING.with(|p| p.borrow_mut().take()) {
                if ENABLED.get() {
                    wake_or_start(p.owner);
                }
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => {
            PENDING.with(|p| p.borrow_mut().take());
        }
        _ => {}
    }
}

/// Inside the committing transaction: whether a notifier seems to run (it will be checked again
/// properly after the commit). Looks one up at most every 100 ms.
fn looks_running() -> bool {
    if known_notifier().is_some() {
        return true;
    }
    let now = Instant::now();
    if NEXT_LOOKUP.get().is_some_and(|t| now < t) {
        return false;
    }
    NEXT_LOOKUP.set(Some(now + LOOKUP_INTERVAL));
    match find_worker() {
        Some(pid) => {
            let proc_ = unsafe { pg_sys::BackendPidGetProc(pid) };
            if proc_.is_null() {
                return false;
            }
            KNOWN.set(Some((pid, proc_)));
            true
        }
        None => false,
    }
}

/// After the commit (or PREPARE): wake the running notifier, or have one started.
fn wake_or_start(owner: pg_sys::Oid) {
    if notifier_alive() {
        if let Some(proc_) = known_notifier() {
            unsafe { pg_sys::SetLatch(&mut (*proc_).procLatch) };
        }
        // A notifier we do not know yet: it sweeps on its own within a quarter of a second, and
        // the next transaction looks it up.
        return;
    }
    KNOWN.set(None);
    NEXT_LOOKUP.set(None);
    // A notifier this backend asked for that has not started yet will start after this commit.
    let pending = REQUESTED.get();
    if !pending.is_null() {
        let mut pid = 0;
        if unsafe { pg_sys::GetBackgroundWorkerPid(pending, &mut pid) } == pg_sys::BgwHandleStatus::BGWH_NOT_YET_STARTED {
            return;
        }
    }
    REQUESTED.set(start_worker(owner, 0));
}

/// The notifier of this database among the server's processes, if one runs.
fn find_worker() -> Option<i32> {
    unsafe {
        let n = pg_sys::pgstat_fetch_stat_numbackends();
        for i in 1..=n {
            let e = crate::compat::local_backend_status(i);
            if e.is_null() {
                continue;
            }
            let s = &(*e).backendStatus;
            if s.st_backendType == pg_sys::BackendType::B_BG_WORKER && s.st_databaseid == pg_sys::MyDatabaseId {
                let t = pg_sys::GetBackgroundWorkerTypeByPid(s.st_procpid);
                if !t.is_null() && CStr::from_ptr(t) == WORKER_TYPE {
                    return Some(s.st_procpid);
                }
            }
        }
    }
    None
}

/// Asks the postmaster for a notifier of this database connecting as `owner`; the handle lives
/// in TopMemoryContext. Null when no worker slot is free.
fn start_worker(owner: pg_sys::Oid, database: u32) -> *mut pg_sys::BackgroundWorkerHandle {
    let db = if database != 0 { database } else { unsafe { pg_sys::MyDatabaseId.to_u32() } };
    let mut w = pg_sys::BackgroundWorker {
        bgw_flags: (pg_sys::BGWORKER_SHMEM_ACCESS | pg_sys::BGWORKER_BACKEND_DATABASE_CONNECTION) as i32,
        bgw_start_time: pg_sys::BgWorkerStartTime::BgWorkerStart_RecoveryFinished,
        bgw_restart_time: pg_sys::BGW_NEVER_RESTART,
        bgw_main_arg: Datum::from(((db as u64) << 32) | owner.to_u32() as u64),
        ..Default::default()
    };
    copy_name(&mut w.bgw_name, WORKER_TYPE);
    copy_name(&mut w.bgw_type, WORKER_TYPE);
    copy_name(&mut w.bgw_library_name, c"pg_eventstore");
    copy_name(&mut w.bgw_function_name, c"es_notifier_main");
    unsafe {
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        let mut handle = std::ptr::null_mut();
        let ok = pg_sys::RegisterDynamicBackgroundWorker(&mut w, &mut handle);
        pg_sys::MemoryContextSwitchTo(old);
        if !ok {
            // Transactions that find no notifier also send their own NOTIFY, so nothing is lost; say
            // so now and then, not for every commit.
            let now = Instant::now();
            if NEXT_WARNING.get().is_none_or(|t| now >= t) {
                NEXT_WARNING.set(Some(now + Duration::from_secs(60)));
                pgrx::warning!(
                    "pg_eventstore: no free background worker slot for the notifier; raise max_worker_processes"
                );
            }
            return std::ptr::null_mut();
        }
        let old_handle = REQUESTED.get();
        if !old_handle.is_null() {
            pg_sys::pfree(old_handle.cast());
        }
        handle
    }
}

fn copy_name<const N: usize>(dst: &mut [std::ffi::c_char; N], src: &CStr) {
    for (d, s) in dst.iter_mut().zip(src.to_bytes_with_nul()) {
        *d = *s as std::ffi::c_char;
    }
}

// ---------------------------------------------------------------------------------------------
// The worker
// ---------------------------------------------------------------------------------------------

const PAGE: i32 = 5000;
/// Between two sweeps at least this much time passes: under load one sweep serves many commits.
const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// While the feed is held back, look again this often (its release sends no signal).
const HELD_BACK_POLL: Duration = Duration::from_millis(20);
const IDLE_POLL: Duration = Duration::from_millis(250);
/// How often the watermark is written while the notifier runs (it is also written when it stops).
const PERSIST_INTERVAL: Duration = Duration::from_secs(5);
/// A watermark further behind than this is not caught up transaction by transaction.
const MAX_CATCH_UP: i64 = 100_000;

static SWEEP: Stmt = Stmt {
    sql: "SELECT global_position, xmin, stream_type, \
                 (horizon_xid <= pg_snapshot_xmin(pg_current_snapshot()) OR horizon_xid > $2) \
          FROM eventstore.events WHERE global_position > $1 ORDER BY global_position LIMIT $3",
    args: &[pg_sys::INT8OID, pg_sys::XID8OID, pg_sys::INT4OID],
};

static LOAD_WATERMARK: Stmt = Stmt { sql: "SELECT announced_up_to FROM eventstore.notifier_state", args: &[] };

static SAVE_WATERMARK: Stmt = Stmt {
    sql: "INSERT INTO eventstore.notifier_state AS s (announced_up_to) VALUES ($1) \
          ON CONFLICT (singleton) DO UPDATE SET announced_up_to = $1, updated_at = now()",
    args: &[pg_sys::INT8OID],
};

static PREPARED: Stmt = Stmt {
    sql: "SELECT EXISTS (SELECT FROM pg_prepared_xacts WHERE database = current_database())",
    args: &[],
};

#[derive(Default)]
struct Group {
    min: i64,
    max: i64,
    types: BTreeSet<String>,
}

struct Notifier {
    /// Every event up to here has been read as settled.
    last: i64,
    /// Transactions read in part: some of their events are past the watermark, not settled yet.
    open: HashMap<u32, Group>,
    held_back: bool,
    persisted: (i64, Instant),
    /// The store has notifier_state (from 0.4.0 on).
    persist: bool,
    /// The events table this notifier follows; the store was dropped (and maybe created again)
    /// when it is gone.
    events: pg_sys::Oid,
    gone: bool,
}

struct Swept {
    new: bool,
    more: bool,
}

impl Notifier {
    /// Everything up to here has been announced: the watermark, below any transaction read in part.
    fn announced(&self) -> i64 {
        self.open.values().map(|g| g.min - 1).fold(self.last, i64::min)
    }

    /// Work is due: events not settled yet, or a prepared transaction that may still commit.
    fn pending(&self, spi: &Spi) -> bool {
        self.held_back || !self.open.is_empty() || spi.run(&PREPARED, &[], true).bool(0, 1) == Some(true)
    }

    /// One transaction: read what settled since the watermark, notify the transactions read whole.
    /// With `persist`, also write down the watermark (always when `finish` says stop).
    fn sweep(&mut self, persist: bool) -> Swept {
        if crate::integrity::store_relid(c"events") != Some(self.events) {
            self.gone = true;
            return Swept { new: false, more: false };
        }
        let next = crate::feed::cluster_next_xid();
        let spi = Spi::connect();
        let rows = spi.run(&SWEEP, &[Some(Datum::from(self.last)), Some(Datum::from(next)), Some(Datum::from(PAGE))], true);
        let mut swept = Swept { new: false, more: rows.len() == PAGE as usize };
        let mut unsettled = HashSet::new();
        self.held_back = false;
        for r in 0..rows.len() {
            let xid = rows.datum(r, 2).map_or(0, |d| d.value() as u32);
            if !self.held_back && rows.bool(r, 4) == Some(true) {
                let position = rows.i64(r, 1).unwrap();
                let g = self.open.entry(xid).or_insert_with(|| Group { min: position, ..Default::default() });
                g.max = position;
                g.types.insert(rows.text(r, 3).unwrap_or_default());
                self.last = position;
                swept.new = true;
            } else {
                self.held_back = true;
                unsettled.insert(xid);
            }
        }
        let mut ready: Vec<Group> = Vec::new();
        self.open.retain(|xid, g| {
            if unsettled.contains(xid) {
                true
            } else {
                ready.push(std::mem::take(g));
                false
            }
        });
        ready.sort_by_key(|g| g.max);
        for g in &ready {
            crate::feed::send(g.max, g.types.iter().map(String::as_str));
        }
        let announced = self.announced();
        let due = persist || (announced != self.persisted.0 && self.persisted.1.elapsed() >= PERSIST_INTERVAL);
        if self.persist && due {
            spi.run(&SAVE_WATERMARK, &[Some(Datum::from(announced))], false);
            self.persisted = (announced, Instant::now());
        }
        spi.finish();
        swept
    }

    /// Stops: releases ALIVE, so that committing transactions start a new notifier from here on,
    /// then sweeps once more for those that saw it held, and writes the watermark. If work is
    /// still due, a successor takes over.
    fn stop(&mut self, owner: pg_sys::Oid) {
        unlock(&alive_tag(), pg_sys::AccessExclusiveLock);
        let due = in_transaction(|| {
            while self.sweep(false).more {}
            self.sweep(true);
            let spi = Spi::connect();
            let due = self.pending(&spi);
            spi.finish();
            due
        });
        if due.unwrap_or(true) {
            start_worker(owner, unsafe { pg_sys::MyDatabaseId.to_u32() });
        }
    }
}

/// Runs `f` in a transaction of its own; an ERROR (a cancel, a lock timeout, the store being
/// dropped) aborts the transaction and comes back as Err instead of ending the worker.
///
/// The transaction first takes a share lock on the extension itself. DROP EXTENSION locks the
/// extension before any of its tables, and then the tables in the order it finds them, which
/// changes as the catalog is rewritten: without the extension lock first, a notifier reading two
/// of the store's tables could hold one that the drop needs while waiting for one it holds.
fn in_transaction<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    let f = move || {
        unsafe {
            let ext = pg_sys::get_extension_oid(c"pg_eventstore".as_ptr(), true);
            if ext != pg_sys::InvalidOid {
                pg_sys::LockDatabaseObject(pg_sys::ExtensionRelationId, ext, 0, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            }
        }
        f()
    };
    let f = std::panic::AssertUnwindSafe(f);
    pgrx::PgTryBuilder::new(|| Ok(BackgroundWorker::transaction(f)))
        .catch_others(|e| {
            unsafe { pg_sys::AbortCurrentTransaction() };
            Err(match e {
                pgrx::pg_sys::panic::CaughtError::PostgresError(r)
                | pgrx::pg_sys::panic::CaughtError::ErrorReport(r)
                | pgrx::pg_sys::panic::CaughtError::RustPanic { ereport: r, .. } => r.message().to_string(),
            })
        })
        .execute()
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn release_locks(_code: i32, _arg: Datum) {
    // Postgres releases a process's session locks when one of its transactions aborts, not when
    // the process exits; whatever way this worker leaves, its lock must not outlive it.
    pg_sys::LockReleaseSession(pg_sys::DEFAULT_LOCKMETHOD as u16);
}

/// Someone waits to drop, rename or copy this database, which needs every session gone.
fn database_wanted() -> bool {
    let t = pg_sys::LOCKTAG {
        locktag_field1: 0,
        locktag_field2: pg_sys::DatabaseRelationId.to_u32(),
        locktag_field3: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field4: 0,
        locktag_type: pg_sys::LockTagType::LOCKTAG_OBJECT as u8,
        locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
    };
    if lock(&t, pg_sys::RowExclusiveLock) {
        unlock(&t, pg_sys::RowExclusiveLock);
        false
    } else {
        true
    }
}

/// The store's events table still exists (DROP EXTENSION takes it away under a running notifier).
fn store_exists() -> bool {
    in_transaction(|| unsafe {
        let ns = pg_sys::get_namespace_oid(c"eventstore".as_ptr(), true);
        ns != pg_sys::InvalidOid && pg_sys::get_relname_relid(c"events".as_ptr(), ns) != pg_sys::InvalidOid
    })
    .unwrap_or(false)
}

#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn es_notifier_main(arg: Datum) {
    let v = arg.value() as u64;
    let (db, owner) = (pg_sys::Oid::from((v >> 32) as u32), pg_sys::Oid::from(v as u32));
    // A cancel only sets the latch: it interrupts nothing the notifier does, and never ends it.
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM | SignalWakeFlags::SIGINT);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(db), Some(owner));
    unsafe { pg_sys::before_shmem_exit(Some(release_locks), Datum::from(0)) };
    // One notifier at a time. Another one holding SINGLETON either runs (it holds ALIVE, or waits
    // for it: then it took it after whoever asked for this one found it free, and reads its
    // watermark later, so this one is not needed) or is stopping (it let ALIVE go; wait for it).
    let asked = Instant::now();
    while !lock(&singleton_tag(), pg_sys::AccessExclusiveLock) {
        if notifier_alive() || asked.elapsed() > Duration::from_secs(10) {
            return;
        }
        if !BackgroundWorker::wait_latch(Some(Duration::from_millis(5))) {
            return;
        }
    }
    lock_waiting(&alive_tag(), pg_sys::AccessExclusiveLock);
    unsafe {
        // Notifications need no durability; the worker's commits need not wait for a flush.
        pg_sys::SetConfigOption(c"synchronous_commit".as_ptr(), c"off".as_ptr(), pg_sys::GucContext::PGC_USERSET, pg_sys::GucSource::PGC_S_SESSION);
        pg_sys::SetConfigOption(c"application_name".as_ptr(), WORKER_TYPE.as_ptr(), pg_sys::GucContext::PGC_USERSET, pg_sys::GucSource::PGC_S_SESSION);
        // What every function of the store runs with (src/spi.rs): set once, not per sweep.
        pg_sys::SetConfigOption(c"search_path".as_ptr(), c"pg_catalog, pg_temp".as_ptr(), pg_sys::GucContext::PGC_USERSET, pg_sys::GucSource::PGC_S_SESSION);
    }
    // Start where the previous notifier had announced everything. The first one of a store starts
    // at the safe head and announces it once; so does one that finds the watermark too far behind
    // to announce every transaction since (a store restored from an old dump).
    let start = in_transaction(|| {
        let persist = crate::integrity::store_relid(c"notifier_state").is_some(); // absent before 0.4.0
        let spi = Spi::connect();
        let (_, safe) = crate::feed::head_and_safe(&spi, crate::feed::cluster_next_xid());
        let stored = if persist {
            let rows = spi.run(&LOAD_WATERMARK, &[], true);
            if rows.len() == 1 { rows.i64(0, 1) } else { None }
        } else {
            None
        };
        let start = match stored {
            Some(w) if safe - w <= MAX_CATCH_UP => w,
            _ => {
                crate::feed::send(safe, std::iter::empty());
                safe
            }
        };
        if persist {
            spi.run(&SAVE_WATERMARK, &[Some(Datum::from(start))], false);
        }
        spi.finish();
        (start, persist, crate::integrity::store_relid(c"events"))
    });
    let Ok((start, persist, Some(events))) = start else { return };
    let mut n = Notifier {
        last: start,
        open: HashMap::new(),
        held_back: false,
        persisted: (start, Instant::now()),
        persist,
        events,
        gone: false,
    };
    let idle_timeout = Duration::from_millis(IDLE_TIMEOUT_MS.get() as u64);
    let idle_poll = IDLE_POLL.min(idle_timeout);
    let (mut active_at, mut checked_at) = (Instant::now(), Instant::now());
    loop {
        let started = Instant::now();
        match in_transaction(|| n.sweep(false)) {
            Ok(_) if n.gone => return, // DROP EXTENSION: the next store's first commit starts its own
            Ok(swept) => {
                if swept.new {
                    active_at = Instant::now();
                }
                if swept.more {
                    continue;
                }
            }
            Err(message) => {
                if !store_exists() {
                    return; // the extension was dropped: nothing left to announce
                }
                pgrx::log!("pg_eventstore notifier: {message}; retrying in a second");
                if !BackgroundWorker::wait_latch(Some(Duration::from_secs(1))) {
                    n.stop(owner);
                    return;
                }
                continue;
            }
        }
        if checked_at.elapsed() >= idle_poll {
            checked_at = Instant::now();
            if database_wanted() {
                n.stop(owner);
                return;
            }
            if active_at.elapsed() >= idle_timeout {
                let idle = in_transaction(|| {
                    let spi = Spi::connect();
                    let due = n.pending(&spi);
                    spi.finish();
                    !due
                });
                if idle.unwrap_or(false) {
                    n.stop(owner);
                    return;
                }
            }
        }
        let pause = if n.held_back || !n.open.is_empty() { HELD_BACK_POLL } else { idle_poll };
        let rest = MIN_INTERVAL.saturating_sub(started.elapsed());
        if !rest.is_zero() {
            std::thread::sleep(rest);
        }
        if !BackgroundWorker::wait_latch(Some(pause)) {
            // pg_terminate_backend or shutdown: hand over (a successor if work is due)
            n.stop(owner);
            return;
        }
    }
}
