//! Stream lifecycle and data protection: soft and hard deletion, truncation and retention,
//! archiving, erasure and redaction of personal data, removing commands without events.
//!
//! Every function locks the stream's row FOR UPDATE first (appends, snapshots and recorded
//! commands wait, or fail cleanly), changes rows only through statements that the append-only
//! triggers let through for the duration (`integrity::maintain`), and writes what it removed to
//! eventstore.audit_log: who, when, why, which stream, events and paths, never the values.
//! The global feed needs nothing of its own: positions were never dense, and a reader passes over
//! a removed one as over a rolled-back append's.

use crate::errors::{self, Code};
use crate::fcall::{return_i64, return_void, Args};
use crate::integrity;
use crate::spi::{return_rows, Spi, Stmt};
use pgrx::pg_sys::{self, Datum};
use pgrx::{FromDatum, IntoDatum};
use serde_json::Value;

static LOCK: Stmt = Stmt {
    sql: "SELECT version, state, truncate_before FROM eventstore.streams WHERE stream_id = $1 FOR UPDATE",
    args: &[pg_sys::TEXTOID],
};

struct Locked {
    version: i64,
    state: String,
    truncate_before: i64,
}

fn lock(spi: &Spi, stream: Datum, stream_id: &str) -> Locked {
    let r = spi.run(&LOCK, &[Some(stream)], false);
    if r.len() == 0 {
        errors::raise(Code::ERRCODE_UNDEFINED_OBJECT, format!("stream \"{stream_id}\" does not exist"));
    }
    Locked { version: r.i64(0, 1).unwrap(), state: r.text(0, 2).unwrap_or_default(), truncate_before: r.i64(0, 3).unwrap() }
}

impl Locked {
    /// The version an expected_version is compared with: a stream that is not live has no events.
    fn visible(&self) -> i64 {
        if self.state == "live" { self.version } else { 0 }
    }

    fn check_expected(&self, stream_id: &str, expected: Option<i64>) {
        match expected {
            Some(e) if e < -1 => errors::invalid(format!(
                "expected_version must be NULL (any), -1 (stream exists), 0 (no events) or a version, not {e}"
            )),
            Some(-1) if self.visible() == 0 => errors::version_conflict(stream_id, -1, 0),
            Some(e) if e >= 0 && e != self.visible() => errors::version_conflict(stream_id, e, self.visible()),
            _ => {}
        }
    }

    fn require(&self, stream_id: &str, state: &str) {
        if self.state != state {
            integrity::not_live(stream_id, &self.state);
        }
    }
}

/// A reason is required wherever data is removed: the audit log says why.
fn reason(args: Args, i: usize) -> Datum {
    args.required_text(i, "reason").0
}

static AUDIT: Stmt = Stmt {
    sql: "INSERT INTO eventstore.audit_log (action, stream_id, command_id, first_sequence, last_sequence, sequences, paths, rows, reason) \
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    args: &[
        pg_sys::TEXTOID,
        pg_sys::TEXTOID,
        pg_sys::UUIDOID,
        pg_sys::INT8OID,
        pg_sys::INT8OID,
        pg_sys::INT8ARRAYOID,
        pg_sys::TEXTARRAYOID,
        pg_sys::INT8OID,
        pg_sys::TEXTOID,
    ],
};

#[derive(Default)]
struct Entry {
    stream: Option<Datum>,
    command: Option<Datum>,
    span: Option<(i64, i64)>,
    sequences: Option<Datum>,
    paths: Option<Datum>,
    rows: i64,
    reason: Option<Datum>,
}

fn audit(spi: &Spi, action: &str, e: Entry) {
    spi.run(
        &AUDIT,
        &[
            action.into_datum(),
            e.stream,
            e.command,
            e.span.map(|s| Datum::from(s.0)),
            e.span.map(|s| Datum::from(s.1)),
            e.sequences,
            e.paths,
            Some(Datum::from(e.rows)),
            e.reason,
        ],
        false,
    );
}

fn processed() -> i64 {
    unsafe { pg_sys::SPI_processed as i64 }
}

static SET_STATE: Stmt = Stmt {
    sql: "UPDATE eventstore.streams SET state = $2, truncate_before = $3 WHERE stream_id = $1",
    args: &[pg_sys::TEXTOID, pg_sys::TEXTOID, pg_sys::INT8OID],
};
static DELETE_STREAM_ROW: Stmt =
    Stmt { sql: "DELETE FROM eventstore.streams WHERE stream_id = $1", args: &[pg_sys::TEXTOID] };
static DELETE_EVENTS: Stmt = Stmt {
    sql: "DELETE FROM eventstore.events WHERE stream_id = $1 AND sequence < $2",
    args: &[pg_sys::TEXTOID, pg_sys::INT8OID],
};
static DELETE_ARCHIVED: Stmt =
    Stmt { sql: "DELETE FROM eventstore.archived_events WHERE stream_id = $1", args: &[pg_sys::TEXTOID] };
static DELETE_SNAPSHOTS: Stmt = Stmt {
    sql: "DELETE FROM eventstore.snapshots WHERE stream_id = $1 AND sequence < $2",
    args: &[pg_sys::TEXTOID, pg_sys::INT8OID],
};

sql_function!(es_delete_stream, pg_finfo_es_delete_stream, delete_stream);

/// Soft: the stream reads as not found and its events stay in the store and the feed; the next
/// append reopens it where its sequences left off. Hard: its events (archived ones too) and
/// snapshots are removed and a tombstone keeps its id taken (`allow_reuse`: no tombstone). Returns
/// how many events were hidden or removed.
fn delete_stream(args: Args) -> Datum {
    let (stream, stream_id) = args.required_text(0, "stream_id");
    let expected = args.opt_i64(1);
    let hard = args.required_bool(2, "hard");
    let allow_reuse = args.required_bool(3, "allow_reuse");
    if allow_reuse && !hard {
        errors::invalid("allow_reuse needs hard => true: a soft-deleted stream is reopened by appending".into());
    }
    let why = if hard { Some(reason(args, 4)) } else { args.opt_text(4, "reason").map(|r| r.0) };
    let spi = Spi::connect();
    let s = lock(&spi, stream, &stream_id);
    s.check_expected(&stream_id, expected);
    let m = integrity::maintain("eventstore.delete_stream", Some(stream));
    let everything = Some(Datum::from(i64::MAX));
    let n = if !hard {
        match s.state.as_str() {
            "deleted" => 0,
            "live" => {
                spi.run(&SET_STATE, &[Some(stream), "deleted".into_datum(), Some(Datum::from(s.version + 1))], false);
                spi.run(&DELETE_SNAPSHOTS, &[Some(stream), everything], false);
                (s.version - s.truncate_before.max(1) + 1).max(0)
            }
            other => integrity::not_live(&stream_id, other),
        }
    } else {
        spi.run(&DELETE_EVENTS, &[Some(stream), everything], false);
        let mut n = processed();
        spi.run(&DELETE_ARCHIVED, &[Some(stream)], false);
        n += processed();
        spi.run(&DELETE_SNAPSHOTS, &[Some(stream), everything], false);
        if allow_reuse {
            spi.run(&DELETE_STREAM_ROW, &[Some(stream)], false);
        } else {
            spi.run(&SET_STATE, &[Some(stream), "tombstone".into_datum(), Some(Datum::from(s.version + 1))], false);
        }
        let span = (s.version > 0).then_some((1, s.version));
        audit(&spi, "delete_stream", Entry { stream: Some(stream), span, rows: n, reason: why, ..Default::default() });
        n
    };
    m.end();
    spi.finish();
    return_i64(n)
}

static SET_TRUNCATE: Stmt = Stmt {
    sql: "UPDATE eventstore.streams SET truncate_before = $2 WHERE stream_id = $1",
    args: &[pg_sys::TEXTOID, pg_sys::INT8OID],
};

/// Removes a live stream's events below `before` (and the snapshots that only they explain);
/// the stream's sequences stay as they are. Returns how many events were removed.
fn truncate(spi: &Spi, stream: Datum, stream_id: &str, before: i64, why: Datum, action: &str) -> i64 {
    let s = lock(spi, stream, stream_id);
    s.require(stream_id, "live");
    if before < 1 || before > s.version + 1 {
        errors::invalid(format!(
            "before_sequence must be between 1 and the stream's version + 1 ({}), not {before}",
            s.version + 1
        ));
    }
    if before <= s.truncate_before {
        return 0;
    }
    let m = integrity::maintain(&format!("eventstore.{action}"), Some(stream));
    spi.run(&DELETE_EVENTS, &[Some(stream), Some(Datum::from(before))], false);
    let n = processed();
    // a snapshot at before - 1 folds exactly what was removed: it stays, for loading from `before`
    spi.run(&DELETE_SNAPSHOTS, &[Some(stream), Some(Datum::from(before - 1))], false);
    spi.run(&SET_TRUNCATE, &[Some(stream), Some(Datum::from(before))], false);
    let span = Some((s.truncate_before.max(1), before - 1));
    audit(spi, action, Entry { stream: Some(stream), span, rows: n, reason: Some(why), ..Default::default() });
    m.end();
    n
}

sql_function!(es_truncate_stream, pg_finfo_es_truncate_stream, truncate_stream);

fn truncate_stream(args: Args) -> Datum {
    let (stream, stream_id) = args.required_text(0, "stream_id");
    let before = args.required_i64(1, "before_sequence");
    let why = reason(args, 2);
    let spi = Spi::connect();
    let n = truncate(&spi, stream, &stream_id, before, why, "truncate_stream");
    spi.finish();
    return_i64(n)
}

static SET_RETENTION: Stmt = Stmt {
    sql: "INSERT INTO eventstore.stream_types (stream_type, max_age, max_count, keep_after_snapshot) VALUES ($1, $2, $3, $4) \
          ON CONFLICT (stream_type) DO UPDATE \
          SET max_age = EXCLUDED.max_age, max_count = EXCLUDED.max_count, keep_after_snapshot = EXCLUDED.keep_after_snapshot",
    args: &[pg_sys::TEXTOID, pg_sys::INTERVALOID, pg_sys::INT8OID, pg_sys::BOOLOID],
};

static POSITIVE_INTERVAL: Stmt = Stmt { sql: "SELECT $1 > interval '0'", args: &[pg_sys::INTERVALOID] };

sql_function!(es_set_retention, pg_finfo_es_set_retention, set_retention);

/// Retention of a stream type, enforced by apply_retention: events older than `max_age`, beyond
/// the newest `max_count`, or (`keep_after_snapshot`) folded into the newest snapshot go. NULLs and
/// false: keep everything.
fn set_retention(args: Args) -> Datum {
    let (stream_type, _) = args.required_text(0, "stream_type");
    let max_age = args.opt_datum(1);
    let max_count = args.opt_i64(2);
    let keep_after_snapshot = args.required_bool(3, "keep_after_snapshot");
    if let Some(c) = max_count.filter(|c| *c < 1) {
        errors::invalid(format!("max_count must be NULL (no limit) or 1 or more, not {c}"));
    }
    let spi = Spi::connect();
    if let Some(age) = max_age {
        if spi.run(&POSITIVE_INTERVAL, &[Some(age)], true).bool(0, 1) != Some(true) {
            errors::invalid("max_age must be NULL (no limit) or a positive interval".into());
        }
    }
    spi.run(
        &SET_RETENTION,
        &[Some(stream_type), max_age, max_count.map(Datum::from), Some(Datum::from(keep_after_snapshot))],
        false,
    );
    spi.finish();
    return_void()
}

// The cut is the first sequence to keep: past the newest max_count, past the newest event older
// than max_age, past the newest snapshot (Postgres' GREATEST ignores NULLs). Joins on stream_id
// rather than subqueries per stream, which Citus would not distribute.
static RETENTION_DUE: Stmt = Stmt {
    sql: "SELECT d.stream_id, d.stream_type, d.cut FROM ( \
            SELECT s.stream_id, s.stream_type, s.truncate_before, \
                   GREATEST(s.version - t.max_count + 1, a.cut, n.cut) AS cut \
            FROM eventstore.streams s \
            JOIN eventstore.stream_types t ON t.stream_type = s.stream_type \
            LEFT JOIN (SELECT e.stream_id, max(e.sequence) + 1 AS cut FROM eventstore.events e \
                         JOIN eventstore.stream_types et ON et.stream_type = e.stream_type \
                        WHERE et.max_age IS NOT NULL AND e.created_at < now() - et.max_age \
                        GROUP BY e.stream_id) a ON a.stream_id = s.stream_id \
            LEFT JOIN (SELECT sn.stream_id, max(sn.sequence) + 1 AS cut FROM eventstore.snapshots sn \
                         JOIN eventstore.streams ss ON ss.stream_id = sn.stream_id \
                         JOIN eventstore.stream_types st ON st.stream_type = ss.stream_type \
                        WHERE st.keep_after_snapshot GROUP BY sn.stream_id) n ON n.stream_id = s.stream_id \
            WHERE s.state = 'live' AND (t.max_age IS NOT NULL OR t.max_count IS NOT NULL OR t.keep_after_snapshot)) d \
          WHERE d.cut > GREATEST(d.truncate_before, 1) \
          ORDER BY d.stream_id",
    args: &[],
};

sql_function!(es_apply_retention, pg_finfo_es_apply_retention, apply_retention);

/// Enforces every stream type's retention now; one row per stream truncated. Call it from any
/// scheduler (pg_cron, cron with psql).
fn apply_retention(args: Args) -> Datum {
    let spi = Spi::connect();
    let due = spi.run(&RETENTION_DUE, &[], false);
    let work: Vec<(String, String, i64)> =
        (0..due.len()).map(|r| (due.text(r, 1).unwrap(), due.text(r, 2).unwrap(), due.i64(r, 3).unwrap())).collect();
    let why = "retention".into_datum().unwrap();
    let mut rows = Vec::new();
    for (stream_id, stream_type, cut) in work {
        let stream = stream_id.as_str().into_datum().unwrap();
        let n = truncate(&spi, stream, &stream_id, cut, why, "apply_retention");
        if n > 0 {
            rows.push((stream_id, stream_type, n));
        }
    }
    spi.finish();
    unsafe {
        crate::compat::init_materialized_srf(args.0);
        let rsinfo = (*args.0).resultinfo as *mut pg_sys::ReturnSetInfo;
        for (stream_id, stream_type, n) in rows {
            let mut values = [stream_id.into_datum().unwrap(), stream_type.into_datum().unwrap(), Datum::from(n)];
            let mut nulls = [false; 3];
            pg_sys::tuplestore_putvalues((*rsinfo).setResult, (*rsinfo).setDesc, values.as_mut_ptr(), nulls.as_mut_ptr());
        }
    }
    Datum::from(0)
}

static ARCHIVE: Stmt = Stmt {
    sql: "INSERT INTO eventstore.archived_events (stream_id, sequence, event_id, stream_type, event_type, event_version, \
          payload, metadata, command_id, global_position, horizon_xid, created_at) \
          SELECT stream_id, sequence, event_id, stream_type, event_type, event_version, payload, metadata, command_id, \
                 global_position, horizon_xid, created_at \
          FROM eventstore.events WHERE stream_id = $1 ORDER BY sequence",
    args: &[pg_sys::TEXTOID],
};

sql_function!(es_archive_stream, pg_finfo_es_archive_stream, archive_stream);

/// Moves a finished stream's events out of the hot tables into archived_events (their positions
/// and ids with them); its snapshots go. Appends, the feed and the indexes no longer carry them;
/// load_archived_stream reads them, restore_stream brings them back.
fn archive_stream(args: Args) -> Datum {
    let (stream, stream_id) = args.required_text(0, "stream_id");
    let expected = args.opt_i64(1);
    let spi = Spi::connect();
    let s = lock(&spi, stream, &stream_id);
    s.check_expected(&stream_id, expected);
    s.require(&stream_id, "live");
    let m = integrity::maintain("eventstore.archive_stream", Some(stream));
    spi.run(&ARCHIVE, &[Some(stream)], false);
    let n = processed();
    spi.run(&DELETE_EVENTS, &[Some(stream), Some(Datum::from(i64::MAX))], false);
    spi.run(&DELETE_SNAPSHOTS, &[Some(stream), Some(Datum::from(i64::MAX))], false);
    spi.run(&SET_STATE, &[Some(stream), "archived".into_datum(), Some(Datum::from(s.truncate_before))], false);
    let span = (n > 0).then_some((s.truncate_before.max(1), s.version));
    audit(&spi, "archive_stream", Entry { stream: Some(stream), span, rows: n, ..Default::default() });
    m.end();
    spi.finish();
    return_i64(n)
}

static RESTORE: Stmt = Stmt {
    sql: "INSERT INTO eventstore.events (stream_id, sequence, event_id, stream_type, event_type, event_version, \
          payload, metadata, command_id, global_position, horizon_xid, created_at) \
          SELECT stream_id, sequence, event_id, stream_type, event_type, event_version, payload, metadata, command_id, \
                 global_position, horizon_xid, created_at \
          FROM eventstore.archived_events WHERE stream_id = $1 ORDER BY sequence",
    args: &[pg_sys::TEXTOID],
};

static ARCHIVED_SPAN: Stmt = Stmt {
    sql: "SELECT min(sequence), max(sequence) FROM eventstore.archived_events WHERE stream_id = $1",
    args: &[pg_sys::TEXTOID],
};

sql_function!(es_restore_stream, pg_finfo_es_restore_stream, restore_stream);

/// Brings an archived stream's events back into the store with their positions and ids (a reader
/// past those positions does not see them again: a restore is not a re-publication).
fn restore_stream(args: Args) -> Datum {
    let (stream, stream_id) = args.required_text(0, "stream_id");
    let spi = Spi::connect();
    let s = lock(&spi, stream, &stream_id);
    if s.state != "archived" {
        errors::raise(Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, format!("stream \"{stream_id}\" is not archived"));
    }
    let span = spi.run(&ARCHIVED_SPAN, &[Some(stream)], false);
    let (first, last) = (span.i64(0, 1), span.i64(0, 2));
    let m = integrity::maintain("eventstore.restore_stream", Some(stream));
    let n = match (first, last) {
        (Some(first), Some(last)) => {
            // the events trigger lets exactly these rows through with the positions they had
            let _g = integrity::grant(&stream_id, first, last, 0);
            spi.run(&RESTORE, &[Some(stream)], false);
            processed()
        }
        _ => 0,
    };
    spi.run(&DELETE_ARCHIVED, &[Some(stream)], false);
    spi.run(&SET_STATE, &[Some(stream), "live".into_datum(), Some(Datum::from(s.truncate_before))], false);
    audit(&spi, "restore_stream", Entry { stream: Some(stream), span: first.zip(last), rows: n, ..Default::default() });
    m.end();
    spi.finish();
    return_i64(n)
}

static LOAD_ARCHIVED: Stmt = Stmt {
    sql: "SELECT sequence, event_type, event_version, payload, metadata, event_id, command_id, global_position, created_at \
          FROM eventstore.archived_events WHERE stream_id = $1 AND sequence >= $2 ORDER BY sequence LIMIT $3",
    args: &[pg_sys::TEXTOID, pg_sys::INT8OID, pg_sys::INT8OID],
};

sql_function!(es_load_archived_stream, pg_finfo_es_load_archived_stream, load_archived_stream);

fn load_archived_stream(args: Args) -> Datum {
    let (stream, _) = args.required_text(0, "stream_id");
    let from = args.required_i64(1, "from_sequence");
    if from < 0 {
        errors::invalid(format!("from_sequence must be 0 or more, not {from}"));
    }
    let max = args.opt_i64(2);
    if let Some(m) = max.filter(|m| *m < 0) {
        errors::invalid(format!("max_count must be NULL (all) or 0 or more, not {m}"));
    }
    return_rows(args.0, &LOAD_ARCHIVED, &[Some(stream), Some(Datum::from(from)), max.map(Datum::from)])
}

static ERASE_EVENTS: Stmt = Stmt {
    sql: "UPDATE eventstore.events SET payload = '{}', metadata = '{}' \
          WHERE stream_id = $1 AND (payload <> '{}' OR metadata <> '{}')",
    args: &[pg_sys::TEXTOID],
};
static ERASE_ARCHIVED: Stmt = Stmt {
    sql: "UPDATE eventstore.archived_events SET payload = '{}', metadata = '{}' \
          WHERE stream_id = $1 AND (payload <> '{}' OR metadata <> '{}')",
    args: &[pg_sys::TEXTOID],
};
static ERASE_COMMANDS: Stmt = Stmt {
    sql: "UPDATE eventstore.commands SET payload = '{}' WHERE stream_id = $1 AND payload <> '{}'",
    args: &[pg_sys::TEXTOID],
};

sql_function!(es_erase_stream, pg_finfo_es_erase_stream, erase_stream);

/// Erases a stream's personal data: every event's payload and metadata (archived ones too) become
/// `{}`, its snapshots go, and so do the payloads of the commands recorded for it. The events keep
/// their positions, types and sequences, so projections and the feed stay consistent. Returns how
/// many events were changed.
fn erase_stream(args: Args) -> Datum {
    let (stream, stream_id) = args.required_text(0, "stream_id");
    let why = reason(args, 1);
    let spi = Spi::connect();
    let s = lock(&spi, stream, &stream_id);
    let m = integrity::maintain("eventstore.erase_stream", Some(stream));
    spi.run(&ERASE_EVENTS, &[Some(stream)], false);
    let mut n = processed();
    spi.run(&ERASE_ARCHIVED, &[Some(stream)], false);
    n += processed();
    spi.run(&DELETE_SNAPSHOTS, &[Some(stream), Some(Datum::from(i64::MAX))], false);
    spi.run(&ERASE_COMMANDS, &[Some(stream)], false);
    let commands = processed();
    let span = (s.version > 0).then_some((1, s.version));
    audit(&spi, "erase_stream", Entry { stream: Some(stream), span, rows: n + commands, reason: Some(why), ..Default::default() });
    m.end();
    spi.finish();
    return_i64(n)
}

/// The paths of a redaction, split by column: `payload.a.b` and `metadata.x` (at least one key
/// below the column; `*` matches every key or element at its level).
fn split_paths(d: Datum, allowed: &[&str]) -> Vec<(String, String)> {
    let paths = unsafe { Vec::<Option<String>>::from_datum(d, false) }.unwrap_or_default();
    if paths.is_empty() {
        errors::invalid("paths must not be empty".into());
    }
    paths
        .into_iter()
        .map(|p| {
            let p = p.unwrap_or_else(|| errors::invalid("paths must not contain NULL".into()));
            match p.split_once('.') {
                Some((column, rest)) if allowed.contains(&column) && !rest.is_empty() && !rest.split('.').any(str::is_empty) => {
                    (column.to_string(), rest.to_string())
                }
                _ => errors::invalid(format!(
                    "a path is {} followed by dotted keys, such as \"{}.customer.email\", not \"{p}\"",
                    allowed.join(" or "),
                    allowed[0]
                )),
            }
        })
        .collect()
}

fn text_array(items: &[String]) -> Datum {
    items.to_vec().into_datum().unwrap()
}

static REDACT_EVENTS: Stmt = Stmt {
    sql: "UPDATE eventstore.events SET payload = eventstore.redact_json(payload, $3), metadata = eventstore.redact_json(metadata, $4) \
          WHERE stream_id = $1 AND ($2::bigint[] IS NULL OR sequence = ANY ($2)) \
            AND (payload <> eventstore.redact_json(payload, $3) OR metadata <> eventstore.redact_json(metadata, $4))",
    args: &[pg_sys::TEXTOID, pg_sys::INT8ARRAYOID, pg_sys::TEXTARRAYOID, pg_sys::TEXTARRAYOID],
};
static REDACT_ARCHIVED: Stmt = Stmt {
    sql: "UPDATE eventstore.archived_events SET payload = eventstore.redact_json(payload, $3), metadata = eventstore.redact_json(metadata, $4) \
          WHERE stream_id = $1 AND ($2::bigint[] IS NULL OR sequence = ANY ($2)) \
            AND (payload <> eventstore.redact_json(payload, $3) OR metadata <> eventstore.redact_json(metadata, $4))",
    args: &[pg_sys::TEXTOID, pg_sys::INT8ARRAYOID, pg_sys::TEXTARRAYOID, pg_sys::TEXTARRAYOID],
};

sql_function!(es_redact_events, pg_finfo_es_redact_events, redact_events);

/// Sets the given JSON paths of the given events (NULL: all of the stream's) to null where they
/// exist, in payload and metadata; the stream's snapshots go (they may hold the values). Returns
/// how many events were changed.
fn redact_events(args: Args) -> Datum {
    let (stream, stream_id) = args.required_text(0, "stream_id");
    let sequences = args.opt_datum(1);
    let paths_arg = args.opt_datum(2).unwrap_or_else(|| errors::null_arg("paths"));
    let why = reason(args, 3);
    let paths = split_paths(paths_arg, &["payload", "metadata"]);
    let of = |c: &str| paths.iter().filter(|(col, _)| col == c).map(|(_, p)| p.clone()).collect::<Vec<_>>();
    let (payload_paths, metadata_paths) = (text_array(&of("payload")), text_array(&of("metadata")));
    if let Some(list) = sequences {
        let list = unsafe { Vec::<Option<i64>>::from_datum(list, false) }.unwrap_or_default();
        if list.is_empty() || list.iter().any(Option::is_none) {
            errors::invalid("sequences must be NULL (all) or a non-empty list without NULLs".into());
        }
    }
    let spi = Spi::connect();
    let s = lock(&spi, stream, &stream_id);
    let m = integrity::maintain("eventstore.redact_events", Some(stream));
    let params = [Some(stream), sequences, Some(payload_paths), Some(metadata_paths)];
    spi.run(&REDACT_EVENTS, &params, false);
    let mut n = processed();
    spi.run(&REDACT_ARCHIVED, &params, false);
    n += processed();
    spi.run(&DELETE_SNAPSHOTS, &[Some(stream), Some(Datum::from(i64::MAX))], false);
    let span = (s.version > 0).then_some((1, s.version));
    audit(
        &spi,
        "redact_events",
        Entry { stream: Some(stream), span, sequences, paths: Some(paths_arg), rows: n, reason: Some(why), ..Default::default() },
    );
    m.end();
    spi.finish();
    return_i64(n)
}

static REDACT_COMMAND: Stmt = Stmt {
    sql: "UPDATE eventstore.commands SET payload = eventstore.redact_json(payload, $2) \
          WHERE command_id = $1 AND payload <> eventstore.redact_json(payload, $2)",
    args: &[pg_sys::UUIDOID, pg_sys::TEXTARRAYOID],
};
static COMMAND_EXISTS: Stmt = Stmt {
    sql: "SELECT 1 FROM eventstore.commands WHERE command_id = $1 FOR UPDATE",
    args: &[pg_sys::UUIDOID],
};

sql_function!(es_redact_command, pg_finfo_es_redact_command, redact_command);

/// Sets JSON paths of a command's payload (`payload.x.y`) to null; returns 1 if it changed.
fn redact_command(args: Args) -> Datum {
    let command = args.opt_datum(0).unwrap_or_else(|| errors::null_arg("command_id"));
    let paths_arg = args.opt_datum(1).unwrap_or_else(|| errors::null_arg("paths"));
    let why = reason(args, 2);
    let paths: Vec<String> = split_paths(paths_arg, &["payload"]).into_iter().map(|(_, p)| p).collect();
    let spi = Spi::connect();
    if spi.run(&COMMAND_EXISTS, &[Some(command)], false).len() == 0 {
        let id = unsafe { pgrx::Uuid::from_datum(command, false) }.unwrap();
        errors::raise(Code::ERRCODE_UNDEFINED_OBJECT, format!("command {id} does not exist"));
    }
    let m = integrity::maintain("eventstore.redact_command", None);
    spi.run(&REDACT_COMMAND, &[Some(command), Some(text_array(&paths))], false);
    let n = processed();
    audit(&spi, "redact_command", Entry { command: Some(command), paths: Some(paths_arg), rows: n, reason: Some(why), ..Default::default() });
    m.end();
    spi.finish();
    return_i64(n)
}

static DELETE_LONE_COMMANDS: Stmt = Stmt {
    sql: "DELETE FROM eventstore.commands c \
          WHERE ($1::text IS NULL OR c.stream_id = $1) AND ($2::timestamptz IS NULL OR c.created_at < $2) \
            AND NOT EXISTS (SELECT FROM eventstore.events e WHERE e.command_id = c.command_id) \
            AND NOT EXISTS (SELECT FROM eventstore.archived_events a WHERE a.command_id = c.command_id)",
    args: &[pg_sys::TEXTOID, pg_sys::TIMESTAMPTZOID],
};

/// The same on a distributed store, where Citus does not distribute the subqueries above in a
/// DELETE of a reference table: the commands that events point at are found first, among the
/// candidates only (a query over every shard), and kept. A command an append points at meanwhile
/// stays too: the events' foreign key refuses the delete (23503) and nothing is removed.
static DELETE_LONE_COMMANDS_DISTRIBUTED: Stmt = Stmt {
    sql: "WITH candidates AS MATERIALIZED ( \
              SELECT c.command_id FROM eventstore.commands c \
               WHERE ($1::text IS NULL OR c.stream_id = $1) AND ($2::timestamptz IS NULL OR c.created_at < $2)), \
          used AS MATERIALIZED ( \
              SELECT e.command_id FROM eventstore.events e JOIN candidates k ON k.command_id = e.command_id \
              UNION SELECT a.command_id FROM eventstore.archived_events a JOIN candidates k ON k.command_id = a.command_id) \
          DELETE FROM eventstore.commands c USING candidates k \
           WHERE c.command_id = k.command_id AND NOT EXISTS (SELECT FROM used u WHERE u.command_id = k.command_id)",
    args: &[pg_sys::TEXTOID, pg_sys::TIMESTAMPTZOID],
};

sql_function!(es_delete_commands_without_events, pg_finfo_es_delete_commands_without_events, delete_commands_without_events);

/// Removes recorded commands that caused no event (Sequent's
/// permanently_delete_commands_without_events), of one stream or all, older than a moment or all.
fn delete_commands_without_events(args: Args) -> Datum {
    let stream = args.opt_text(0, "stream_id").map(|t| t.0);
    let older_than = args.opt_datum(1);
    let why = args.opt_text(2, "reason").map(|t| t.0);
    let spi = Spi::connect();
    let m = integrity::maintain("eventstore.delete_commands_without_events", None);
    let delete = if crate::distributed::distributed() { &DELETE_LONE_COMMANDS_DISTRIBUTED } else { &DELETE_LONE_COMMANDS };
    spi.run(delete, &[stream, older_than], false);
    let n = processed();
    if n > 0 {
        audit(&spi, "delete_commands_without_events", Entry { stream, rows: n, reason: why, ..Default::default() });
    }
    m.end();
    spi.finish();
    return_i64(n)
}

sql_function!(es_redact_json, pg_finfo_es_redact_json, redact_json);

/// `eventstore.redact_json(doc, paths)`: each path (dotted keys, `*` for every key or element,
/// digits for an array element) set to null where it exists.
fn redact_json(args: Args) -> Datum {
    let doc = unsafe { pgrx::JsonB::from_datum(args.datum(0), false) }.unwrap();
    let paths = unsafe { Vec::<Option<String>>::from_datum(args.datum(1), false) }.unwrap_or_default();
    let mut value = doc.0;
    for p in paths.into_iter().flatten() {
        let keys: Vec<&str> = p.split('.').collect();
        null_at(&mut value, &keys);
    }
    pgrx::JsonB(value).into_datum().unwrap()
}

fn null_at(v: &mut Value, keys: &[&str]) {
    let Some((key, rest)) = keys.split_first() else { return };
    let mut visit = |child: &mut Value| {
        if rest.is_empty() {
            *child = Value::Null;
        } else {
            null_at(child, rest);
        }
    };
    match v {
        Value::Object(m) if *key == "*" => m.values_mut().for_each(&mut visit),
        Value::Object(m) => {
            if let Some(child) = m.get_mut(*key) {
                visit(child)
            }
        }
        Value::Array(a) if *key == "*" => a.iter_mut().for_each(&mut visit),
        Value::Array(a) => {
            if let Some(child) = key.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                visit(child)
            }
        }
        _ => {}
    }
}
