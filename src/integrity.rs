//! The triggers that keep the store's rules true for every writer, including clients that write
//! the tables directly. The store's own functions have already checked and locked everything by
//! the time they write, so they hand the trigger a one-shot grant for exactly the rows they are
//! about to write instead of having each row checked (and the stream row locked) a second time.

use crate::errors::{self, Code};
use crate::spi::{Spi, Stmt};
use pgrx::pg_sys::{self, Datum};
use pgrx::{FromDatum, IntoDatum};
use std::cell::RefCell;
use std::ffi::CString;

/// Rows the store's own append is about to write: events `first..=last` of one stream, and a
/// version bump of `delta` on that stream's row.
struct Grant {
    stream_id: String,
    next_sequence: i64,
    last_sequence: i64,
    delta: i64,
}

thread_local! {
    static GRANT: RefCell<Option<Grant>> = const { RefCell::new(None) };
}

/// Holds the grant while the store writes; dropping it (also while an ERROR unwinds) revokes it.
pub struct Granted(());

impl Drop for Granted {
    fn drop(&mut self) {
        GRANT.with(|g| g.borrow_mut().take());
    }
}

pub fn grant(stream_id: &str, first_sequence: i64, last_sequence: i64, delta: i64) -> Granted {
    GRANT.with(|g| {
        *g.borrow_mut() = Some(Grant {
            stream_id: stream_id.to_string(),
            next_sequence: first_sequence,
            last_sequence,
            delta,
        })
    });
    Granted(())
}

/// A bump of the stream's version by `delta`, granted to the events trigger's own UPDATE.
fn stream_bump_granted(stream_id: &str, old_version: i64, new_version: i64) -> bool {
    GRANT.with(|g| {
        g.borrow()
            .as_ref()
            .is_some_and(|g| g.stream_id == stream_id && new_version - old_version == g.delta)
    })
}

/// Consumes one granted event row if (stream_id, sequence) is the next one the grant covers.
pub(crate) fn event_granted(stream_id: &str, sequence: i64) -> bool {
    GRANT.with(|g| {
        let mut g = g.borrow_mut();
        match g.as_mut() {
            Some(g) if g.stream_id == stream_id && g.next_sequence == sequence && sequence <= g.last_sequence => {
                g.next_sequence += 1;
                true
            }
            _ => false,
        }
    })
}

/// The row a trigger was fired for, with access to its columns by name.
struct Row {
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
}

impl Row {
    fn col(&self, name: &str) -> i32 {
        let c = CString::new(name).unwrap();
        let n = unsafe { pg_sys::SPI_fnumber(self.desc, c.as_ptr()) };
        if n <= 0 {
            errors::raise(Code::ERRCODE_UNDEFINED_COLUMN, format!("column \"{name}\" is missing"));
        }
        n
    }

    /// A column that older schemas do not have: None when absent.
    fn get_if_present(&self, name: &str) -> Option<Datum> {
        let c = CString::new(name).unwrap();
        let n = unsafe { pg_sys::SPI_fnumber(self.desc, c.as_ptr()) };
        if n <= 0 {
            return None;
        }
        let mut isnull = false;
        let d = unsafe { pg_sys::SPI_getbinval(self.tuple, self.desc, n, &mut isnull) };
        (!isnull).then_some(d)
    }

    fn text_if_present(&self, name: &str) -> Option<String> {
        self.get_if_present(name).and_then(|d| unsafe { String::from_datum(d, false) })
    }

    fn get(&self, name: &str) -> Option<Datum> {
        let mut isnull = false;
        let d = unsafe { pg_sys::SPI_getbinval(self.tuple, self.desc, self.col(name), &mut isnull) };
        (!isnull).then_some(d)
    }

    fn text(&self, name: &str) -> Option<String> {
        self.get(name).and_then(|d| unsafe { String::from_datum(d, false) })
    }

    fn i64(&self, name: &str) -> Option<i64> {
        self.get(name).map(|d| d.value() as i64)
    }

    fn same_text(&self, other: &Row, name: &str) -> bool {
        self.text(name) == other.text(name)
    }

    /// A copy of the row with some columns replaced.
    fn with(&self, changes: &[(&str, Option<Datum>)]) -> pg_sys::HeapTuple {
        let cols: Vec<i32> = changes.iter().map(|(n, _)| self.col(n)).collect();
        let values: Vec<Datum> = changes.iter().map(|(_, v)| v.unwrap_or(Datum::from(0))).collect();
        let nulls: Vec<bool> = changes.iter().map(|(_, v)| v.is_none()).collect();
        unsafe {
            pg_sys::heap_modify_tuple_by_cols(
                self.tuple,
                self.desc,
                cols.len() as i32,
                cols.as_ptr() as *mut i32,
                values.as_ptr() as *mut Datum,
                nulls.as_ptr() as *mut bool,
            )
        }
    }
}

struct Fired {
    op: u32,
    table: String,
    old: Option<Row>,
    new: Option<Row>,
}

unsafe fn fired(fcinfo: pg_sys::FunctionCallInfo) -> Fired {
    let ctx = (*fcinfo).context;
    if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_TriggerData {
        errors::raise(Code::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED, "not called by a trigger".into());
    }
    let td = ctx as *mut pg_sys::TriggerData;
    let rel = (*td).tg_relation;
    let desc = (*rel).rd_att;
    let op = (*td).tg_event & pg_sys::TRIGGER_EVENT_OPMASK;
    let row = |t: pg_sys::HeapTuple| (!t.is_null()).then_some(Row { tuple: t, desc });
    let table = pgrx::name_data_to_str(&(*(*rel).rd_rel).relname).to_string();
    match op {
        pg_sys::TRIGGER_EVENT_INSERT => Fired { op, table, old: None, new: row((*td).tg_trigtuple) },
        pg_sys::TRIGGER_EVENT_UPDATE => Fired { op, table, old: row((*td).tg_trigtuple), new: row((*td).tg_newtuple) },
        _ => Fired { op, table, old: row((*td).tg_trigtuple), new: None },
    }
}

fn op_name(op: u32) -> &'static str {
    match op {
        pg_sys::TRIGGER_EVENT_INSERT => "INSERT",
        pg_sys::TRIGGER_EVENT_UPDATE => "UPDATE",
        pg_sys::TRIGGER_EVENT_DELETE => "DELETE",
        _ => "TRUNCATE",
    }
}

thread_local! {
    /// While a lifecycle function (lifecycle.rs) runs its statements: the stream whose rows they
    /// may update or delete (None: any row), past the append-only triggers, and on a distributed
    /// store the GUC nest level of its grant to the other nodes.
    static MAINTENANCE: RefCell<Option<(Option<String>, Option<i32>)>> = const { RefCell::new(None) };
}

/// Held by a lifecycle function while it changes rows of `stream_id` (None: rows of any stream);
/// dropping it (also while an ERROR unwinds) revokes it. On a distributed store `end` must be
/// called on the success path: it takes back the grant the other nodes hold.
pub struct Maintaining(());

impl Maintaining {
    pub fn end(self) {
        if let Some((_, Some(level))) = MAINTENANCE.with(|m| m.borrow().clone()) {
            crate::distributed::revoke_lifecycle(level);
        }
    }
}

impl Drop for Maintaining {
    fn drop(&mut self) {
        MAINTENANCE.with(|m| m.borrow_mut().take());
    }
}

/// `what`: the lifecycle function, for the error a distributed store gives on a worker.
pub fn maintain(what: &str, stream: Option<Datum>) -> Maintaining {
    let stream_id = stream.map(|d| unsafe { String::from_datum(d, false) }.unwrap_or_default());
    let level = crate::distributed::distributed().then(|| crate::distributed::grant_lifecycle(what, stream));
    MAINTENANCE.with(|m| *m.borrow_mut() = Some((stream_id, level)));
    Maintaining(())
}

fn maintenance_allows(row: Option<&Row>) -> bool {
    let here = MAINTENANCE.with(|m| match m.borrow().as_ref() {
        None => false,
        Some((None, _)) => true,
        Some((Some(stream), _)) => row.is_some_and(|r| r.text("stream_id").as_deref() == Some(stream.as_str())),
    });
    here || crate::distributed::lifecycle_granted(row.and_then(|r| r.get("stream_id")))
}

sql_function!(es_append_only, pg_finfo_es_append_only, append_only);

/// Events, commands, archived events and the audit log are a log: rows change or go only through
/// the lifecycle functions (deletion, truncation, archiving, erasure), never by a direct statement.
fn append_only(args: crate::fcall::Args) -> Datum {
    let f = unsafe { fired(args.0) };
    if f.op != pg_sys::TRIGGER_EVENT_TRUNCATE {
        let row = f.old.as_ref().or(f.new.as_ref());
        if maintenance_allows(row) {
            return Datum::from(f.new.as_ref().or(f.old.as_ref()).map_or(std::ptr::null_mut(), |r| r.tuple));
        }
    }
    let what = if f.table == "streams" {
        "streams are deleted with eventstore.delete_stream".to_string()
    } else {
        format!("eventstore.{} is append-only", f.table)
    };
    errors::raise_detail(
        Code::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!("{what}: {} is not allowed", op_name(f.op)),
        "Events and commands change or go only through the lifecycle functions (delete_stream, truncate_stream, archive_stream, erase_stream, redact_events).".into(),
    )
}

static BUMP_STREAM: Stmt = Stmt {
    sql: "UPDATE eventstore.streams SET version = version + 1 WHERE stream_id = $1 RETURNING version, stream_type",
    args: &[pg_sys::TEXTOID],
};

/// A stream that is not live cannot take events (a deleted one is reopened by an append function).
pub fn not_live(stream_id: &str, state: &str) -> ! {
    let (what, hint) = match state {
        "tombstone" => ("was deleted permanently", "Its id stays taken; delete_stream(..., hard => true, allow_reuse => true) frees it."),
        "archived" => ("is archived", "restore_stream brings it back."),
        _ => ("is deleted", "Append with append_event or append_events to reopen it."),
    };
    errors::raise_detail(
        Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("stream \"{stream_id}\" {what}"),
        hint.into(),
    )
}

sql_function!(es_events_guard, pg_finfo_es_events_guard, events_guard);

/// BEFORE INSERT on events. A granted row (from append_event/append_events) is already checked;
/// any other insert is checked here as an append with expected version = sequence - 1.
fn events_guard(args: crate::fcall::Args) -> Datum {
    let f = unsafe { fired(args.0) };
    let new = f.new.expect("INSERT has a new row");
    let stream_id = new.text("stream_id").unwrap_or_else(|| {
        errors::raise(Code::ERRCODE_NOT_NULL_VIOLATION, "events.stream_id must not be NULL".into())
    });
    let sequence = new.i64("sequence").unwrap_or_else(|| {
        errors::raise(Code::ERRCODE_NOT_NULL_VIOLATION, "events.sequence must not be NULL".into())
    });
    if event_granted(&stream_id, sequence) {
        return Datum::from(new.tuple);
    }
    // restore_stream on a distributed store: the rows come back with the positions they had
    if new.get("global_position").is_some() && crate::distributed::lifecycle_granted(new.get("stream_id")) {
        return Datum::from(new.tuple);
    }
    // The id of an event written directly could not be claimed cluster-wide (this trigger runs
    // on the stream's node, where Citus allows no distributed write).
    if crate::distributed::distributed() {
        errors::raise_detail(
            Code::ERRCODE_FEATURE_NOT_SUPPORTED,
            "a direct INSERT into events is not available on a distributed store".into(),
            "Append with eventstore.append_event or append_events, which claim the event ids across the cluster.".into(),
        );
    }
    for derived in ["global_position", "horizon_xid"] {
        if new.get(derived).is_some() {
            errors::raise_detail(
                Code::ERRCODE_GENERATED_ALWAYS,
                format!("events.{derived} is assigned by the store"),
                "Leave it out of the INSERT.".into(),
            );
        }
    }
    let spi = Spi::connect();
    let row = {
        let _g = grant(&stream_id, 0, -1, 1);
        spi.run(&BUMP_STREAM, &[Some(new.get("stream_id").unwrap())], false)
    };
    if row.len() == 0 {
        errors::raise_detail(
            Code::ERRCODE_FOREIGN_KEY_VIOLATION,
            format!("stream \"{stream_id}\" does not exist"),
            "Append through eventstore.append_event, or create the stream first.".into(),
        );
    }
    let version = row.i64(0, 1).unwrap();
    let stream_type = row.text(0, 2).unwrap();
    spi.finish();
    if version != sequence {
        errors::version_conflict(&stream_id, sequence - 1, version - 1);
    }
    match new.text("stream_type") {
        Some(t) if t != stream_type => stream_type_mismatch(&stream_id, &stream_type, &t),
        _ => {}
    }
    check_event_row(&new);
    let (position, horizon) = take_position();
    crate::notifier::note_append(&stream_type, position, store_owner());
    Datum::from(new.with(&[
        ("stream_type", stream_type.as_str().into_datum()),
        ("global_position", Some(Datum::from(position))),
        ("horizon_xid", Some(Datum::from(horizon))),
    ]))
}

/// The row rules of an event written directly (the store's functions check their arguments first).
fn check_event_row(new: &Row) {
    if new.text("event_type").is_some_and(|t| t.is_empty()) {
        violation("events.event_type must not be empty");
    }
    if new.get("event_version").is_some_and(|v| (v.value() as i32) < 1) {
        violation("events.event_version must be 1 or more");
    }
    for col in ["payload", "metadata"] {
        if let Some(d) = new.get(col) {
            let (_, root) = crate::jsonb::root(d);
            if !crate::jsonb::is_object(root) {
                violation(&format!("events.{col} must be a JSON object, not {}", crate::jsonb::kind_of(root)));
            }
        }
    }
}

fn violation(message: &str) -> ! {
    errors::raise(Code::ERRCODE_CHECK_VIOLATION, message.to_string())
}

pub fn stream_type_mismatch(stream_id: &str, actual: &str, given: &str) -> ! {
    errors::raise(
        Code::ERRCODE_CHECK_VIOLATION,
        format!("stream \"{stream_id}\" has type \"{actual}\", not \"{given}\""),
    )
}

/// Takes the next `count` global positions. The transaction's id is assigned first and the horizon
/// is read after the last position: every transaction that could still hold a lower position then
/// has an id below the horizon, which is what lets the global feed tell a settled position from one
/// still in flight (one horizon serves the whole batch; a later reading is only more cautious).
pub fn take_positions(count: usize) -> (Vec<i64>, u64) {
    unsafe {
        pg_sys::GetTopFullTransactionId();
        let seq = Some(Datum::from(position_sequence()));
        let positions = (0..count)
            .map(|_| {
                pgrx::direct_function_call::<i64>(pg_sys::nextval_oid, &[seq]).expect("nextval returns a value")
            })
            .collect();
        (positions, pg_sys::ReadNextFullTransactionId().value)
    }
}

pub fn take_position() -> (i64, u64) {
    let (p, h) = take_positions(1);
    (p[0], h)
}

fn position_sequence() -> pg_sys::Oid {
    store_relid(c"global_position_seq").unwrap_or_else(|| {
        errors::raise(Code::ERRCODE_UNDEFINED_OBJECT, "eventstore.global_position_seq is missing".into())
    })
}

thread_local! {
    static OWNER: std::cell::Cell<Option<pg_sys::Oid>> = const { std::cell::Cell::new(None) };
    static LIFECYCLE: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Whether the installed schema has the lifecycle columns and tables (0.5.0 on). The library of a
/// newer release serves databases whose schema is older until ALTER EXTENSION ... UPDATE runs;
/// the statements that name what 0.5.0 added have a variant without it.
pub(crate) fn lifecycle_schema() -> bool {
    if let Some(known) = LIFECYCLE.get() {
        return known;
    }
    let has = store_relid(c"streams")
        .is_some_and(|relid| unsafe { pg_sys::get_attnum(relid, c"state".as_ptr()) } != pg_sys::InvalidAttrNumber as i16);
    LIFECYCLE.set(Some(has));
    has
}

/// The statement for the installed schema: `current` from 0.5.0 on, `before` for older ones.
pub(crate) fn for_schema(current: &'static Stmt, before: &'static Stmt) -> &'static Stmt {
    if lifecycle_schema() { current } else { before }
}

/// The role that owns the store's tables (the events table's owner): the notifier connects as it.
pub(crate) fn store_owner() -> pg_sys::Oid {
    if let Some(o) = OWNER.get() {
        return o;
    }
    let relid = store_relid(c"events")
        .unwrap_or_else(|| errors::raise(Code::ERRCODE_UNDEFINED_TABLE, "eventstore.events is missing".into()));
    let owner = unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::RELOID as i32, Datum::from(relid));
        if tuple.is_null() {
            errors::raise(Code::ERRCODE_UNDEFINED_TABLE, "eventstore.events is missing".into());
        }
        let owner = (*(pg_sys::GETSTRUCT(tuple) as *mut pg_sys::FormData_pg_class)).relowner;
        pg_sys::ReleaseSysCache(tuple);
        owner
    };
    OWNER.set(Some(owner));
    owner
}

thread_local! {
    /// The store's relations by name, looked up once per backend (two syscache lookups each, for
    /// each of the three relations an append opens); direct.rs's relcache callback calls
    /// `forget_relids` so that a dropped or renamed relation is looked up again.
    static RELIDS: std::cell::RefCell<Vec<(&'static std::ffi::CStr, pg_sys::Oid)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The oid of one of the store's relations, looked up by name in schema eventstore.
pub(crate) fn store_relid(name: &'static std::ffi::CStr) -> Option<pg_sys::Oid> {
    if let Some(relid) = RELIDS.with(|r| r.borrow().iter().find(|(n, _)| *n == name).map(|&(_, o)| o)) {
        return Some(relid);
    }
    let relid = unsafe {
        let ns = pg_sys::get_namespace_oid(c"eventstore".as_ptr(), false);
        pg_sys::get_relname_relid(name.as_ptr(), ns)
    };
    if relid == pg_sys::InvalidOid {
        return None;
    }
    RELIDS.with(|r| r.borrow_mut().push((name, relid)));
    Some(relid)
}

/// Forgets the cached oid `relid` (all of them for InvalidOid); true if it was the streams table's.
/// Runs inside invalidation processing: must not raise.
pub(crate) fn forget_relids(relid: pg_sys::Oid) -> bool {
    OWNER.set(None);
    LIFECYCLE.set(None);
    RELIDS.with(|r| {
        let Ok(mut r) = r.try_borrow_mut() else { return true };
        let streams = relid == pg_sys::InvalidOid || r.iter().any(|&(n, o)| o == relid && n == c"streams");
        r.retain(|&(_, o)| relid != pg_sys::InvalidOid && o != relid);
        streams
    })
}

pub(crate) static TYPE_THRESHOLD: Stmt = Stmt {
    sql: "SELECT snapshot_threshold FROM eventstore.stream_types WHERE stream_type = $1",
    args: &[pg_sys::TEXTOID],
};

sql_function!(es_streams_guard, pg_finfo_es_streams_guard, streams_guard);

/// BEFORE INSERT OR UPDATE on streams: a stream starts empty (or as the store's append creates it),
/// its identity never changes, and its version moves only together with appended events.
fn streams_guard(args: crate::fcall::Args) -> Datum {
    let f = unsafe { fired(args.0) };
    let new = f.new.expect("INSERT/UPDATE has a new row");
    let stream_id = new.text("stream_id").unwrap_or_default();
    let version = new.i64("version").unwrap_or(0);
    if new.get("snapshot_threshold").is_some_and(|t| (t.value() as i32) < 1) {
        violation("streams.snapshot_threshold must be NULL or 1 or more");
    }
    match f.old {
        None => {
            if stream_id.is_empty() || new.text("stream_type").is_none_or(|t| t.is_empty()) {
                violation("streams.stream_id and streams.stream_type must not be empty");
            }
            let fresh = |r: &Row| {
                r.text_if_present("state").is_none_or(|s| s == "live")
                    && r.get_if_present("truncate_before").is_none_or(|t| t.value() as i64 == 0)
            };
            if !fresh(&new) {
                violation("a new stream is live and starts at sequence 1 (state 'live', truncate_before 0)");
            }
            if version != 0 && !stream_bump_granted(&stream_id, 0, version) {
                errors::raise_detail(
                    Code::ERRCODE_CHECK_VIOLATION,
                    format!("a new stream starts at version 0, not {version}"),
                    "A stream's version moves only as events are appended.".into(),
                );
            }
            if new.get("snapshot_threshold").is_some() {
                return Datum::from(new.tuple);
            }
            let Some(stream_type) = new.get("stream_type") else {
                return Datum::from(new.tuple);
            };
            let spi = Spi::connect();
            let rows = spi.run(&TYPE_THRESHOLD, &[Some(stream_type)], false);
            let threshold = if rows.len() == 1 { rows.datum(0, 1) } else { None };
            spi.finish();
            match threshold {
                Some(t) => Datum::from(new.with(&[("snapshot_threshold", Some(t))])),
                None => Datum::from(new.tuple),
            }
        }
        Some(old) => {
            let same_created = old.i64("created_at") == new.i64("created_at");
            for fixed in ["stream_id", "stream_type", "created_at"] {
                let same = if fixed == "created_at" { same_created } else { old.same_text(&new, fixed) };
                if !same {
                    errors::raise(
                        Code::ERRCODE_FEATURE_NOT_SUPPORTED,
                        format!("streams.{fixed} cannot be changed"),
                    );
                }
            }
            let old_version = old.i64("version").unwrap_or(0);
            if version != old_version && !stream_bump_granted(&stream_id, old_version, version) {
                errors::raise_detail(
                    Code::ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!("the version of stream \"{stream_id}\" cannot be set directly"),
                    "A stream's version moves only as events are appended.".into(),
                );
            }
            let state = |r: &Row| r.text_if_present("state").unwrap_or_else(|| "live".into());
            let truncated = |r: &Row| r.get_if_present("truncate_before").map(|d| d.value() as i64);
            let (old_state, new_state) = (state(&old), state(&new));
            let lifecycle_changed = old_state != new_state || truncated(&old) != truncated(&new);
            if version != old_version {
                // appends: to a live stream, or reopening a deleted one (its state set back to live)
                let reopening = old_state == "deleted" && new_state == "live" && truncated(&old) == truncated(&new);
                if !(old_state == "live" && new_state == "live") && !reopening {
                    not_live(&stream_id, &old_state);
                }
            } else if lifecycle_changed && !maintenance_allows(Some(&new)) {
                errors::raise_detail(
                    Code::ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!("the state of stream \"{stream_id}\" cannot be set directly"),
                    "Streams are deleted, truncated and archived with the lifecycle functions.".into(),
                );
            }
            Datum::from(new.tuple)
        }
    }
}

static SNAPSHOT_STREAM: Stmt = Stmt {
    sql: "SELECT version, state FROM eventstore.streams WHERE stream_id = $1 FOR KEY SHARE",
    args: &[pg_sys::TEXTOID],
};

sql_function!(es_snapshots_guard, pg_finfo_es_snapshots_guard, snapshots_guard);

/// BEFORE INSERT OR UPDATE on snapshots: a snapshot folds events 1..sequence of a live stream
/// (what the foreign key to the event said until 0.5.0), has a version of 1 or more and a JSON
/// object as payload.
fn snapshots_guard(args: crate::fcall::Args) -> Datum {
    let f = unsafe { fired(args.0) };
    let new = f.new.expect("INSERT/UPDATE has a new row");
    if new.get("snapshot_version").is_some_and(|v| (v.value() as i32) < 1) {
        violation("snapshots.snapshot_version must be 1 or more");
    }
    if let Some(d) = new.get("payload") {
        let (_, root) = crate::jsonb::root(d);
        if !crate::jsonb::is_object(root) {
            violation(&format!("snapshots.payload must be a JSON object, not {}", crate::jsonb::kind_of(root)));
        }
    }
    let (Some(stream), Some(sequence)) = (new.get("stream_id"), new.i64("sequence")) else {
        return Datum::from(new.tuple); // NOT NULL says the rest
    };
    let spi = Spi::connect();
    let rows = spi.run(&SNAPSHOT_STREAM, &[Some(stream)], false);
    let found = (rows.len() == 1).then(|| (rows.i64(0, 1).unwrap_or(0), rows.text(0, 2).unwrap_or_default()));
    spi.finish();
    let stream_id = new.text("stream_id").unwrap_or_default();
    match found {
        None => errors::raise(Code::ERRCODE_FOREIGN_KEY_VIOLATION, format!("stream \"{stream_id}\" does not exist")),
        Some((_, state)) if state != "live" => not_live(&stream_id, &state),
        Some((version, _)) if sequence < 1 || sequence > version => errors::raise(
            Code::ERRCODE_FOREIGN_KEY_VIOLATION,
            format!("snapshot sequence {sequence} is not an event of stream \"{stream_id}\" (version {version})"),
        ),
        _ => Datum::from(new.tuple),
    }
}

static CAUSING_EVENT: Stmt = Stmt {
    sql: "SELECT c.correlation_id FROM eventstore.events e \
          LEFT JOIN eventstore.commands c ON c.command_id = e.command_id \
          WHERE e.stream_id = $1 AND e.sequence = $2 FOR KEY SHARE OF e",
    args: &[pg_sys::TEXTOID, pg_sys::INT8OID],
};

sql_function!(es_commands_guard, pg_finfo_es_commands_guard, commands_guard);

/// BEFORE INSERT on commands: the correlation id is the root command's id, derived from the
/// causing event's command; a caller may not choose it.
fn commands_guard(args: crate::fcall::Args) -> Datum {
    let f = unsafe { fired(args.0) };
    let new = f.new.expect("INSERT has a new row");
    let command_id = new.get("command_id").unwrap_or_else(|| {
        errors::raise(Code::ERRCODE_NOT_NULL_VIOLATION, "commands.command_id must not be NULL".into())
    });
    check_command_row(&new);
    let mut correlation = command_id;
    if let (Some(s), Some(q)) = (new.get("caused_by_stream_id"), new.get("caused_by_sequence")) {
        // On a distributed store this row is being written on every node (commands is a reference
        // table), each firing this trigger in a backend of its own. Only the node that holds the
        // causing event can look it up (a trigger on a shard may not query other nodes); it checks
        // the event and the correlation id the row was given, which every node stores as given.
        if crate::distributed::distributed() {
            if new.get("correlation_id").is_none() {
                errors::raise_detail(
                    Code::ERRCODE_NOT_NULL_VIOLATION,
                    "commands.correlation_id must be given for a command with a cause on a distributed store".into(),
                    "eventstore.record_command derives it; a direct INSERT must give the causing command's correlation id.".into(),
                );
            }
            if !crate::distributed::stream_is_local(s) {
                return Datum::from(new.tuple);
            }
        }
        let spi = Spi::connect();
        let rows = spi.run(&CAUSING_EVENT, &[Some(s), Some(q)], false);
        if rows.len() == 0 {
            let sid = new.text("caused_by_stream_id").unwrap_or_default();
            errors::raise(
                Code::ERRCODE_FOREIGN_KEY_VIOLATION,
                format!("causing event {sid}#{} does not exist", q.value() as i64),
            );
        }
        if let Some(c) = rows.datum(0, 1) {
            correlation = copy_uuid(c);
        }
        spi.finish();
    }
    if let Some(given) = new.get("correlation_id") {
        if !uuid_eq(given, correlation) {
            errors::raise_detail(
                Code::ERRCODE_GENERATED_ALWAYS,
                "commands.correlation_id is derived by the store".into(),
                "Leave it out: it is the id of the root command of the causation chain.".into(),
            );
        }
    }
    Datum::from(new.with(&[("correlation_id", Some(correlation))]))
}

/// The row rules of a command (NULLs in NOT NULL columns are left to those constraints).
fn check_command_row(new: &Row) {
    if new.text("command_type").is_some_and(|t| t.is_empty()) {
        violation("commands.command_type must not be empty");
    }
    if new.text("stream_id").is_some_and(|t| t.is_empty()) {
        violation("commands.stream_id must be NULL or not empty");
    }
    if let Some(d) = new.get("payload") {
        let (_, root) = crate::jsonb::root(d);
        if !crate::jsonb::is_object(root) {
            violation(&format!("commands.payload must be a JSON object, not {}", crate::jsonb::kind_of(root)));
        }
    }
    if new.get("caused_by_stream_id").is_some() != new.get("caused_by_sequence").is_some() {
        violation("commands.caused_by_stream_id and commands.caused_by_sequence must be given together");
    }
}

/// Copies a uuid out of SPI memory into the caller's context.
fn copy_uuid(d: Datum) -> Datum {
    unsafe { pg_sys::SPI_datumTransfer(d, false, 16) }
}

fn uuid_eq(a: Datum, b: Datum) -> bool {
    unsafe { std::slice::from_raw_parts(a.cast_mut_ptr::<u8>(), 16) == std::slice::from_raw_parts(b.cast_mut_ptr::<u8>(), 16) }
}
