//! What differs between the PostgreSQL majors the store builds for (14 to 18), in one place: the
//! server functions whose arguments or names changed. Everything else calls them through here.

use pgrx::pg_sys;

/// The `i`th attribute of a tuple descriptor (from 18 on the attributes follow a compact array).
pub unsafe fn attribute(desc: pg_sys::TupleDesc, i: usize) -> *const pg_sys::FormData_pg_attribute {
    #[cfg(not(feature = "pg18"))]
    {
        (*desc).attrs.as_ptr().add(i)
    }
    #[cfg(feature = "pg18")]
    {
        pg_sys::TupleDescAttr(desc, i as i32)
    }
}

/// The table's primary key index (only an immediate one: the store's are).
pub unsafe fn primary_key_index(rel: pg_sys::Relation) -> pg_sys::Oid {
    #[cfg(not(feature = "pg18"))]
    {
        pg_sys::RelationGetPrimaryKeyIndex(rel)
    }
    #[cfg(feature = "pg18")]
    {
        pg_sys::RelationGetPrimaryKeyIndex(rel, false)
    }
}

/// Inserts the index entries of the tuple in `slot` into every index of the result relation;
/// with `spec_conflict`, a speculative insertion's (no error on a duplicate, reported there).
pub unsafe fn insert_index_tuples(
    rri: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    estate: *mut pg_sys::EState,
    spec_conflict: Option<&mut bool>,
) {
    let no_dup_err = spec_conflict.is_some();
    let conflict = spec_conflict.map_or(std::ptr::null_mut(), |c| c as *mut bool);
    #[cfg(any(feature = "pg14", feature = "pg15"))]
    pg_sys::ExecInsertIndexTuples(rri, slot, estate, false, no_dup_err, conflict, std::ptr::null_mut());
    #[cfg(not(any(feature = "pg14", feature = "pg15")))]
    pg_sys::ExecInsertIndexTuples(rri, slot, estate, false, no_dup_err, conflict, std::ptr::null_mut(), false);
}

/// heap_update, waiting for a concurrent updater. Whether the new version is heap-only is read
/// from the tuple afterwards (from 16 on the server also says which indexes need entries; the
/// store's tables have no summarizing index, so that is all of them or none).
pub unsafe fn heap_update(
    rel: pg_sys::Relation,
    tid: pg_sys::ItemPointer,
    new: pg_sys::HeapTuple,
    cid: pg_sys::CommandId,
    tmfd: *mut pg_sys::TM_FailureData,
    lockmode: *mut pg_sys::LockTupleMode::Type,
) -> pg_sys::TM_Result::Type {
    #[cfg(any(feature = "pg14", feature = "pg15"))]
    {
        pg_sys::heap_update(rel, tid, new, cid, std::ptr::null_mut(), true, tmfd, lockmode)
    }
    #[cfg(not(any(feature = "pg14", feature = "pg15")))]
    {
        let mut update_indexes: pg_sys::TU_UpdateIndexes::Type = 0;
        pg_sys::heap_update(rel, tid, new, cid, std::ptr::null_mut(), true, tmfd, lockmode, &mut update_indexes)
    }
}

/// An index scan with `nkeys` keys in the given snapshot.
pub unsafe fn index_beginscan(
    rel: pg_sys::Relation,
    index: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
    nkeys: i32,
) -> pg_sys::IndexScanDesc {
    #[cfg(not(feature = "pg18"))]
    {
        pg_sys::index_beginscan(rel, index, snapshot, nkeys, 0)
    }
    #[cfg(feature = "pg18")]
    {
        pg_sys::index_beginscan(rel, index, snapshot, std::ptr::null_mut(), nkeys, 0)
    }
}

/// The status of the `i`th backend (1-based) in this backend's snapshot of the status table.
pub unsafe fn local_backend_status(i: i32) -> *mut pg_sys::LocalPgBackendStatus {
    #[cfg(any(feature = "pg14", feature = "pg15"))]
    {
        pg_sys::pgstat_fetch_stat_local_beentry(i)
    }
    #[cfg(not(any(feature = "pg14", feature = "pg15")))]
    {
        pg_sys::pgstat_get_local_beentry_by_index(i)
    }
}

/// Whether the tuple in `slot` would conflict with none of the unique indexes (a speculative
/// insertion's pre-check); `conflict` gets the conflicting tuple's TID.
pub unsafe fn check_index_constraints(
    rri: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    estate: *mut pg_sys::EState,
    conflict: pg_sys::ItemPointer,
) -> bool {
    #[cfg(not(feature = "pg18"))]
    {
        pg_sys::ExecCheckIndexConstraints(rri, slot, estate, conflict, std::ptr::null_mut())
    }
    #[cfg(feature = "pg18")]
    {
        pg_sys::ExecCheckIndexConstraints(rri, slot, estate, conflict, std::ptr::null_mut(), std::ptr::null_mut())
    }
}

/// The tuple at `tuple.t_self` if the snapshot sees it, its buffer pinned in `buffer` (released
/// when it is not seen, as 14 always does).
pub unsafe fn heap_fetch(
    rel: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
    tuple: pg_sys::HeapTuple,
    buffer: *mut pg_sys::Buffer,
) -> bool {
    #[cfg(feature = "pg14")]
    {
        pg_sys::heap_fetch(rel, snapshot, tuple, buffer)
    }
    #[cfg(not(feature = "pg14"))]
    {
        pg_sys::heap_fetch(rel, snapshot, tuple, buffer, false)
    }
}

/// Sets a set-returning function up to return a tuplestore of its declared row type
/// (InitMaterializedSRF from 15 on; 14 has no helper, so its steps are spelled out).
pub unsafe fn init_materialized_srf(fcinfo: pg_sys::FunctionCallInfo) {
    #[cfg(not(feature = "pg14"))]
    {
        pg_sys::InitMaterializedSRF(fcinfo, 0)
    }
    #[cfg(feature = "pg14")]
    {
        use crate::errors::{self, Code};
        let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        if rsinfo.is_null() || (*rsinfo).type_ != pg_sys::NodeTag::T_ReturnSetInfo {
            errors::raise(Code::ERRCODE_FEATURE_NOT_SUPPORTED, "set-valued function called in context that cannot accept a set".into());
        }
        if (*rsinfo).allowedModes & pg_sys::SetFunctionReturnMode::SFRM_Materialize as i32 == 0 {
            errors::raise(Code::ERRCODE_FEATURE_NOT_SUPPORTED, "materialize mode required, but it is not allowed in this context".into());
        }
        let old = pg_sys::CurrentMemoryContext;
        pg_sys::CurrentMemoryContext = (*(*rsinfo).econtext).ecxt_per_query_memory;
        let mut desc: pg_sys::TupleDesc = std::ptr::null_mut();
        if pg_sys::get_call_result_type(fcinfo, std::ptr::null_mut(), &mut desc) != pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE {
            errors::raise(Code::ERRCODE_DATATYPE_MISMATCH, "return type must be a row type".into());
        }
        let random = (*rsinfo).allowedModes & pg_sys::SetFunctionReturnMode::SFRM_Materialize_Random as i32 != 0;
        (*rsinfo).returnMode = pg_sys::SetFunctionReturnMode::SFRM_Materialize;
        (*rsinfo).setResult = pg_sys::tuplestore_begin_heap(random, false, pg_sys::work_mem);
        (*rsinfo).setDesc = desc;
        pg_sys::CurrentMemoryContext = old;
    }
}
