//! append_event / append_events: optimistic concurrency, idempotent retries, all-or-nothing batches.
//!
//! Order of work, chosen so that two sessions on one stream never gap, duplicate or leak a
//! unique violation: (1) check every argument; (2) with caller-chosen event ids, lock the stream
//! row and look for the ids, so that a retry of an append that already committed returns its
//! sequence; (3) bump the stream's version under its row lock (one statement, creating the stream
//! on its first event) and check expected_version against the version before the bump; (4) insert
//! the events at the sequences just reserved, with global positions taken after the lock.

use crate::errors::{self, Code};
use crate::fcall::{return_i64, Args};
use crate::direct;
use crate::integrity;
use crate::jsonb::{self, Value, Walk};
use crate::spi::{Spi, Stmt};
use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::IntoDatum;

/// One event to append; jsonb values stay datums. `id` is None when the caller gave none.
struct NewEvent {
    event_type: Datum,
    payload: Datum,
    metadata: Datum,
    id: Option<Datum>,
    version: i32,
}

/// Ids for the events the caller did not name: UUIDv7, whose time-ordered bits put each new id at
/// the right end of the event_id index instead of on a random page (measured: a random-uuid index
/// cost a third of batch append throughput at 1M events). One random draw per append: later ids
/// of a batch count up from the first in the low 54 random bits (RFC 9562's "monotonic random"
/// method); a getrandom call for each id was 3% of a batch's CPU.
fn event_ids(events: &[NewEvent]) -> Vec<Datum> {
    let base = new_v7();
    let mut next = 0u128;
    events
        .iter()
        .map(|e| {
            e.id.unwrap_or_else(|| {
                let id = (base & !COUNTER) | (base.wrapping_add(next) & COUNTER);
                next += 1;
                pgrx::Uuid::from_bytes(id.to_be_bytes()).into_datum().unwrap()
            })
        })
        .collect()
}

/// The low 54 bits of rand_b: random, and the count within a batch.
const COUNTER: u128 = (1 << 54) - 1;
/// The 8 bits of rand_b above them hold this mark in every id the store generates. On a
/// distributed store an id a caller names is looked up on every node only when it carries the mark
/// (it may be an id the store generated, which is never claimed in event_ids); any other id has
/// been claimed there if it was used (distributed.rs, claim_event_ids). 66 random bits remain.
const MARK: u128 = 0xE5 << 54;
const MARK_BITS: u128 = 0xFF << 54;

/// Whether the store may have generated this id: UUIDv7 with the mark.
pub(crate) fn may_be_generated(id: u128) -> bool {
    (id >> 76) & 0xF == 7 && id & MARK_BITS == MARK
}

/// A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits, of which the store's
/// MARK takes 8. They come from a
/// ChaCha12 generator per backend, seeded from pg_strong_random: uuid's own now_v7 made two
/// getrandom system calls for every append, and pg_strong_random itself (OpenSSL's RAND_bytes)
/// costs about 8,500 instructions a call, 5% of a single append.
pub(crate) fn new_v7() -> u128 {
    use rand_core::{Rng, SeedableRng};
    thread_local! {
        static RNG: std::cell::RefCell<Option<(i32, chacha20::ChaCha12Rng)>> = const { std::cell::RefCell::new(None) };
    }
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis()) as u128;
    let rand = RNG.with(|g| {
        let mut g = g.borrow_mut();
        let pid = unsafe { pg_sys::MyProcPid };
        // Seeded in this process: a generator inherited through fork (a preloaded library seeded
        // in the postmaster) would give every backend the same ids.
        if g.as_ref().is_none_or(|(seeded_in, _)| *seeded_in != pid) {
            let mut seed = [0u8; 32];
            if !unsafe { pg_sys::pg_strong_random(seed.as_mut_ptr().cast(), seed.len()) } {
                errors::raise(Code::ERRCODE_INTERNAL_ERROR, "could not seed the event id generator".into());
            }
            *g = Some((pid, chacha20::ChaCha12Rng::from_seed(seed)));
        }
        let mut r = [0u8; 16];
        g.as_mut().unwrap().1.fill_bytes(&mut r);
        u128::from_be_bytes(r)
    });
    const VERSION: u128 = 0x7 << 76;
    const VARIANT: u128 = 0b10 << 62;
    ((ms & 0xffff_ffff_ffff) << 80) | VERSION | (rand & (0xfff << 64)) | VARIANT | MARK | (rand & COUNTER)
}

struct Target {
    stream_id: String,
    stream_id_datum: Datum,
    stream_type: String,
    stream_type_datum: Datum,
    expected_version: Option<i64>,
    command_id: Option<Datum>,
}

fn check_expected(v: Option<i64>) -> Option<i64> {
    if let Some(v) = v {
        if v < -1 {
            errors::invalid(format!(
                "expected_version must be NULL (any), -1 (stream exists), 0 (no events) or a version, not {v}"
            ));
        }
    }
    v
}

fn target(args: Args, expected_at: usize, command_at: usize) -> Target {
    let (stream_id_datum, stream_id) = args.required_text(0, "stream_id");
    let (stream_type_datum, stream_type) = args.required_text(1, "stream_type");
    Target {
        stream_id,
        stream_id_datum,
        stream_type,
        stream_type_datum,
        expected_version: check_expected(args.opt_i64(expected_at)),
        command_id: args.opt_datum(command_at),
    }
}

sql_function!(es_append_event, pg_finfo_es_append_event, append_event);
sql_function!(es_append_event_here, pg_finfo_es_append_event_here, append_event_here);

fn append_event(args: Args) -> Datum {
    let (t, event) = one_event(args);
    run(args, &t, &[event], Some(&crate::distributed::APPEND_EVENT_HERE))
}

fn append_event_here(args: Args) -> Datum {
    let (t, event) = one_event(args);
    run(args, &t, &[event], None)
}

fn one_event(args: Args) -> (Target, NewEvent) {
    let t = target(args, 5, 7);
    let (event_type, _) = args.required_text(2, "event_type");
    let payload = args.required_object(3, "payload");
    let metadata = args.required_object(4, "metadata");
    let version = args.required_i32(8, "event_version");
    if version < 1 {
        errors::invalid(format!("event_version must be 1 or more, not {version}"));
    }
    (t, NewEvent { event_type, payload, metadata, id: args.opt_datum(6), version })
}

sql_function!(es_append_events, pg_finfo_es_append_events, append_events);
sql_function!(es_append_events_here, pg_finfo_es_append_events_here, append_events_here);

fn append_events(args: Args) -> Datum {
    let (t, events) = batch(args);
    run(args, &t, &events, Some(&crate::distributed::APPEND_EVENTS_HERE))
}

fn append_events_here(args: Args) -> Datum {
    let (t, events) = batch(args);
    run(args, &t, &events, None)
}

fn batch(args: Args) -> (Target, Vec<NewEvent>) {
    let t = target(args, 3, 4);
    let batch = args.opt_datum(2).unwrap_or_else(|| errors::null_arg("events"));
    (t, parse_batch(batch))
}

/// On one node, the append. On a distributed store, a client's call (`here` is the statement
/// that runs the append on the stream's node) first claims the event ids it names, wherever it
/// runs; then it appends if the stream is on this node, or has the _here function do it there.
/// The _here functions (`here` None) run where Citus delegated them, after that claim.
fn run(args: Args, t: &Target, events: &[NewEvent], here: Option<&'static Stmt>) -> Datum {
    use crate::distributed;
    if distributed::distributed() {
        match here {
            None => distributed::require_local(t.stream_id_datum, &t.stream_id),
            Some(stmt) => {
                let local = distributed::locate(t.stream_id_datum, &t.stream_id);
                let ids = named_ids(events);
                if !ids.is_empty() {
                    distributed::claim_event_ids(&ids, t.stream_id_datum, &t.stream_id);
                }
                if !local {
                    distributed::require_registry();
                    return return_i64(distributed::append_there(stmt, args));
                }
            }
        }
    }
    return_i64(append(t, events))
}

/// The event ids the caller named, in the batch's order.
fn named_ids(events: &[NewEvent]) -> Vec<Option<Datum>> {
    events.iter().filter(|e| e.id.is_some()).map(|e| e.id).collect()
}

/// Splits a JSON array of `{"type", "payload", "metadata"?, "id"?, "version"?}` into events,
/// rejecting anything else with 22023 before a single row is written.
fn parse_batch(batch: Datum) -> Vec<NewEvent> {
    let (_, root) = jsonb::root(batch);
    if !jsonb::is_array(root) {
        errors::invalid(format!("events must be a JSON array, not {}", jsonb::kind_of(root)));
    }
    let empty = empty_object();
    let mut events = Vec::new();
    let mut ids: Vec<uuid::Uuid> = Vec::new();
    let mut walk = Walk::new(root);
    while let Some((_, elem)) = walk.next() {
        let n = events.len() + 1;
        let bad = |what: String| -> ! { errors::invalid(format!("events[{n}]: {what}")) };
        let obj = match elem.container() {
            Some(c) if jsonb::is_object(c) => c,
            _ => bad(format!("each event must be a JSON object, not {}", elem.describe())),
        };
        let (mut event_type, mut payload, mut metadata, mut id, mut version) = (None, None, None, None, 1);
        let mut fields = Walk::new(obj);
        while let Some((_, key)) = fields.next() {
            let Value::String(key) = key else { bad("malformed object".into()) };
            let (_, value) = fields.next().unwrap_or_else(|| bad("malformed object".into()));
            match key.as_str() {
                "type" => match value {
                    Value::String(s) if !s.is_empty() => event_type = Some(s),
                    Value::String(_) => bad("\"type\" must not be empty".into()),
                    v => bad(format!("\"type\" must be a non-empty string, not {}", v.describe())),
                },
                "payload" | "metadata" => {
                    let is_obj = value.container().is_some_and(|c| jsonb::is_object(c));
                    if !is_obj {
                        bad(format!("\"{key}\" must be a JSON object, not {}", value.describe()));
                    }
                    let d = value.to_datum();
                    if key == "payload" { payload = d } else { metadata = d }
                }
                "id" => match value {
                    Value::String(s) => match uuid::Uuid::parse_str(&s) {
                        Ok(u) => {
                            if ids.contains(&u) {
                                errors::raise(
                                    Code::ERRCODE_UNIQUE_VIOLATION,
                                    format!("events[{n}]: event id {u} appears twice in the batch"),
                                );
                            }
                            ids.push(u);
                            id = Some(u);
                        }
                        Err(_) => bad(format!("\"id\" must be a UUID, not \"{s}\"")),
                    },
                    v => bad(format!("\"id\" must be a UUID string, not {}", v.describe())),
                },
                "version" => match value {
                    Value::Numeric(d) => match numeric_to_i32(d) {
                        Some(v) if v >= 1 => version = v,
                        _ => bad("\"version\" must be an integer of 1 or more".into()),
                    },
                    v => bad(format!("\"version\" must be an integer, not {}", v.describe())),
                },
                other => bad(format!(
                    "unknown key \"{other}\" (allowed: type, payload, metadata, id, version)"
                )),
            }
        }
        let event_type = event_type.unwrap_or_else(|| bad("\"type\" is required".into()));
        events.push(NewEvent {
            event_type: event_type.as_str().into_datum().unwrap(),
            payload: payload.unwrap_or_else(|| bad("\"payload\" is required".into())),
            metadata: metadata.unwrap_or(empty),
            id: id.map(|u| pgrx::Uuid::from_bytes(*u.as_bytes()).into_datum().unwrap()),
            version,
        });
    }
    if events.is_empty() {
        errors::invalid("events must not be empty".into());
    }
    events
}

/// Only an exact integer: 2.5 or 1e10 are rejected rather than rounded.
fn numeric_to_i32(d: Datum) -> Option<i32> {
    let text = unsafe {
        let out = pgrx::direct_function_call_as_datum(pg_sys::numeric_out, &[Some(d)])?;
        std::ffi::CStr::from_ptr(out.cast_mut_ptr()).to_str().ok()?.to_owned()
    };
    text.parse::<i32>().ok()
}

fn empty_object() -> Datum {
    pgrx::JsonB(serde_json::json!({})).into_datum().unwrap()
}

// Without ON CONFLICT, which Postgres refuses on a table with rules: a race to create the stream
// is caught instead (`create_with_sql`).
static INSERT_STREAM: Stmt = Stmt {
    sql: "INSERT INTO eventstore.streams (stream_id, stream_type, version) VALUES ($1, $2, $3) RETURNING version, stream_type",
    args: &[pg_sys::TEXTOID, pg_sys::TEXTOID, pg_sys::INT8OID],
};

static LOCK_STREAM: Stmt = Stmt {
    sql: "SELECT version, stream_type, state FROM eventstore.streams WHERE stream_id = $1 FOR UPDATE",
    args: &[pg_sys::TEXTOID],
};

// The SQL path's bump, after LOCK_STREAM: a deleted stream is reopened.
static BUMP_LOCKED: Stmt = Stmt {
    sql: "UPDATE eventstore.streams SET version = version + $2, state = 'live' WHERE stream_id = $1 RETURNING version",
    args: &[pg_sys::TEXTOID, pg_sys::INT8OID],
};

// The same for a schema older than 0.5.0 (integrity::for_schema), which has no lifecycle.
static LOCK_STREAM_PRE_05: Stmt = Stmt {
    sql: "SELECT version, stream_type, 'live'::text FROM eventstore.streams WHERE stream_id = $1 FOR UPDATE",
    args: &[pg_sys::TEXTOID],
};
static BUMP_LOCKED_PRE_05: Stmt = Stmt {
    sql: "UPDATE eventstore.streams SET version = version + $2 WHERE stream_id = $1 RETURNING version",
    args: &[pg_sys::TEXTOID, pg_sys::INT8OID],
};
static FIND_IDS_PRE_05: Stmt = Stmt {
    sql: "SELECT e.stream_id, e.sequence, i.ord FROM unnest($1::uuid[]) WITH ORDINALITY AS i(id, ord) \
          JOIN eventstore.events e ON e.event_id = i.id ORDER BY i.ord",
    args: &[pg_sys::UUIDARRAYOID],
};

// On a distributed store, where the ids were claimed cluster-wide before (claim_event_ids): a
// retry's ids are in the stream itself.
static FIND_IDS_IN_STREAM: Stmt = Stmt {
    sql: "SELECT e.stream_id, e.sequence, i.ord FROM unnest($1::uuid[]) WITH ORDINALITY AS i(id, ord) \
          JOIN (SELECT stream_id, sequence, event_id FROM eventstore.events WHERE stream_id = $2 \
                UNION ALL SELECT stream_id, sequence, event_id FROM eventstore.archived_events WHERE stream_id = $2) e \
            ON e.event_id = i.id ORDER BY i.ord",
    args: &[pg_sys::UUIDARRAYOID, pg_sys::TEXTOID],
};

static FIND_IDS: Stmt = Stmt {
    sql: "SELECT e.stream_id, e.sequence, i.ord FROM unnest($1::uuid[]) WITH ORDINALITY AS i(id, ord) \
          JOIN (SELECT stream_id, sequence, event_id FROM eventstore.events \
                UNION ALL SELECT stream_id, sequence, event_id FROM eventstore.archived_events) e \
            ON e.event_id = i.id ORDER BY i.ord",
    args: &[pg_sys::UUIDARRAYOID],
};


static INSERT_ONE: Stmt = Stmt {
    sql: "INSERT INTO eventstore.events (stream_id, sequence, event_id, stream_type, event_type, event_version, \
          payload, metadata, command_id, global_position, horizon_xid) \
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    args: &[
        pg_sys::TEXTOID,
        pg_sys::INT8OID,
        pg_sys::UUIDOID,
        pg_sys::TEXTOID,
        pg_sys::TEXTOID,
        pg_sys::INT4OID,
        pg_sys::JSONBOID,
        pg_sys::JSONBOID,
        pg_sys::UUIDOID,
        pg_sys::INT8OID,
        pg_sys::XID8OID,
    ],
};

static INSERT_MANY: Stmt = Stmt {
    sql: "INSERT INTO eventstore.events (stream_id, sequence, event_id, stream_type, event_type, event_version, \
          payload, metadata, command_id, global_position, horizon_xid) \
          SELECT $1, $2 + e.ord - 1, e.id, $3, e.type, e.version, e.payload, \
                 e.metadata, $4, e.position, $5 \
          FROM unnest($6::uuid[], $7::text[], $8::int4[], $9::jsonb[], $10::jsonb[], $11::int8[]) \
               WITH ORDINALITY AS e(id, type, version, payload, metadata, position, ord)",
    args: &[
        pg_sys::TEXTOID,
        pg_sys::INT8OID,
        pg_sys::TEXTOID,
        pg_sys::UUIDOID,
        pg_sys::XID8OID,
        pg_sys::UUIDARRAYOID,
        pg_sys::TEXTARRAYOID,
        pg_sys::INT4ARRAYOID,
        pg_sys::JSONBARRAYOID,
        pg_sys::JSONBARRAYOID,
        pg_sys::INT8ARRAYOID,
    ],
};

/// Appends the events and returns the sequence of the last one.
fn append(t: &Target, events: &[NewEvent]) -> i64 {
    let k = events.len() as i64;
    // SPI only when a statement is needed: the common append writes through `direct`.
    let mut spi: Option<Spi> = None;

    if events.iter().any(|e| e.id.is_some()) {
        let s = spi.insert(Spi::connect());
        let stream_type = lock_stream(s, t);
        if stream_type != t.stream_type {
            integrity::stream_type_mismatch(&t.stream_id, &stream_type, &t.stream_type);
        }
        if let Some(seq) = already_appended(s, t, events) {
            spi.take().unwrap().finish();
            return seq;
        }
    }

    let (version, stream_type, reopened) = bump(&mut spi, t, k);
    if stream_type != t.stream_type {
        integrity::stream_type_mismatch(&t.stream_id, &stream_type, &t.stream_type);
    }
    // A deleted stream reads as not found: to expected_version it has no events, and appending
    // reopens it where its sequences left off.
    let before = if reopened { 0 } else { version - k };
    match t.expected_version {
        Some(-1) if before == 0 => errors::version_conflict(&t.stream_id, -1, 0),
        Some(e) if e >= 0 && e != before => errors::version_conflict(&t.stream_id, e, before),
        _ => {}
    }

    let first = version - k + 1;
    let (positions, horizon) = integrity::take_positions(events.len());
    crate::notifier::note_append(&t.stream_type, *positions.last().unwrap(), integrity::store_owner());
    let ids = event_ids(events);
    let direct = {
        let created_at = Datum::from(unsafe { pg_sys::GetCurrentTransactionStartTimestamp() });
        let rows: Vec<direct::EventValues> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                [
                    Some(t.stream_id_datum),
                    Some(Datum::from(first + i as i64)),
                    Some(ids[i]),
                    Some(t.stream_type_datum),
                    Some(e.event_type),
                    Some(Datum::from(e.version)),
                    Some(e.payload),
                    Some(e.metadata),
                    t.command_id,
                    Some(Datum::from(positions[i])),
                    Some(Datum::from(horizon)),
                    Some(created_at),
                ]
            })
            .collect();
        direct::insert_events(&rows, t.command_id).is_some()
    };
    if !direct {
        let spi = spi.get_or_insert_with(Spi::connect);
        insert_with_sql(spi, t, events, first, version, &ids, &positions, horizon);
    }
    if let Some(spi) = spi {
        spi.finish();
    }
    version
}

/// Bumps the stream's version by `k` under its row lock, creating the stream on its first events;
/// returns the new version and the stream's type.
/// Bumps the stream's version by `k` under its row lock, creating the stream on its first events;
/// returns the new version, the stream's type and whether a deleted stream was reopened.
fn bump(spi: &mut Option<Spi>, t: &Target, k: i64) -> (i64, String, bool) {
    if let Some(direct::Bumped::Done(version, stream_type, reopened)) =
        direct::bump_stream(t.stream_id_datum, &t.stream_id, k, Some(t.stream_type_datum), t.expected_version == Some(0))
    {
        return (version, stream_type, reopened);
    }
    let spi = spi.get_or_insert_with(Spi::connect);
    let _g = integrity::grant(&t.stream_id, 0, -1, k);
    for attempt in 0.. {
        let locked = spi.run(integrity::for_schema(&LOCK_STREAM, &LOCK_STREAM_PRE_05), &[Some(t.stream_id_datum)], false);
        if locked.len() == 1 {
            let (stream_type, state) = (locked.text(0, 2).unwrap_or_default(), locked.text(0, 3).unwrap_or_default());
            if state != "live" && state != "deleted" {
                integrity::not_live(&t.stream_id, &state);
            }
            let rows = spi.run(integrity::for_schema(&BUMP_LOCKED, &BUMP_LOCKED_PRE_05), &[Some(t.stream_id_datum), Some(Datum::from(k))], false);
            return (rows.i64(0, 1).unwrap(), stream_type, state == "deleted");
        }
        if let Some((version, stream_type)) = create_with_sql(spi, t, k, attempt == 0) {
            return (version, stream_type, false);
        }
    }
    unreachable!()
}

/// Creates the stream's row at `version` with the SQL statement. A concurrent creation of the
/// same stream makes it None when `catch` (the caller then updates that row instead); the second
/// time the error is not caught, so a unique violation that is not that race reaches the client.
fn create_with_sql(spi: &Spi, t: &Target, version: i64, catch: bool) -> Option<(i64, String)> {
    let insert = || {
        let rows = spi.run(&INSERT_STREAM, &[Some(t.stream_id_datum), Some(t.stream_type_datum), Some(Datum::from(version))], false);
        (rows.i64(0, 1).unwrap(), rows.text(0, 2).unwrap_or_default())
    };
    if catch {
        crate::spi::unless_error(Code::ERRCODE_UNIQUE_VIOLATION, insert)
    } else {
        Some(insert())
    }
}

/// Locks the stream's row for the event id lookup, creating it empty (version 0) first if it is
/// new, so that two first appends with the same ids queue on one lock. Returns the stream's type.
fn lock_stream(spi: &Spi, t: &Target) -> String {
    for attempt in 0.. {
        let locked = spi.run(integrity::for_schema(&LOCK_STREAM, &LOCK_STREAM_PRE_05), &[Some(t.stream_id_datum)], false);
        if locked.len() == 1 {
            let state = locked.text(0, 3).unwrap_or_default();
            if state != "live" && state != "deleted" {
                integrity::not_live(&t.stream_id, &state);
            }
            return locked.text(0, 2).unwrap_or_default();
        }
        if direct::bump_stream(t.stream_id_datum, &t.stream_id, 0, Some(t.stream_type_datum), false).is_none() {
            create_with_sql(spi, t, 0, attempt == 0);
        }
    }
    unreachable!()
}

/// The INSERT statement, for a table that `direct` leaves alone; the events trigger lets exactly
/// these rows through.
#[allow(clippy::too_many_arguments)]
fn insert_with_sql(spi: &Spi, t: &Target, events: &[NewEvent], first: i64, version: i64, ids: &[Datum], positions: &[i64], horizon: u64) {
    let sid = Some(t.stream_id_datum);
    let _g = integrity::grant(&t.stream_id, first, version, events.len() as i64);
    if let [e] = events {
        spi.run(
            &INSERT_ONE,
            &[
                sid,
                Some(Datum::from(first)),
                Some(ids[0]),
                Some(t.stream_type_datum),
                Some(e.event_type),
                Some(Datum::from(e.version)),
                Some(e.payload),
                Some(e.metadata),
                t.command_id,
                Some(Datum::from(positions[0])),
                Some(Datum::from(horizon)),
            ],
            false,
        );
    } else {
        let positions: Vec<Option<Datum>> = positions.iter().map(|&p| Some(Datum::from(p))).collect();
        let ids: Vec<Option<Datum>> = ids.iter().map(|&d| Some(d)).collect();
        spi.run(
            &INSERT_MANY,
            &[
                sid,
                Some(Datum::from(first)),
                Some(t.stream_type_datum),
                t.command_id,
                Some(Datum::from(horizon)),
                Some(array(&ids, pg_sys::UUIDOID)),
                Some(array(&events.iter().map(|e| Some(e.event_type)).collect::<Vec<_>>(), pg_sys::TEXTOID)),
                Some(array(&events.iter().map(|e| Some(Datum::from(e.version))).collect::<Vec<_>>(), pg_sys::INT4OID)),
                Some(array(&events.iter().map(|e| Some(e.payload)).collect::<Vec<_>>(), pg_sys::JSONBOID)),
                Some(array(&events.iter().map(|e| Some(e.metadata)).collect::<Vec<_>>(), pg_sys::JSONBOID)),
                Some(array(&positions, pg_sys::INT8OID)),
            ],
            false,
        );
    }
}

/// With the stream row locked: if the batch's ids are already in this stream (a retried append),
/// the sequence of its last event; if some are elsewhere or only part of the batch is there, 23505.
fn already_appended(spi: &Spi, t: &Target, events: &[NewEvent]) -> Option<i64> {
    let ids = Some(array(&named_ids(events), pg_sys::UUIDOID));
    let found = if crate::distributed::distributed() {
        spi.run(&FIND_IDS_IN_STREAM, &[ids, Some(t.stream_id_datum)], false)
    } else {
        spi.run(integrity::for_schema(&FIND_IDS, &FIND_IDS_PRE_05), &[ids], false)
    };
    if found.len() == 0 {
        return None;
    }
    for r in 0..found.len() {
        let other = found.text(r, 1).unwrap_or_default();
        if other != t.stream_id {
            errors::event_id_elsewhere(&other, &t.stream_id);
        }
    }
    if found.len() != events.len() {
        errors::raise_detail(
            Code::ERRCODE_UNIQUE_VIOLATION,
            format!(
                "{} of the {} events are already in stream \"{}\"",
                found.len(),
                events.len(),
                t.stream_id
            ),
            "A batch is idempotent only when retried whole.".into(),
        );
    }
    found.i64(found.len() - 1, 2)
}

/// A one-dimensional array datum of the given element type.
pub(crate) fn array(elems: &[Option<Datum>], elem_type: Oid) -> Datum {
    let values: Vec<Datum> = elems.iter().map(|d| d.unwrap_or(Datum::from(0))).collect();
    let nulls: Vec<bool> = elems.iter().map(|d| d.is_none()).collect();
    let (mut len, mut byval, mut align) = (0i16, false, 0 as std::ffi::c_char);
    let mut dims = [elems.len() as i32];
    let mut lbs = [1i32];
    unsafe {
        pg_sys::get_typlenbyvalalign(elem_type, &mut len, &mut byval, &mut align);
        Datum::from(pg_sys::construct_md_array(
            values.as_ptr() as *mut Datum,
            nulls.as_ptr() as *mut bool,
            1,
            dims.as_mut_ptr(),
            lbs.as_mut_ptr(),
            elem_type,
            len as i32,
            byval,
            align,
        ))
    }
}
