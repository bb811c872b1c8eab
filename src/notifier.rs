//! The notifier: one background worker per database sends the feed's notifications, so that
//! appending transactions stay off the lock Postgres takes for every committing NOTIFY
//! (`PreCommit_Notify` holds it until the commit record is flushed, which serialises commits).
//!
//! An appending transaction that finds a live notifier leaves its notification to it: after its
//! commit it only sets the notifier's latch. The notifier reads the events after its watermark,
//! stops at the first one the feed cannot return yet (see feed.rs), and sends one notification per
//! committed transaction (grouped by the rows' xmin) with that transaction's highest position, in
//! one transaction of its own. It also notices when the feed advances without any append (an
//! unrelated transaction that held the horizon back ends), which a NOTIFY sent at commit cannot.
//!
//! Nothing may be lost when the notifier stops, so three session locks in the lock manager keep
//! the hand-over exact (tags on this database and pg_extension, field4 telling them apart):
//! - RELY: an appender that leaves its notification to the notifier holds it (RowExclusive, which
//!   appenders never conflict on) from its first append until after its commit. The notifier
//!   stops only after taking it Exclusive without waiting, so never while one relies on it, and
//!   sweeps once more before it lets go.
//! - ALIVE(pid): held by the notifier while it runs; an appender that holds RELY and finds it
//!   taken may rely on that pid.
//! - SINGLETON: one notifier per database.
//! Without a notifier (none started yet, no free worker slot, `pg_eventstore.notifier = off`)
//! the appender sends its own NOTIFY as before and asks the postmaster to start one.

use crate::spi::{Spi, Stmt};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::pg_sys::{self, Datum};
use std::cell::Cell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::CStr;
use std::time::{Duration, Instant};

const WORKER_TYPE: &CStr = c"pg_eventstore notifier";

pub static ENABLED: pgrx::GucSetting<bool> = pgrx::GucSetting::<bool>::new(true);
pub static IDLE_TIMEOUT_MS: pgrx::GucSetting<i32> = pgrx::GucSetting::<i32>::new(60_000);

pub fn init() {
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
}

// ---------------------------------------------------------------------------------------------
// Locks
// ---------------------------------------------------------------------------------------------

const RELY: u16 = 1;
const SINGLETON: u16 = 2;
const ALIVE: u16 = 3;

fn tag(kind: u16, id: u32) -> pg_sys::LOCKTAG {
    pg_sys::LOCKTAG {
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: pg_sys::ExtensionRelationId.to_u32(),
        locktag_field3: id,
        locktag_field4: kind,
        locktag_type: pg_sys::LockTagType::LOCKTAG_OBJECT as u8,
        locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
    }
}

/// A session lock: it outlives subtransactions and transactions; released explicitly (or when
/// a transaction of the holder aborts, or at exit).
fn lock(t: &pg_sys::LOCKTAG, mode: u32, wait: bool) -> bool {
    unsafe { pg_sys::LockAcquire(t, mode as i32, true, !wait) != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL }
}

fn unlock(t: &pg_sys::LOCKTAG, mode: u32) {
    unsafe { pg_sys::LockRelease(t, mode as i32, true) };
}

/// Held by someone else in a conflicting mode right now.
fn taken(t: &pg_sys::LOCKTAG, mode: u32) -> bool {
    if lock(t, mode, false) {
        unlock(t, mode);
        false
    } else {
        true
    }
}

// ---------------------------------------------------------------------------------------------
// The appender's side
// ---------------------------------------------------------------------------------------------

thread_local! {
    static CACHED_PID: Cell<Option<i32>> = const { Cell::new(None) };
    static NEXT_LOOKUP: Cell<Option<Instant>> = const { Cell::new(None) };
    static NEXT_START: Cell<Option<Instant>> = const { Cell::new(None) };
    static NOTIFIER_PROC: Cell<Option<*mut pg_sys::PGPROC>> = const { Cell::new(None) };
}

const LOOKUP_INTERVAL: Duration = Duration::from_millis(100);
const START_INTERVAL: Duration = Duration::from_secs(1);

/// Called at a transaction's first append. Some(pid): the notifier `pid` will notify for this
/// transaction, and the caller must call `done` when the transaction ends. None: the caller
/// sends its own NOTIFY.
pub fn rely() -> Option<i32> {
    if !ENABLED.get() {
        return None;
    }
    let rely = tag(RELY, 0);
    // Waits only while a notifier takes its last sweep before it stops.
    lock(&rely, pg_sys::RowExclusiveLock, true);
    if let Some(pid) = CACHED_PID.get() {
        if taken(&tag(ALIVE, pid as u32), pg_sys::AccessShareLock) {
            return Some(pid);
        }
        CACHED_PID.set(None);
    }
    let now = Instant::now();
    if NEXT_LOOKUP.get().is_none_or(|t| now >= t) {
        NEXT_LOOKUP.set(Some(now + LOOKUP_INTERVAL));
        if let Some(pid) = find_worker() {
            if taken(&tag(ALIVE, pid as u32), pg_sys::AccessShareLock) {
                CACHED_PID.set(Some(pid));
                return Some(pid);
            }
        }
        if NEXT_START.get().is_none_or(|t| now >= t) && !taken(&tag(SINGLETON, 0), pg_sys::AccessShareLock) {
            NEXT_START.set(Some(now + START_INTERVAL));
            start_worker();
        }
    }
    unlock(&rely, pg_sys::RowExclusiveLock);
    None
}

/// The end of a transaction that relied on `pid`: wake it if the transaction committed.
pub fn done(pid: i32, committed: bool) {
    if committed {
        unsafe {
            // PGPROC slots stay where they are in shared memory, so the notifier's is kept from one
            // commit to the next; looking it up takes ProcArrayLock, which every commit takes
            // exclusively. A slot that has since gone to another process shows another pid; a
            // latch set on the wrong process would only wake it for nothing.
            let cached = NOTIFIER_PROC.get().filter(|&p| (*p).pid == pid);
            let proc_ = cached.unwrap_or_else(|| pg_sys::BackendPidGetProc(pid));
            if !proc_.is_null() {
                NOTIFIER_PROC.set(Some(proc_));
                pg_sys::SetLatch(&mut (*proc_).procLatch);
            }
        }
    }
    unlock(&tag(RELY, 0), pg_sys::RowExclusiveLock);
}

/// The notifier of this database among the server's processes, if one runs.
fn find_worker() -> Option<i32> {
    unsafe {
        let n = pg_sys::pgstat_fetch_stat_numbackends();
        for i in 1..=n {
            let e = pg_sys::pgstat_fetch_stat_local_beentry(i);
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

fn start_worker() {
    // The worker connects as the current user: inside the store's functions that is their owner,
    // in the events trigger the role that writes the table directly; both may read events.
    let (db, role) = unsafe { (pg_sys::MyDatabaseId.to_u32(), pg_sys::GetUserId().to_u32()) };
    let _ = BackgroundWorkerBuilder::new("pg_eventstore notifier")
        .set_type(WORKER_TYPE.to_str().unwrap())
        .set_library("pg_eventstore")
        .set_function("es_notifier_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
        .set_argument(Some(Datum::from(((db as u64) << 32) | role as u64)))
        .load_dynamic();
}

// ---------------------------------------------------------------------------------------------
// The worker
// ---------------------------------------------------------------------------------------------

const PAGE: i32 = 5000;
/// Between two sweeps at least this much time passes: under load one sweep serves many commits.
const MIN_INTERVAL: Duration = Duration::from_millis(2);
/// While the feed is held back, look again this often (its release sends no signal).
const HELD_BACK_POLL: Duration = Duration::from_millis(20);
const IDLE_POLL: Duration = Duration::from_millis(250);

static SWEEP: Stmt = Stmt {
    sql: "SELECT global_position, xmin, stream_type, \
                 (horizon_xid <= pg_snapshot_xmin(pg_current_snapshot()) OR horizon_xid > $2) \
          FROM eventstore.events WHERE global_position > $1 ORDER BY global_position LIMIT $3",
    args: &[pg_sys::INT8OID, pg_sys::XID8OID, pg_sys::INT4OID],
};

#[derive(Default)]
struct Group {
    max: i64,
    types: BTreeSet<String>,
}

struct Notifier {
    /// Every event up to here has been read as settled.
    last: i64,
    /// Transactions read in part: some of their events are past the watermark, not settled yet.
    open: HashMap<u32, Group>,
}

struct Swept {
    new: bool,
    held_back: bool,
    more: bool,
}

impl Notifier {
    /// One transaction: read what settled since the watermark, notify the transactions read whole.
    fn sweep(&mut self) -> Swept {
        BackgroundWorker::transaction(std::panic::AssertUnwindSafe(|| {
            let next = crate::feed::cluster_next_xid();
            let spi = Spi::connect();
            let rows = spi.run(&SWEEP, &[Some(Datum::from(self.last)), Some(Datum::from(next)), Some(Datum::from(PAGE))], true);
            let mut swept = Swept { new: false, held_back: false, more: rows.len() == PAGE as usize };
            let mut unsettled = HashSet::new();
            for r in 0..rows.len() {
                let xid = rows.datum(r, 2).map_or(0, |d| d.value() as u32);
                if !swept.held_back && rows.bool(r, 4) == Some(true) {
                    let position = rows.i64(r, 1).unwrap();
                    let g = self.open.entry(xid).or_default();
                    g.max = position;
                    g.types.insert(rows.text(r, 3).unwrap_or_default());
                    self.last = position;
                    swept.new = true;
                } else {
                    swept.held_back = true;
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
            spi.finish();
            swept
        }))
    }

    /// Stops unless a transaction relies on this notifier, after a last sweep. With
    /// `only_if_settled`, also stays while some events are not settled: their notification is due.
    fn try_stop(&mut self, only_if_settled: bool) -> bool {
        let rely = tag(RELY, 0);
        if !lock(&rely, pg_sys::ExclusiveLock, false) {
            return false;
        }
        let mut swept = self.sweep();
        while swept.more {
            swept = self.sweep();
        }
        if only_if_settled && (swept.held_back || !self.open.is_empty()) {
            unlock(&rely, pg_sys::ExclusiveLock);
            return false;
        }
        unlock(&tag(ALIVE, unsafe { pg_sys::MyProcPid } as u32), pg_sys::AccessExclusiveLock);
        unlock(&rely, pg_sys::ExclusiveLock);
        unlock(&tag(SINGLETON, 0), pg_sys::AccessExclusiveLock);
        true
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn release_locks(_code: i32, _arg: Datum) {
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
    taken(&t, pg_sys::RowExclusiveLock)
}

#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn es_notifier_main(arg: Datum) {
    let v = arg.value() as u64;
    let (db, role) = (pg_sys::Oid::from((v >> 32) as u32), pg_sys::Oid::from(v as u32));
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(db), Some(role));
    // Postgres releases a process's session locks when a transaction aborts, not when the process
    // exits; whatever way this worker leaves, its locks must not outlive it.
    unsafe { pg_sys::before_shmem_exit(Some(release_locks), Datum::from(0)) };
    if !lock(&tag(SINGLETON, 0), pg_sys::AccessExclusiveLock, false) {
        return;
    }
    unsafe {
        // Notifications need no durability; the worker's commits need not wait for a flush.
        pg_sys::SetConfigOption(c"synchronous_commit".as_ptr(), c"off".as_ptr(), pg_sys::GucContext::PGC_USERSET, pg_sys::GucSource::PGC_S_SESSION);
        pg_sys::SetConfigOption(c"application_name".as_ptr(), WORKER_TYPE.as_ptr(), pg_sys::GucContext::PGC_USERSET, pg_sys::GucSource::PGC_S_SESSION);
    }
    // The watermark is read before ALIVE is taken: every transaction that relies on this worker
    // commits after that, so its events are either above the watermark or were unsettled at it.
    let last = BackgroundWorker::transaction(|| {
        let spi = Spi::connect();
        let (head, first_unsettled) = crate::feed::head_and_first_unsettled(&spi, crate::feed::cluster_next_xid());
        spi.finish();
        first_unsettled.map_or(head, |p| p - 1)
    });
    let mut n = Notifier { last, open: HashMap::new() };
    lock(&tag(ALIVE, unsafe { pg_sys::MyProcPid } as u32), pg_sys::AccessExclusiveLock, true);
    let idle_timeout = Duration::from_millis(IDLE_TIMEOUT_MS.get() as u64);
    let idle_poll = IDLE_POLL.min(idle_timeout);
    let (mut active_at, mut checked_at) = (Instant::now(), Instant::now());
    loop {
        let started = Instant::now();
        let swept = n.sweep();
        if swept.new {
            active_at = Instant::now();
        }
        if swept.more {
            continue;
        }
        if checked_at.elapsed() >= idle_poll {
            checked_at = Instant::now();
            if database_wanted() && n.try_stop(false) {
                return;
            }
            if active_at.elapsed() >= idle_timeout && n.try_stop(true) {
                return;
            }
        }
        let pause = if swept.held_back || !n.open.is_empty() { HELD_BACK_POLL } else { idle_poll };
        let rest = MIN_INTERVAL.saturating_sub(started.elapsed());
        if !rest.is_zero() {
            std::thread::sleep(rest);
        }
        if !BackgroundWorker::wait_latch(Some(pause)) {
            // Shutdown or pg_terminate_backend: hand over cleanly if nobody relies on us now.
            n.try_stop(false);
            return;
        }
    }
}
