//! The store's own writes, done the way COPY does them: straight into the heap and its indexes,
//! without planning and starting an executor for each statement. Profiles of append_event showed
//! the two SPI statements it used (bump the stream's version, insert the event) at about 40% of its
//! CPU, most of it executor start-up, the streams trigger's row lock and the after-trigger queue;
//! the heap and index work itself was under a third of that.
//!
//! Only the store's functions come here, after they have checked everything the tables' triggers
//! would check. Each write first looks at its table: if it has anything the store did not put there
//! (another enabled trigger, a CHECK constraint, another column, row-level security, a deferrable
//! index) it writes nothing and returns `None`, and the caller runs the SQL statement instead, so a
//! user's addition to the tables is never bypassed.

use crate::errors::{self, Code};
use pgrx::pg_guard;
use pgrx::pg_sys::{self, Datum, Oid};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;
use std::rc::Rc;

/// The events columns the store writes, in the order `insert_events` takes their values.
pub const EVENT_COLUMNS: [(&CStr, Oid); 12] = [
    (c"stream_id", pg_sys::TEXTOID),
    (c"sequence", pg_sys::INT8OID),
    (c"event_id", pg_sys::UUIDOID),
    (c"stream_type", pg_sys::TEXTOID),
    (c"event_type", pg_sys::TEXTOID),
    (c"event_version", pg_sys::INT4OID),
    (c"payload", pg_sys::JSONBOID),
    (c"metadata", pg_sys::JSONBOID),
    (c"command_id", pg_sys::UUIDOID),
    (c"global_position", pg_sys::INT8OID),
    (c"horizon_xid", pg_sys::XID8OID),
    (c"created_at", pg_sys::TIMESTAMPTZOID),
];

pub type EventValues = [Option<Datum>; 12];

/// What a store table's definition allows, worked out once per backend: the positions of the
/// columns the direct path writes, or None when the table is not plain (then the store uses SQL),
/// and for streams its primary key. Any relcache invalidation of the table forgets it (a new
/// trigger, column, constraint, index or policy, a rewrite all send one), and so do invalidations
/// of everything (`forget`). Working this out on every append was about 5% of a single append's
/// instructions (bench/instructions.sh).
struct Shape {
    cols: Option<Vec<usize>>,
    pkey: Oid,
}

thread_local! {
    static SHAPES: RefCell<HashMap<Oid, Rc<Shape>>> = RefCell::new(HashMap::new());
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

pub fn init() {
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget), Datum::from(0)) };
}

/// A store table opened for writing; the executor state for maintaining its indexes is made only
/// when index entries are written (a HOT update of a stream row writes none).
struct Table {
    rel: pg_sys::Relation,
    indexes: Option<(*mut pg_sys::EState, *mut pg_sys::ResultRelInfo)>,
}

impl Table {
    /// Opens the table, with its Shape; `shape` works that out when none is cached.
    fn open(name: &'static CStr, shape: impl FnOnce(&mut Table) -> Shape) -> (Table, Rc<Shape>) {
        unsafe {
            if pg_sys::XactReadOnly {
                // What the executor says for an INSERT or UPDATE in a read-only transaction.
                pg_sys::PreventCommandIfReadOnly(c"append".as_ptr());
            }
            let relid = crate::integrity::store_relid(name).unwrap_or_else(|| {
                errors::raise(
                    Code::ERRCODE_UNDEFINED_TABLE,
                    format!("eventstore.{} is missing", name.to_string_lossy()),
                )
            });
            // Taking the lock processes pending invalidations, so a cached shape read after it is current.
            let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as i32);
            let mut t = Table { rel, indexes: None };
            let cached = SHAPES.with(|s| s.borrow().get(&relid).cloned());
            let shape = cached.unwrap_or_else(|| {
                let built = Rc::new(shape(&mut t));
                SHAPES.with(|s| s.borrow_mut().insert(relid, built.clone()));
                built
            });
            (t, shape)
        }
    }

    fn desc(&self) -> pg_sys::TupleDesc {
        unsafe { (*self.rel).rd_att }
    }

    fn rri(&mut self) -> (*mut pg_sys::EState, *mut pg_sys::ResultRelInfo) {
        *self.indexes.get_or_insert_with(|| unsafe {
            let estate = pg_sys::CreateExecutorState();
            let rri = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>()) as *mut pg_sys::ResultRelInfo;
            (*rri).type_ = pg_sys::NodeTag::T_ResultRelInfo;
            pg_sys::InitResultRelInfo(rri, self.rel, 1, std::ptr::null_mut(), 0);
            pg_sys::ExecOpenIndices(rri, false);
            (estate, rri)
        })
    }

    /// Whether the current user may write the table as the SQL statement would (`needed` is an
    /// ACL mode). The store's functions run as the owner, so this is a safeguard for a library
    /// loaded under an older install whose functions are not SECURITY DEFINER: there the statement
    /// runs and raises the permission error. Not part of the Shape: it depends on the user.
    fn allowed(&self, needed: u32) -> bool {
        unsafe {
            pg_sys::pg_class_aclcheck((*self.rel).rd_id, pg_sys::GetUserId(), needed as pg_sys::AclMode)
                == pg_sys::AclResult::ACLCHECK_OK
        }
    }

    /// Nothing on the table that a plain write would have to honour beyond what the store checks:
    /// no enabled trigger for `event` except the store's own `ours` (and, for events, the foreign
    /// key check on command_id, which is a no-op for the NULL the direct path writes), no CHECK
    /// constraint, generated column or row-level security, heap storage, immediate indexes only.
    fn plain(&mut self, event: u32, ours: &CStr) -> bool {
        unsafe {
            let rel = self.rel;
            if (*(*rel).rd_rel).relam != pg_sys::HEAP_TABLE_AM_OID || (*(*rel).rd_rel).relrowsecurity {
                return false;
            }
            let constr = (*(*rel).rd_att).constr;
            if !constr.is_null() && ((*constr).num_check > 0 || (*constr).has_generated_stored) {
                return false;
            }
            let td = (*rel).trigdesc;
            if !td.is_null() {
                for i in 0..(*td).numtriggers as usize {
                    let t = &*(*td).triggers.add(i);
                    if t.tgenabled == b'D' as std::ffi::c_char || (t.tgtype as u32 & event) == 0 {
                        continue;
                    }
                    let name = CStr::from_ptr(t.tgname);
                    let fk_check = t.tgisinternal
                        && t.tgfoid == pg_sys::Oid::from(pg_sys::F_RI_FKEY_CHECK_INS)
                        && t.tgconstraint != pg_sys::InvalidOid
                        && CStr::from_ptr(pg_sys::get_constraint_name(t.tgconstraint)) == c"events_command_id_fkey";
                    if name != ours && !fk_check {
                        return false;
                    }
                }
            }
            let (_, rri) = self.rri();
            for i in 0..(*rri).ri_NumIndices as usize {
                let index = *(*rri).ri_IndexRelationDescs.add(i);
                if !(*(*index).rd_index).indimmediate {
                    return false;
                }
            }
            true
        }
    }

    /// The column named `name` if it is there with type `typ`.
    fn column(&self, name: &CStr, typ: Oid) -> Option<usize> {
        unsafe {
            let desc = self.desc();
            (0..(*desc).natts as usize).find(|&i| {
                let a = &*(*desc).attrs.as_ptr().add(i);
                !a.attisdropped && CStr::from_ptr(a.attname.data.as_ptr()) == name && a.atttypid == typ
            })
        }
    }

    fn live_columns(&self) -> usize {
        unsafe {
            let desc = self.desc();
            (0..(*desc).natts as usize).filter(|&i| !(*(*desc).attrs.as_ptr().add(i)).attisdropped).count()
        }
    }

    /// Adds the index entries of a tuple just written to the heap (`slot` holds it, with its TID).
    /// Also after a non-HOT update, as an insert: the executor's "unchanged by the update" hint
    /// to btree needs a range table this path does not have, and is only a hint.
    fn index(&mut self, slot: *mut pg_sys::TupleTableSlot) {
        let (estate, rri) = self.rri();
        unsafe {
            pg_sys::ExecInsertIndexTuples(rri, slot, estate, false, false, std::ptr::null_mut(), std::ptr::null_mut());
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
}

/// Writes the events (values in `EVENT_COLUMNS` order, command_id NULL) with one multi-row heap
/// insert, then their index entries, checking uniqueness as an INSERT would. None: the table is
/// not plain, nothing was written.
pub fn insert_events(rows: &[EventValues]) -> Option<()> {
    let (mut t, shape) = Table::open(c"events", |t| {
        let cols: Option<Vec<usize>> = EVENT_COLUMNS.iter().map(|(n, typ)| t.column(n, *typ)).collect();
        let cols = cols.filter(|c| t.live_columns() == c.len() && t.plain(pg_sys::TRIGGER_TYPE_INSERT, c"events_guard"));
        Shape { cols, pkey: pg_sys::InvalidOid }
    });
    let Some(cols) = shape.cols.as_ref().filter(|_| t.allowed(pg_sys::ACL_INSERT)) else {
        t.close();
        return None;
    };
    unsafe {
        let desc = t.desc();
        let natts = (*desc).natts as usize;
        let ops = std::ptr::addr_of!(pg_sys::TTSOpsHeapTuple);
        let mut slots: Vec<*mut pg_sys::TupleTableSlot> = Vec::with_capacity(rows.len());
        let mut values = vec![Datum::from(0); natts];
        let mut nulls = vec![true; natts];
        for row in rows {
            for (k, &c) in cols.iter().enumerate() {
                values[c] = row[k].unwrap_or(Datum::from(0));
                nulls[c] = row[k].is_none();
            }
            let tuple = pg_sys::heap_form_tuple(desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            let slot = pg_sys::MakeSingleTupleTableSlot(desc, ops);
            pg_sys::ExecStoreHeapTuple(tuple, slot, true);
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

/// Adds `delta` to a stream's version, waiting for the row as an UPDATE would. `key` is the
/// stream id as text. Returns the new version and the stream's type; Some(None) when the stream
/// does not exist; None when the table is not plain and nothing was written.
pub fn bump_stream(stream_id: Datum, key: &str, delta: i64) -> Option<Option<(i64, String)>> {
    let (mut t, shape) = Table::open(c"streams", |t| {
        let cols = [
            t.column(c"stream_id", pg_sys::TEXTOID),
            t.column(c"version", pg_sys::INT8OID),
            t.column(c"stream_type", pg_sys::TEXTOID),
        ];
        let pkey = unsafe { pg_sys::RelationGetPrimaryKeyIndex(t.rel) };
        let cols: Option<Vec<usize>> = cols.into_iter().collect();
        let cols = cols.filter(|c| {
            pkey != pg_sys::InvalidOid && pkey_is(pkey, c[0]) && t.plain(pg_sys::TRIGGER_TYPE_UPDATE, c"streams_guard")
        });
        Shape { cols, pkey }
    });
    let Some(&[id_col, version_col, type_col]) =
        shape.cols.as_deref().filter(|_| t.allowed(pg_sys::ACL_SELECT | pg_sys::ACL_UPDATE))
    else {
        t.close();
        return None;
    };
    unsafe {
        let slot = pg_sys::table_slot_create(t.rel, std::ptr::null_mut());
        let mut cached = STREAM_TIDS.with(|c| c.borrow().get(key.as_bytes()).copied());
        let result = loop {
            // As SPI does for each writing statement: see our own earlier writes, and in READ
            // COMMITTED whatever committed while we waited.
            pg_sys::CommandCounterIncrement();
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            let found = match cached.take() {
                Some(tid) if fetch_stream(&t, tid, id_col, key, slot) => true,
                _ => find_stream(&t, shape.pkey, stream_id, slot),
            };
            if !found {
                pg_sys::PopActiveSnapshot();
                break None;
            }
            let mut isnull = false;
            let version = pg_sys::slot_getattr(slot, version_col as i32 + 1, &mut isnull).value() as i64 + delta;
            let stream_type = <String as pgrx::FromDatum>::from_datum(
                pg_sys::slot_getattr(slot, type_col as i32 + 1, &mut isnull),
                isnull,
            )
            .unwrap_or_default();
            let old = (*(*slot).tts_ops).copy_heap_tuple.unwrap()(slot);
            let mut tid = (*slot).tts_tid;
            pg_sys::ExecClearTuple(slot);
            let mut col = version_col as i32 + 1;
            let mut value = Datum::from(version);
            let mut null = false;
            let new = pg_sys::heap_modify_tuple_by_cols(old, t.desc(), 1, &mut col, &mut value, &mut null);
            let mut tmfd: pg_sys::TM_FailureData = std::mem::zeroed();
            let mut lockmode: pg_sys::LockTupleMode::Type = 0;
            let cid = pg_sys::GetCurrentCommandId(true);
            let res = pg_sys::heap_update(t.rel, &mut tid, new, cid, std::ptr::null_mut(), true, &mut tmfd, &mut lockmode);
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
                    break Some((version, stream_type));
                }
                // Another transaction changed the row and has committed by now: read it again.
                pg_sys::TM_Result::TM_Updated if pg_sys::XactIsoLevel < pg_sys::XACT_REPEATABLE_READ as i32 => continue,
                pg_sys::TM_Result::TM_Updated | pg_sys::TM_Result::TM_Deleted => errors::raise(
                    Code::ERRCODE_T_R_SERIALIZATION_FAILURE,
                    "could not serialize access due to concurrent update".into(),
                ),
                other => errors::raise(
                    Code::ERRCODE_INTERNAL_ERROR,
                    format!("unexpected result {other} updating the stream's row"),
                ),
            }
        };
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        t.close();
        Some(result)
    }
}

/// The index `pkey` is a btree on the single column `col`.
fn pkey_is(pkey: Oid, col: usize) -> bool {
    unsafe {
        let index = pg_sys::index_open(pkey, pg_sys::AccessShareLock as i32);
        let ix = (*index).rd_index;
        let ok = (*(*index).rd_rel).relam == pg_sys::BTREE_AM_OID
            && (*ix).indnatts == 1
            && (*ix).indkey.values.as_slice(1)[0] as usize == col + 1;
        pg_sys::index_close(index, pg_sys::NoLock as i32);
        ok
    }
}

/// Finds the stream's row through the primary key and puts the version the active snapshot sees
/// into `slot`.
unsafe fn find_stream(t: &Table, pkey: Oid, stream_id: Datum, slot: *mut pg_sys::TupleTableSlot) -> bool {
    let index = pg_sys::index_open(pkey, pg_sys::RowExclusiveLock as i32);
    let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
    pg_sys::ScanKeyEntryInitialize(
        &mut key,
        0,
        1,
        pg_sys::BTEqualStrategyNumber as u16,
        pg_sys::InvalidOid,
        *(*index).rd_indcollation,
        pg_sys::Oid::from(pg_sys::F_TEXTEQ),
        stream_id,
    );
    let scan = pg_sys::index_beginscan(t.rel, index, pg_sys::GetActiveSnapshot(), 1, 0);
    pg_sys::index_rescan(scan, &mut key, 1, std::ptr::null_mut(), 0);
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
    if !pg_sys::heap_fetch(t.rel, pg_sys::GetActiveSnapshot(), &mut tuple, &mut buffer, false) {
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
