//! Snapshots and the snapshot policy (Sequent-style thresholds per stream type).
//!
//! Loading an aggregate is `load_snapshot(id)` then `load_stream(id, snapshot.sequence + 1)`.

use crate::errors::{self, Code};
use crate::fcall::{return_i64, return_void, Args};
use crate::spi::{return_rows, Spi, Stmt};
use pgrx::pg_sys::{self, Datum};

// Locked against a concurrent delete_stream or archive_stream (which lock the row FOR UPDATE);
// appends, which update only the version, are not held up.
static STREAM_VERSION_FOR_SHARE: Stmt = Stmt {
    sql: "SELECT version, state FROM eventstore.streams WHERE stream_id = $1 FOR KEY SHARE",
    args: &[pg_sys::TEXTOID],
};

static STREAM_VERSION_FOR_SHARE_PRE_05: Stmt = Stmt {
    sql: "SELECT version, 'live'::text FROM eventstore.streams WHERE stream_id = $1 FOR KEY SHARE",
    args: &[pg_sys::TEXTOID],
};

static SAVE_SNAPSHOT: Stmt = Stmt {
    sql: "INSERT INTO eventstore.snapshots AS s (stream_id, sequence, snapshot_version, payload) \
          VALUES ($1, $2, $3, $4) ON CONFLICT (stream_id, sequence) DO UPDATE \
          SET snapshot_version = EXCLUDED.snapshot_version, payload = EXCLUDED.payload, \
              created_at = EXCLUDED.created_at",
    args: &[pg_sys::TEXTOID, pg_sys::INT8OID, pg_sys::INT4OID, pg_sys::JSONBOID],
};

sql_function!(es_take_snapshot, pg_finfo_es_take_snapshot, take_snapshot);

fn take_snapshot(args: Args) -> Datum {
    let (stream_id, sid) = args.required_text(0, "stream_id");
    let sequence = args.required_i64(1, "sequence");
    let payload = args.required_object(2, "payload");
    let snapshot_version = args.required_i32(3, "snapshot_version");
    if snapshot_version < 1 {
        errors::invalid(format!("snapshot_version must be 1 or more, not {snapshot_version}"));
    }
    let spi = Spi::connect();
    let rows = spi.run(crate::integrity::for_schema(&STREAM_VERSION_FOR_SHARE, &STREAM_VERSION_FOR_SHARE_PRE_05), &[Some(stream_id)], false);
    if rows.len() == 0 {
        errors::raise(Code::ERRCODE_FOREIGN_KEY_VIOLATION, format!("stream \"{sid}\" does not exist"));
    }
    let version = rows.i64(0, 1).unwrap_or(0);
    let state = rows.text(0, 2).unwrap_or_default();
    if state != "live" {
        crate::integrity::not_live(&sid, &state);
    }
    if sequence < 1 || sequence > version {
        errors::invalid(format!(
            "snapshot sequence {sequence} is out of range for stream \"{sid}\" (version {version}): \
             it must be between 1 and the stream's version"
        ));
    }
    spi.run(
        &SAVE_SNAPSHOT,
        &[Some(stream_id), Some(Datum::from(sequence)), Some(Datum::from(snapshot_version)), Some(payload)],
        false,
    );
    spi.finish();
    return_void()
}

static LOAD_SNAPSHOT: Stmt = Stmt {
    sql: "SELECT sequence, snapshot_version, payload, created_at FROM eventstore.snapshots \
          WHERE stream_id = $1 AND sequence <= COALESCE($2, 9223372036854775807) \
          ORDER BY sequence DESC LIMIT 1",
    args: &[pg_sys::TEXTOID, pg_sys::INT8OID],
};

sql_function!(es_load_snapshot, pg_finfo_es_load_snapshot, load_snapshot);

fn load_snapshot(args: Args) -> Datum {
    let (stream_id, _) = args.required_text(0, "stream_id");
    let max = args.opt_datum(1);
    return_rows(args.0, &LOAD_SNAPSHOT, &[Some(stream_id), max])
}

static SET_TYPE_THRESHOLD: Stmt = Stmt {
    sql: "INSERT INTO eventstore.stream_types (stream_type, snapshot_threshold) VALUES ($1, $2) \
          ON CONFLICT (stream_type) DO UPDATE SET snapshot_threshold = EXCLUDED.snapshot_threshold",
    args: &[pg_sys::TEXTOID, pg_sys::INT4OID],
};

static SET_STREAM_THRESHOLDS: Stmt = Stmt {
    sql: "UPDATE eventstore.streams SET snapshot_threshold = $2 \
          WHERE stream_type = $1 AND snapshot_threshold IS DISTINCT FROM $2",
    args: &[pg_sys::TEXTOID, pg_sys::INT4OID],
};

sql_function!(es_set_snapshot_threshold, pg_finfo_es_set_snapshot_threshold, set_snapshot_threshold);

/// Returns how many existing streams of the type were changed.
fn set_snapshot_threshold(args: Args) -> Datum {
    let (stream_type, _) = args.required_text(0, "stream_type");
    let threshold = args.opt_i32(1);
    if let Some(t) = threshold.filter(|t| *t < 1) {
        errors::invalid(format!("threshold must be NULL (no snapshots) or 1 or more, not {t}"));
    }
    let t = threshold.map(Datum::from);
    let spi = Spi::connect();
    spi.run(&SET_TYPE_THRESHOLD, &[Some(stream_type), t], false);
    spi.run(&SET_STREAM_THRESHOLDS, &[Some(stream_type), t], false);
    let changed = unsafe { pg_sys::SPI_processed } as i64;
    spi.finish();
    return_i64(changed)
}

static NEEDING_SNAPSHOT: Stmt = Stmt {
    sql: "SELECT s.stream_id, s.stream_type, s.version, s.version - COALESCE(n.sequence, 0) AS since \
          FROM eventstore.streams s \
          LEFT JOIN LATERAL (SELECT sequence FROM eventstore.snapshots \
                             WHERE stream_id = s.stream_id ORDER BY sequence DESC LIMIT 1) n ON true \
          WHERE s.snapshot_threshold IS NOT NULL AND s.state = 'live' \
            AND s.version - COALESCE(n.sequence, 0) >= s.snapshot_threshold \
          ORDER BY since DESC, s.stream_id LIMIT $1",
    args: &[pg_sys::INT4OID],
};

static NEEDING_SNAPSHOT_PRE_05: Stmt = Stmt {
    sql: "SELECT s.stream_id, s.stream_type, s.version, s.version - COALESCE(n.sequence, 0) AS since \
          FROM eventstore.streams s \
          LEFT JOIN LATERAL (SELECT sequence FROM eventstore.snapshots \
                             WHERE stream_id = s.stream_id ORDER BY sequence DESC LIMIT 1) n ON true \
          WHERE s.snapshot_threshold IS NOT NULL \
            AND s.version - COALESCE(n.sequence, 0) >= s.snapshot_threshold \
          ORDER BY since DESC, s.stream_id LIMIT $1",
    args: &[pg_sys::INT4OID],
};

sql_function!(es_streams_needing_snapshot, pg_finfo_es_streams_needing_snapshot, streams_needing_snapshot);

fn streams_needing_snapshot(args: Args) -> Datum {
    let max = args.required_i32(0, "max_count");
    if max < 0 {
        errors::invalid(format!("max_count must be 0 or more, not {max}"));
    }
    return_rows(args.0, crate::integrity::for_schema(&NEEDING_SNAPSHOT, &NEEDING_SNAPSHOT_PRE_05), &[Some(Datum::from(max))])
}
