//! The store's own writes, done the way COPY does them: straight into the heap and its indexes,
//! without planning and starting an executor for each statement. The SQL statements an append
//! needs (bump or create the stream row, insert the events, check the command's foreign key) cost
//! far more than the heap and index work itself (bench/README.md: instructions per append).
//!
//! Only the store's functions come here, after they have checked everything the tables' triggers
//! would check. A table is written directly only while its whole definition — columns with their
//! types, defaults and NOT NULL, constraints, indexes, triggers and their functions, rules,
//! policies, publications, inheritance, access method, and no Citus in the database — is exactly
//! the one the extension created (`sql/table_definition.sql` against
//! `sql/table_definition.expected`). Anything else, whatever it is, and the caller runs the SQL
//! statement instead; the executor then does every duty a user's change brings with it.

use crate::compat;
use crate::errors::{self, Code};
use crate::spi::{Spi, Stmt};
use pgrx::pg_guard;
use pgrx::pg_sys::{self, Datum, Oid};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CStr;
use std::rc::Rc;

/// The events columns the store writes, in the order `insert_events` takes their values.
pub const EVENT_COLUMNS: [&CStr; 12] = [
    c"stream_id",
    c"sequence",
    c"event_id",
    c"stream_type",
    c"event_type",
    c"event_version",
    c"payload",
    c"metadata",
    c"command_id",
    c"global_position",
    c"horizon_xid",
    c"created_at",
];

pub type EventValues = [Option<Datum>; 12];

const STREAM_COLUMNS: [&CStr; 7] =
    [c"stream_id", c"stream_type", c"version", c"snapshot_threshold", c"created_at", c"state", c"truncate_before"];

/// What a store table's definition allows, worked out once per backend: None when the table is
/// not exactly the store's (then the store uses SQL), otherwise the attribute numbers of the
/// columns the direct path writes and the table's primary key.
struct Shape {
    cols: Vec<usize>,
    pkey: Oid,
}

thread_local! {
    static SHAPES: RefCell<HashMap<Oid, Option<Rc<Shape>>>> = RefCell::new(HashMap::new());
    /// Counts invalidations, so that a shape worked out while one arrived is not kept.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    /// Where this backend last wrote each stream's row (see `fetch_stream`).
    static STREAM_TIDS: RefCell<HashMap<Vec<u8>, pg_sys::ItemPointerData>> = RefCell::new(HashMap::new());
}

/// More streams than this and the TID cache starts over: it is for the streams a backend keeps
/// appending to, not an index of the store.
const MAX_STREAM_TIDS: usize = 1024;

/// The relcache callback (registered in `init`): forget what was cached about `relid`, or about
/// every relation when it is InvalidOid. Must not raise: it runs while invalidations are processed.
#[pg_guard]
unsafe extern "C-unwind" fn forget(_arg: Datum, relid: Oid) {
    GENERATION.set(GENERATION.get() + 1);
    crate::distributed::forget();
    SHAPES.with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if relid == pg_sys::InvalidOid { s.clear() } else { s.remove(&relid); }
        }
    });
    // TIDs survive most invalidations of streams, but not a rewrite (VACUUM FULL, CLUSTER).
    if crate::integrity::forget_relids(relid) {
        STREAM_TIDS.with(|t| {
            if let Ok(mut t) = t.try_borrow_mut() {
                t.clear();
            }
        });
    }
}

/// A function changed (a trigger function replaced by CREATE OR REPLACE, say): its tables send no
/// relcache invalidation, so forget every shape.
#[pg_guard]
unsafe extern "C-unwind" fn forget_all(_arg: Datum, _cacheid: i32, _hash: u32) {
    GENERATION.set(GENERATION.get() + 1);
    SHAPES.with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            s.clear();
        }
    });
}

pub fn init() {
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(forget), Datum::from(0));
        pg_sys::CacheRegisterSyscacheCallback(pg_sys::SysCacheIdentifier::PROCOID as i32, Some(forget_all), Datum::from(0));
    }
}

static TABLE_DEFINITION: Stmt = Stmt { sql: include_str!("../sql/table_definition.sql"), args: &[pg_sys::OIDOID] };

/// The definition of a store table as `sql/table_definition.sql` writes it.
pub(crate) fn definition(relid: Oid) -> String {
    let spi = Spi::connect();
    let text = spi.run(&TABLE_DEFINITION, &[Some(Datum::from(relid))], true).text(0, 1).unwrap_or_default();
    spi.finish();
    text
}

/// The definition the extension gives `table`.
pub(crate) fn expected_definition(table: &str) -> &'static str {
    let all = include_str!("../sql/table_definition.expected");
    let header = format!("# {table}\n");
    let start = all.find(&header).map(|i| i + header.len()).unwrap_or(all.len());
    let end = all[start..].find("\n# ").map_or(all.len(), |i| start + i);
    all[start..end].trim_end()
}

/// The table's Shape if its definition is exactly the store's, worked out once per backend.
fn shape_of(rel: pg_sys::Relation, table: &'static CStr, columns: &[&CStr]) -> Option<Rc<Shape>> {
    let relid = unsafe { (*rel).rd_id };
    if let Some(cached) = SHAPES.with(|s| s.borrow().get(&relid).cloned()) {
        return cached;
    }
    let generation = GENERATION.get();
    let name = table.to_str().unwrap();
    let shape = (definition(relid) == expected_definition(name)).then(|| {
        let cols = columns.iter().map(|c| column(rel, c).expect("the store's definition has the column")).collect();
        Rc::new(Shape { cols, pkey: unsafe { compat::primary_key_index(rel) } })
    });
    if GENERATION.get() == generation {
        SHAPES.with(|s| s.borrow_mut().insert(relid, shape.clone()));
    }
    shape
}

/// The position of the column named `name` in the table's tuple descriptor.
fn column(rel: pg_sys::Relation, name: &CStr) -> Option<usize> {
    unsafe {
        let desc = (*rel).rd_att;
        (0..(*desc).natts as usize).find(|&i| {
            let a = &*compat::attribute(desc, i);
            !a.attisdropped && CStr::from_ptr(a.attname.data.as_ptr()) == name
        })
    }
}

/// A store table opened for writing; the executor state for maintaining its indexes is made only
/// when index entries are written (a HOT update of a stream row writes none).
struct Table {
    rel: pg_sys::Relation,
    indexes: Option<(*mut pg_sys::EState, *mut pg_sys::ResultRelInfo)>,
}

impl Table {
    /// Opens the table and returns it with its Shape, or None (and closes it again) when its
    /// definition is not exactly the store's or the current user could not write it with SQL.
    fn open(name: &'static CStr, columns: &[&CStr], needed: u32) -> Option<(Table, Rc<Shape>)> {
        unsafe {
            if pg_sys::XactReadOnly {
                // What the executor says for an INSERT or UPDATE in a read-only transaction.
                pg_sys::PreventCommandIfReadOnly(c"append".as_ptr());
            }
            let relid = crate::integrity::store_relid(name).unwrap_or_else(|| {
                errors::raise(Code::ERRCODE_UNDEFINED_TABLE, format!("eventstore.{} is missing", name.to_string_lossy()))
            });
            // Taking the lock processes pending invalidations, so a cached shape read after it is current.
            let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as i32);
            let t = Table { rel, indexes: None };
            // The store's functions run as the owner, so this is a safeguard for a library loaded
            // under an older install whose functions are not SECURITY DEFINER: there the statement
            // runs and raises the permission error.
            let allowed = pg_sys::pg_class_aclcheck(relid, pg_sys::GetUserId(), needed as pg_sys::AclMode)
                == pg_sys::AclResult::ACLCHECK_OK;
            match shape_of(rel, name, columns).filter(|_| allowed) {
                Some(shape) => Some((t, shape)),
                None => {
                    t.close();
                    None
                }
            }
        }
    }

    fn desc(&self) -> pg_sys::TupleDesc {
        unsafe { (*self.rel).rd_att }
    }

    /// The executor state for the table's indexes; `speculative` also prepares what an insertion
    /// that checks for a conflicting key first (INSERT ... ON CONFLICT) needs.
    fn rri(&mut self, speculative: bool) -> (*mut pg_sys::EState, *mut pg_sys::ResultRelInfo) {
        *self.indexes.get_or_insert_with(|| unsafe {
            let estate = pg_sys::CreateExecutorState();
            let rri = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>()) as *mut pg_sys::ResultRelInfo;
            (*rri).type_ = pg_sys::NodeTag::T_ResultRelInfo;
            pg_sys::InitResultRelInfo(rri, self.rel, 1, std::ptr::null_mut(), 0);
            pg_sys::ExecOpenIndices(rri, speculative);
            (estate, rri)
        })
    }

    /// Adds the index entries of a tuple just written to the heap (`slot` holds it, with its TID).
    /// Also after a non-HOT update, as an insert: the executor's "unchanged by the update" hint
    /// to btree needs a range table this path does not have, and is only a hint.
    fn index(&mut self, slot: *mut pg_sys::TupleTableSlot) {
        let (estate, rri) = self.rri(false);
        unsafe {
            compat::insert_index_tuples(rri, slot, estate, None);
        }
    }

    fn close(self) {
        unsafe {
            // Locks stay until the transaction ends: releasing the index locks one by one as
            // ExecCloseIndices does cost more than letting the commit release them all, and an
            // append that follows in the same transaction finds them held.
            if let Some((estate, rri)) = self.indexes {
                for i in 0..(*rri).ri_NumIndices as usize {
                    pg_sys::index_close(*(*rri).ri_IndexRelationDescs.add(i), pg_sys::NoLock as i32);
                }
                pg_sys::FreeExecutorState(estate);
            }
            pg_sys::table_close(self.rel, pg_sys::NoLock as i32);
        }
    }

    /// A heap tuple of the table from values of the given columns (the others NULL).
    fn form(&self, cols: &[usize], row: &[Option<Datum>]) -> pg_sys::HeapTuple {
        let natts = unsafe { (*self.desc()).natts as usize };
        let (mut values, mut nulls) = (vec![Datum::from(0); natts], vec![true; natts]);
        self.form_into(cols, row, &mut values, &mut nulls)
    }

    /// `form` with the caller's buffers, for many rows.
    fn form_into(&self, cols: &[usize], row: &[Option<Datum>], values: &mut [Datum], nulls: &mut [bool]) -> pg_sys::HeapTuple {
        for (k, &c) in cols.iter().enumerate() {
            values[c] = row[k].unwrap_or(Datum::from(0));
            nulls[c] = row[k].is_none();
        }
        unsafe { pg_sys::heap_form_tuple(self.desc(), values.as_mut_ptr(), nulls.as_mut_ptr()) }
    }
}

/// Writes the events (values in `EVENT_COLUMNS` order) with one multi-row heap insert, then their
/// index entries, checking uniqueness as an INSERT would; their command's foreign key is checked
/// first (`commands::check_for_event`). None: the table is not the store's, nothing was written.
pub fn insert_events(rows: &[EventValues], command_id: Option<Datum>) -> Option<()> {
    let (mut t, shape) = Table::open(c"events", &EVENT_COLUMNS, pg_sys::ACL_INSERT)?;
    if let Some(c) = command_id {
        crate::commands::check_for_event(c);
    }
    unsafe {
        let ops = std::ptr::addr_of!(pg_sys::TTSOpsHeapTuple);
        let natts = (*t.desc()).natts as usize;
        let (mut values, mut nulls) = (vec![Datum::from(0); natts], vec![true; natts]);
        let mut slots: Vec<*mut pg_sys::TupleTableSlot> = Vec::with_capacity(rows.len());
        for row in rows {
            let slot = pg_sys::MakeSingleTupleTableSlot(t.desc(), ops);
            pg_sys::ExecStoreHeapTuple(t.form_into(&shape.cols, row, &mut values, &mut nulls), slot, true);
            slots.push(slot);
        }
        let cid = pg_sys::GetCurrentCommandId(true);
        pg_sys::heap_multi_insert(t.rel, slots.as_mut_ptr(), slots.len() as i32, cid, 0, std::ptr::null_mut());
        for &slot in &slots {
            t.index(slot);
            pg_sys::ExecDropSingleTupleTableSlot(slot);
        }
    }
    t.close();
    Some(())
}

/// What became of a stream's row.
pub enum Bumped {
    /// The version moved by `delta` (or the stream was created with it): new version, stream type,
    /// and whether the stream had been deleted (soft) and was reopened by this append.
    Done(i64, String, bool),
    /// No such stream, and none was created (`create` was None).
    Missing,
}

/// Adds `delta` to a stream's version, waiting for the row as an UPDATE would. `key` is the
/// stream id as text. When the stream does not exist and `create` gives its type, it is created
/// with version `delta` as INSERT ... ON CONFLICT would. None when the table is not the store's
/// and nothing was written. `expect_new` (the caller's expected version is 0): try the creation
/// first, without looking the stream up; if it exists after all, the speculative insertion is
/// taken back and the row is looked up and bumped as usual.
pub fn bump_stream(stream_id: Datum, key: &str, delta: i64, create: Option<Datum>, expect_new: bool) -> Option<Bumped> {
    let (mut t, shape) = Table::open(c"streams", &STREAM_COLUMNS, pg_sys::ACL_SELECT | pg_sys::ACL_UPDATE | pg_sys::ACL_INSERT)?;
    let [id_col, type_col, version_col, _, _, state_col, _] = shape.cols[..] else { unreachable!() };
    let result = unsafe {
        let slot = pg_sys::table_slot_create(t.rel, std::ptr::null_mut());
        let mut cached = STREAM_TIDS.with(|c| c.borrow().get(key.as_bytes()).copied());
        let mut creating = false;
        let mut expect_new = expect_new && create.is_some();
        let result = loop {
            // As SPI does for each writing statement: see our own earlier writes, and in READ
            // COMMITTED whatever committed while we waited.
            pg_sys::CommandCounterIncrement();
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            let found = match cached.take() {
                Some(tid) if fetch_stream(&t, tid, id_col, key, slot) => true,
                _ if std::mem::take(&mut expect_new) => false,
                _ => find_by_key(t.rel, shape.pkey, stream_id, slot),
            };
            if !found {
                let Some(stream_type) = create else {
                    pg_sys::PopActiveSnapshot();
                    break Bumped::Missing;
                };
                let created = create_stream(&mut t, &shape, [Some(stream_id), Some(stream_type)], delta, creating);
                creating = true;
                pg_sys::PopActiveSnapshot();
                match created {
                    Some(tid) => {
                        remember_stream(key, tid);
                        let stream_type = <String as pgrx::FromDatum>::from_datum(stream_type, false).unwrap_or_default();
                        break Bumped::Done(delta, stream_type, false);
                    }
                    None => continue, // someone else created it meanwhile: bump theirs
                }
            }
            let mut isnull = false;
            let version = pg_sys::slot_getattr(slot, version_col as i32 + 1, &mut isnull).value() as i64 + delta;
            let stream_type = <String as pgrx::FromDatum>::from_datum(
                pg_sys::slot_getattr(slot, type_col as i32 + 1, &mut isnull),
                isnull,
            )
            .unwrap_or_default();
            let state = <String as pgrx::FromDatum>::from_datum(pg_sys::slot_getattr(slot, state_col as i32 + 1, &mut isnull), isnull)
                .unwrap_or_default();
            let reopened = match state.as_str() {
                "live" => false,
                "deleted" => true,
                other => {
                    pg_sys::PopActiveSnapshot();
                    crate::integrity::not_live(key, other)
                }
            };
            let old = (*(*slot).tts_ops).copy_heap_tuple.unwrap()(slot);
            let mut tid = (*slot).tts_tid;
            pg_sys::ExecClearTuple(slot);
            // the version, and a deleted stream's state back to live
            let mut cols = [version_col as i32 + 1, state_col as i32 + 1];
            let mut values = [Datum::from(version), live_datum()];
            let mut nulls = [false, false];
            let n = if reopened { 2 } else { 1 };
            let new = pg_sys::heap_modify_tuple_by_cols(old, t.desc(), n, cols.as_mut_ptr(), values.as_mut_ptr(), nulls.as_mut_ptr());
            let mut tmfd: pg_sys::TM_FailureData = std::mem::zeroed();
            let mut lockmode: pg_sys::LockTupleMode::Type = 0;
            let cid = pg_sys::GetCurrentCommandId(true);
            let res = compat::heap_update(t.rel, &mut tid, new, cid, &mut tmfd, &mut lockmode);
            pg_sys::PopActiveSnapshot();
            match res {
                pg_sys::TM_Result::TM_Ok => {
                    if (*(*new).t_data).t_infomask2 as u32 & pg_sys::HEAP_ONLY_TUPLE == 0 {
                        // Not a HOT update: the new row version needs its own index entries.
                        let heap_slot = pg_sys::MakeSingleTupleTableSlot(t.desc(), std::ptr::addr_of!(pg_sys::TTSOpsHeapTuple));
                        pg_sys::ExecStoreHeapTuple(new, heap_slot, false);
                        t.index(heap_slot);
                        pg_sys::ExecDropSingleTupleTableSlot(heap_slot);
                    }
                    remember_stream(key, (*new).t_self);
                    break Bumped::Done(version, stream_type, reopened);
                }
                // Another transaction changed the row and has committed by now: read it again.
                pg_sys::TM_Result::TM_Updated if pg_sys::XactIsoLevel < pg_sys::XACT_REPEATABLE_READ as i32 => continue,
                pg_sys::TM_Result::TM_Updated | pg_sys::TM_Result::TM_Deleted => serialization_failure(),
                other => errors::raise(
                    Code::ERRCODE_INTERNAL_ERROR,
                    format!("unexpected result {other} updating the stream's row"),
                ),
            }
        };
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        result
    };
    t.close();
    Some(result)
}

/// The text 'live', made once per backend (in TopMemoryContext).
fn live_datum() -> Datum {
    thread_local! {
        static LIVE: Cell<Option<Datum>> = const { Cell::new(None) };
    }
    LIVE.get().unwrap_or_else(|| {
        let d = unsafe {
            let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
            let d = pgrx::IntoDatum::into_datum("live").unwrap();
            pg_sys::MemoryContextSwitchTo(old);
            d
        };
        LIVE.set(Some(d));
        d
    })
}

fn serialization_failure() -> ! {
    errors::raise(Code::ERRCODE_T_R_SERIALIZATION_FAILURE, "could not serialize access due to concurrent update".into())
}

/// Inserts a new stream row (id, type, version `delta`, the type's snapshot threshold, created
/// now) as INSERT ... ON CONFLICT would. The new row's TID, or None when the stream exists now
/// (the caller looks it up again).
unsafe fn create_stream(t: &mut Table, shape: &Shape, id_and_type: [Option<Datum>; 2], delta: i64, precheck: bool) -> Option<pg_sys::ItemPointerData> {
    let threshold = snapshot_threshold(id_and_type[1].unwrap());
    let created_at = Datum::from(pg_sys::GetCurrentTransactionStartTimestamp());
    let row = [id_and_type[0], id_and_type[1], Some(Datum::from(delta)), threshold, Some(created_at), Some(live_datum()), Some(Datum::from(0i64))];
    t.insert_unless_conflict(&shape.cols, &row, precheck)
}

impl Table {
    /// Inserts a row the way INSERT ... ON CONFLICT does: look for a conflicting key first
    /// (waiting for an inserter still in progress), insert speculatively, and take the insertion
    /// back if another transaction's row with the same key got in meanwhile. The new row's TID, or
    /// None when a row with the key exists; in REPEATABLE READ and above a row the transaction
    /// cannot see is a serialization failure, as for ON CONFLICT.
    ///
    /// `precheck` false skips the first step when the caller has just looked for the key with a
    /// fresh snapshot and found nothing: a conflict is rare then, and still caught by the
    /// speculative insertion; the caller checks first on the next attempt, which also waits for
    /// an inserter still in progress.
    unsafe fn insert_unless_conflict(&mut self, cols: &[usize], row: &[Option<Datum>], precheck: bool) -> Option<pg_sys::ItemPointerData> {
        let slot = pg_sys::MakeSingleTupleTableSlot(self.desc(), std::ptr::addr_of!(pg_sys::TTSOpsHeapTuple));
        pg_sys::ExecStoreHeapTuple(self.form(cols, row), slot, true);
        let (estate, rri) = self.rri(true);
        let mut conflict: pg_sys::ItemPointerData = std::mem::zeroed();
        let inserted = if precheck && !compat::check_index_constraints(rri, slot, estate, &mut conflict) {
            if pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32 {
                let mut tuple: pg_sys::HeapTupleData = std::mem::zeroed();
                tuple.t_self = conflict;
                let mut buffer: pg_sys::Buffer = pg_sys::InvalidBuffer as pg_sys::Buffer;
                let visible = compat::heap_fetch(self.rel, pg_sys::GetActiveSnapshot(), &mut tuple, &mut buffer);
                if buffer != pg_sys::InvalidBuffer as pg_sys::Buffer {
                    pg_sys::ReleaseBuffer(buffer);
                }
                if !visible {
                    serialization_failure();
                }
            }
            None
        } else {
            let xid = pg_sys::GetCurrentTransactionId();
            let token = pg_sys::SpeculativeInsertionLockAcquire(xid);
            let cid = pg_sys::GetCurrentCommandId(true);
            pg_sys::table_tuple_insert_speculative(self.rel, slot, cid, 0, std::ptr::null_mut(), token);
            let mut spec_conflict = false;
            compat::insert_index_tuples(rri, slot, estate, Some(&mut spec_conflict));
            pg_sys::table_tuple_complete_speculative(self.rel, slot, token, !spec_conflict);
            pg_sys::SpeculativeInsertionLockRelease(xid);
            (!spec_conflict).then(|| (*slot).tts_tid)
        };
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        inserted
    }

    /// Inserts a row whose keys cannot be taken (a generated id): a unique violation is an error.
    unsafe fn insert(&mut self, cols: &[usize], row: &[Option<Datum>]) {
        let slot = pg_sys::MakeSingleTupleTableSlot(self.desc(), std::ptr::addr_of!(pg_sys::TTSOpsHeapTuple));
        pg_sys::ExecStoreHeapTuple(self.form(cols, row), slot, true);
        let cid = pg_sys::GetCurrentCommandId(true);
        pg_sys::table_tuple_insert(self.rel, slot, cid, 0, std::ptr::null_mut());
        self.index(slot);
        pg_sys::ExecDropSingleTupleTableSlot(slot);
    }
}

/// The commands columns `insert_command` takes, in this order.
pub const COMMAND_COLUMNS: [&CStr; 9] = [
    c"command_id",
    c"command_type",
    c"payload",
    c"stream_id",
    c"user_id",
    c"caused_by_stream_id",
    c"caused_by_sequence",
    c"correlation_id",
    c"created_at",
];

/// Writes a command row (`row` gives the values in `COMMAND_COLUMNS` order, checked, with the
/// correlation derived and the causing event locked: it runs once the table is known to be the
/// store's). `given_id`: the caller chose the id, so it may exist
/// already (a retry): then nothing is written and the result is Some(false). None: the table is
/// not the store's.
pub fn insert_command(given_id: bool, row: impl FnOnce() -> [Option<Datum>; 9]) -> Option<bool> {
    let (mut t, shape) = Table::open(c"commands", &COMMAND_COLUMNS, pg_sys::ACL_INSERT)?;
    let row = &row();
    let inserted = unsafe {
        if given_id {
            t.insert_unless_conflict(&shape.cols, row, true).is_some()
        } else {
            t.insert(&shape.cols, row);
            true
        }
    };
    t.close();
    Some(inserted)
}

/// The snapshot threshold new streams of a type get (what the streams trigger looks up for a row
/// inserted with SQL), read through stream_types' primary key. The table must be the store's:
/// otherwise the SQL statement does it.
unsafe fn snapshot_threshold(stream_type: Datum) -> Option<Datum> {
    let relid = crate::integrity::store_relid(c"stream_types")
        .unwrap_or_else(|| errors::raise(Code::ERRCODE_UNDEFINED_TABLE, "eventstore.stream_types is missing".into()));
    let rel = pg_sys::table_open(relid, pg_sys::AccessShareLock as i32);
    let Some(shape) = shape_of(rel, c"stream_types", &[c"snapshot_threshold"]) else {
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        let spi = Spi::connect();
        let rows = spi.run(&crate::integrity::TYPE_THRESHOLD, &[Some(stream_type)], true);
        let t = if rows.len() == 1 { rows.datum(0, 1) } else { None };
        spi.finish();
        return t;
    };
    // A store that never set a threshold has an empty stream_types: no index scan then.
    if pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM) == 0 {
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        return None;
    }
    let slot = pg_sys::table_slot_create(rel, std::ptr::null_mut());
    let threshold = if find_by_key(rel, shape.pkey, stream_type, slot) {
        let mut isnull = false;
        let d = pg_sys::slot_getattr(slot, shape.cols[0] as i32 + 1, &mut isnull);
        (!isnull).then_some(d)
    } else {
        None
    };
    pg_sys::ExecDropSingleTupleTableSlot(slot);
    pg_sys::table_close(rel, pg_sys::NoLock as i32);
    threshold
}

/// Finds a row through a single-column text primary key and puts the version the active snapshot
/// sees into `slot`.
unsafe fn find_by_key(rel: pg_sys::Relation, pkey: Oid, key: Datum, slot: *mut pg_sys::TupleTableSlot) -> bool {
    let index = pg_sys::index_open(pkey, pg_sys::AccessShareLock as i32);
    let mut skey: pg_sys::ScanKeyData = std::mem::zeroed();
    pg_sys::ScanKeyEntryInitialize(
        &mut skey,
        0,
        1,
        pg_sys::BTEqualStrategyNumber as u16,
        pg_sys::InvalidOid,
        *(*index).rd_indcollation,
        pg_sys::Oid::from(pg_sys::F_TEXTEQ),
        key,
    );
    let scan = compat::index_beginscan(rel, index, pg_sys::GetActiveSnapshot(), 1);
    pg_sys::index_rescan(scan, &mut skey, 1, std::ptr::null_mut(), 0);
    let found = pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot);
    // The slot keeps its own pin on the buffer after the scan ends.
    pg_sys::index_endscan(scan);
    pg_sys::index_close(index, pg_sys::NoLock as i32);
    found
}

/// The row version at `tid`, if the active snapshot sees it there and it is this stream's: the
/// version this backend wrote last time, found without the index and without walking the HOT
/// chain from its root (which grows between prunings: with 8 appending sessions, finding the row
/// through the index was 7% of a single append's instructions). A stale TID (someone else has
/// updated the row since, VACUUM has moved things) finds nothing here or a row version that
/// heap_update then reports as updated, and the caller goes through the index.
unsafe fn fetch_stream(t: &Table, tid: pg_sys::ItemPointerData, id_col: usize, key: &str, slot: *mut pg_sys::TupleTableSlot) -> bool {
    let block = pgrx::itemptr::item_pointer_get_block_number(&tid);
    // VACUUM may have cut off the page since; reading past the end would raise.
    if block >= pg_sys::RelationGetNumberOfBlocksInFork(t.rel, pg_sys::ForkNumber::MAIN_FORKNUM) {
        return false;
    }
    let mut tuple: pg_sys::HeapTupleData = std::mem::zeroed();
    tuple.t_self = tid;
    let mut buffer: pg_sys::Buffer = pg_sys::InvalidBuffer as pg_sys::Buffer;
    if !compat::heap_fetch(t.rel, pg_sys::GetActiveSnapshot(), &mut tuple, &mut buffer) {
        return false;
    }
    pg_sys::ExecStorePinnedBufferHeapTuple(&mut tuple, slot, buffer);
    // The slot points at `tuple`, which lives on this stack frame: give it its own copy.
    pg_sys::ExecMaterializeSlot(slot);
    let mut isnull = false;
    let id = pg_sys::slot_getattr(slot, id_col as i32 + 1, &mut isnull);
    let same = !isnull && {
        let v = pg_sys::pg_detoast_datum_packed(id.cast_mut_ptr());
        let bytes = std::slice::from_raw_parts(pgrx::varlena::vardata_any(v) as *const u8, pgrx::varlena::varsize_any_exhdr(v));
        bytes == key.as_bytes()
    };
    if !same {
        pg_sys::ExecClearTuple(slot);
    }
    same
}

pub(crate) fn remember_stream(key: &str, tid: pg_sys::ItemPointerData) {
    STREAM_TIDS.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= MAX_STREAM_TIDS && !c.contains_key(key.as_bytes()) {
            c.clear();
        }
        c.insert(key.as_bytes().to_vec(), tid);
    });
}

#[cfg(any(test, feature = "pg_test"))]
pub(crate) fn remembered_stream(key: &str) -> Option<pg_sys::ItemPointerData> {
    STREAM_TIDS.with(|c| c.borrow().get(key.as_bytes()).copied())
}
