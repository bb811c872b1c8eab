//! A thin layer over SPI: each statement is prepared once per backend and kept, parameters are
//! always bound (never spliced into SQL text), and set-returning functions stream the rows of a
//! prepared statement straight into their result tuplestore.

use crate::errors::{self, Code};
use pgrx::pg_sys::{self, Datum, Oid};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString};

/// A statement of the store: its SQL text and the types of its parameters.
pub struct Stmt {
    pub sql: &'static str,
    pub args: &'static [Oid],
}

thread_local! {
    static PLANS: RefCell<HashMap<usize, pg_sys::SPIPlanPtr>> = RefCell::new(HashMap::new());
}

fn plan(stmt: &'static Stmt) -> pg_sys::SPIPlanPtr {
    let key = stmt as *const Stmt as usize;
    if let Some(p) = PLANS.with(|m| m.borrow().get(&key).copied()) {
        return p;
    }
    let sql = CString::new(stmt.sql).expect("statement text has no NUL");
    unsafe {
        // Generic plans only: with the default plan_cache_mode Postgres re-plans a statement on
        // every call whenever its custom plans look cheaper than the generic one, which is always
        // the case for `global_position > $1 ... LIMIT $2` (a generic range is guessed at a third of
        // the table). read_all spent 70% of a call planning (92 against 27 µs per call).
        // Citus cannot distribute a forced generic plan with parameters (and one such plan, of
        // INSERT ... ON CONFLICT, crashes Citus 13.2): with Citus in the database the plan
        // cache chooses, and Citus prunes the custom plans to the shard that holds the stream.
        let options = if crate::distributed::citus_installed() { 0 } else { pg_sys::CURSOR_OPT_GENERIC_PLAN as i32 };
        let p = pg_sys::SPI_prepare_cursor(sql.as_ptr(), stmt.args.len() as i32, stmt.args.as_ptr() as *mut Oid, options);
        if p.is_null() {
            errors::raise(Code::ERRCODE_INTERNAL_ERROR, format!("SPI_prepare failed: {}", std::ptr::addr_of!(pg_sys::SPI_result).read()));
        }
        pg_sys::SPI_keepplan(p);
        PLANS.with(|m| m.borrow_mut().insert(key, p));
        p
    }
}

/// How many times the kept plans were planned for particular parameter values, and how many
/// plans were kept; for the test that every statement keeps one generic plan.
#[cfg(any(test, feature = "pg_test"))]
pub fn custom_plan_count() -> (i64, usize) {
    PLANS.with(|m| {
        let m = m.borrow();
        let mut custom = 0;
        for p in m.values() {
            unsafe {
                let sources = pgrx::PgList::<pg_sys::CachedPlanSource>::from_pg(pg_sys::SPI_plan_get_plan_sources(*p));
                for s in sources.iter_ptr() {
                    custom += (*s).num_custom_plans;
                }
            }
        }
        (custom, m.len())
    })
}

/// Sets a setting as a function's SET clause does: in a new GUC nest level, which
/// `end_nest_level` undoes, or the (sub)transaction's abort does.
pub(crate) fn set_in_nest_level(name: &CStr, value: &CStr) -> i32 {
    unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        level
    }
}

pub(crate) fn end_nest_level(level: i32) {
    unsafe { pg_sys::AtEOXact_GUC(true, level) }
}

/// An open SPI connection; `finish` must be called on the success path (on ERROR, Postgres'
/// transaction abort cleans up the SPI stack and the search_path setting).
///
/// While it is open, search_path is `pg_catalog, pg_temp`, whatever the caller has: every
/// statement of the store names its own tables with their schema, and no operator or function can
/// be hijacked by look-alikes earlier on the path. The store's functions are declared with that
/// setting, so inside them nothing needs doing; the trigger functions, which have no `SET` clause
/// (it would save and restore every setting once per row), set it here when a user's statement
/// fires them.
pub struct Spi {
    guc_level: Option<i32>,
}

/// The search_path every function of the store is declared with.
const SAFE_PATH: &CStr = c"pg_catalog, pg_temp";

impl Spi {
    pub fn connect() -> Spi {
        unsafe {
            pg_sys::SPI_connect();
            let current = pg_sys::namespace_search_path;
            let guc_level = if !current.is_null() && CStr::from_ptr(current) == SAFE_PATH {
                None
            } else {
                Some(set_in_nest_level(c"search_path", SAFE_PATH))
            };
            Spi { guc_level }
        }
    }

    pub fn finish(self) {
        if let Some(level) = self.guc_level {
            end_nest_level(level);
        }
        unsafe { pg_sys::SPI_finish() };
    }

    /// Runs a statement with the given parameters (None = NULL) and returns the rows it produced.
    /// `read_only` statements run in the caller's snapshot (STABLE functions); the others take a
    /// fresh one, which is what lets a writer see what committed while it waited for a row lock.
    pub fn run(&self, stmt: &'static Stmt, args: &[Option<Datum>], read_only: bool) -> Rows {
        self.exec(stmt, args, read_only, std::ptr::null_mut());
        unsafe { Rows { table: pg_sys::SPI_tuptable, n: pg_sys::SPI_processed as usize } }
    }

    fn exec(&self, stmt: &'static Stmt, args: &[Option<Datum>], read_only: bool, dest: *mut pg_sys::DestReceiver) {
        debug_assert_eq!(args.len(), stmt.args.len());
        unsafe {
            let params = pg_sys::makeParamList(args.len() as i32);
            (*params).numParams = args.len() as i32;
            let slots = (*params).params.as_mut_slice(args.len());
            for (i, a) in args.iter().enumerate() {
                slots[i] = pg_sys::ParamExternData {
                    value: a.unwrap_or(Datum::from(0)),
                    isnull: a.is_none(),
                    pflags: pg_sys::PARAM_FLAG_CONST as u16,
                    ptype: stmt.args[i],
                };
            }
            let opts = pg_sys::SPIExecuteOptions {
                // no list at all for no parameters: Citus 13.2 copies a list of none into NULL
                // (copyParamList) and then reads it (a crash in its adaptive executor)
                params: if args.is_empty() { std::ptr::null_mut() } else { params },
                read_only,
                allow_nonatomic: false,
                must_return_tuples: false,
                tcount: 0,
                dest,
                owner: std::ptr::null_mut(),
            };
            let rc = pg_sys::SPI_execute_plan_extended(plan(stmt), &opts);
            if rc < 0 {
                errors::raise(Code::ERRCODE_INTERNAL_ERROR, format!("SPI_execute failed: {rc}"));
            }
        }
    }
}

/// The rows a statement returned, valid until the connection finishes.
pub struct Rows {
    table: *mut pg_sys::SPITupleTable,
    n: usize,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn datum(&self, row: usize, col: i32) -> Option<Datum> {
        assert!(row < self.n);
        unsafe {
            let mut isnull = false;
            let tuple = *(*self.table).vals.add(row);
            let d = pg_sys::SPI_getbinval(tuple, (*self.table).tupdesc, col, &mut isnull);
            (!isnull).then_some(d)
        }
    }

    pub fn i64(&self, row: usize, col: i32) -> Option<i64> {
        self.datum(row, col).map(|d| d.value() as i64)
    }

    pub fn bool(&self, row: usize, col: i32) -> Option<bool> {
        self.datum(row, col).map(|d| d.value() != 0)
    }

    pub fn text(&self, row: usize, col: i32) -> Option<String> {
        self.datum(row, col).and_then(|d| unsafe { <String as pgrx::FromDatum>::from_datum(d, false) })
    }
}

#[repr(C)]
struct StoreDest {
    base: pg_sys::DestReceiver,
    store: *mut pg_sys::Tuplestorestate,
    /// The first column (an int8, a position) of the last row received from each node, in the
    /// order the rows came: one entry on one node, one per node for a distributed store's feed.
    last_by_node: Vec<(i64, i64)>,
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn store_receive(slot: *mut pg_sys::TupleTableSlot, dest: *mut pg_sys::DestReceiver) -> bool {
    let d = dest as *mut StoreDest;
    pg_sys::tuplestore_puttupleslot((*d).store, slot);
    pg_sys::slot_getsomeattrs(slot, 1);
    if !*(*slot).tts_isnull {
        let position = (*(*slot).tts_values).value() as i64;
        let node = crate::feed::node_of(position);
        match (*d).last_by_node.last_mut() {
            Some(last) if last.0 == node => last.1 = position,
            _ => (*d).last_by_node.push((node, position)),
        }
    }
    true
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn store_startup(_dest: *mut pg_sys::DestReceiver, _op: i32, _desc: pg_sys::TupleDesc) {}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn store_noop(_dest: *mut pg_sys::DestReceiver) {}

/// Body of a set-returning function: runs one prepared statement whose columns are exactly the
/// function's declared result columns and hands its rows to the caller in materialize mode.
pub fn return_rows(fcinfo: pg_sys::FunctionCallInfo, stmt: &'static Stmt, args: &[Option<Datum>]) -> Datum {
    let spi = Spi::connect();
    spi.return_rows(fcinfo, stmt, args, true);
    spi.finish();
    Datum::from(0)
}

/// A set-returning function's empty result.
pub fn return_nothing(fcinfo: pg_sys::FunctionCallInfo) -> Datum {
    unsafe { crate::compat::init_materialized_srf(fcinfo) };
    Datum::from(0)
}

/// A set-returning function's single row, from values in its declared column order.
pub fn return_row(fcinfo: pg_sys::FunctionCallInfo, values: &[Option<Datum>]) -> Datum {
    let mut datums: Vec<Datum> = values.iter().map(|v| v.unwrap_or(Datum::from(0))).collect();
    let mut nulls: Vec<bool> = values.iter().map(|v| v.is_none()).collect();
    unsafe {
        crate::compat::init_materialized_srf(fcinfo);
        let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        pg_sys::tuplestore_putvalues((*rsinfo).setResult, (*rsinfo).setDesc, datums.as_mut_ptr(), nulls.as_mut_ptr());
    }
    Datum::from(0)
}

/// A set-returning function's rows, from values in its declared column order.
pub fn return_many<const N: usize>(fcinfo: pg_sys::FunctionCallInfo, rows: &[[Option<Datum>; N]]) -> Datum {
    unsafe {
        crate::compat::init_materialized_srf(fcinfo);
        let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        for values in rows {
            let mut datums: Vec<Datum> = values.iter().map(|v| v.unwrap_or(Datum::from(0))).collect();
            let mut nulls: Vec<bool> = values.iter().map(|v| v.is_none()).collect();
            pg_sys::tuplestore_putvalues((*rsinfo).setResult, (*rsinfo).setDesc, datums.as_mut_ptr(), nulls.as_mut_ptr());
        }
    }
    Datum::from(0)
}

impl Spi {
    /// Streams a statement's rows into the calling set-returning function's result; returns the
    /// first column of the last row (the position a feed read reached).
    pub fn return_rows(
        &self,
        fcinfo: pg_sys::FunctionCallInfo,
        stmt: &'static Stmt,
        args: &[Option<Datum>],
        read_only: bool,
    ) -> Option<i64> {
        self.return_rows_by_node(fcinfo, stmt, args, read_only).last().map(|l| l.1)
    }

    /// The same for a feed whose rows come node by node (eventstore.read_all_nodes): the last
    /// position of each node that returned rows.
    pub fn return_rows_by_node(
        &self,
        fcinfo: pg_sys::FunctionCallInfo,
        stmt: &'static Stmt,
        args: &[Option<Datum>],
        read_only: bool,
    ) -> Vec<(i64, i64)> {
        unsafe {
            crate::compat::init_materialized_srf(fcinfo);
            let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
            let mut dest = StoreDest {
                base: pg_sys::DestReceiver {
                    receiveSlot: Some(store_receive),
                    rStartup: Some(store_startup),
                    rShutdown: Some(store_noop),
                    rDestroy: Some(store_noop),
                    mydest: pg_sys::CommandDest::DestTuplestore,
                },
                store: (*rsinfo).setResult,
                last_by_node: Vec::new(),
            };
            self.exec(stmt, args, read_only, &mut dest.base);
            dest.last_by_node
        }
    }
}

/// Runs `f` in a subtransaction; when it raises `code`, the subtransaction is rolled back and the
/// result is None (any other error propagates). For the rare statement that may lose a race it
/// cannot express with ON CONFLICT (a table with rules).
pub fn unless_error<R>(code: pgrx::PgSqlErrorCode, f: impl FnOnce() -> R) -> Option<R> {
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let f = std::panic::AssertUnwindSafe(f);
        let result = pgrx::PgTryBuilder::new(|| Some(f()))
            .catch_when(code, |_| None)
            .execute();
        match result {
            Some(_) => pg_sys::ReleaseCurrentSubTransaction(),
            None => pg_sys::RollbackAndReleaseCurrentSubTransaction(),
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        result
    }
}
