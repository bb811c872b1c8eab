//! Reading a stream back: load_stream and stream_version.

use crate::errors;
use crate::fcall::{return_i64, Args};
use crate::spi::{return_rows, Spi, Stmt};
use pgrx::pg_sys::{self, Datum};

static LOAD_STREAM: Stmt = Stmt {
    sql: "SELECT sequence, event_type, event_version, payload, metadata, event_id, command_id, \
                 global_position, created_at \
          FROM eventstore.events \
          WHERE stream_id = $1 \
            AND sequence >= GREATEST($2, (SELECT truncate_before FROM eventstore.streams WHERE stream_id = $1)) \
          ORDER BY sequence LIMIT $3",
    args: &[pg_sys::TEXTOID, pg_sys::INT8OID, pg_sys::INT8OID],
};

static LOAD_STREAM_PRE_05: Stmt = Stmt {
    sql: "SELECT sequence, event_type, event_version, payload, metadata, event_id, command_id, \
                 global_position, created_at \
          FROM eventstore.events WHERE stream_id = $1 AND sequence >= $2 ORDER BY sequence LIMIT $3",
    args: &[pg_sys::TEXTOID, pg_sys::INT8OID, pg_sys::INT8OID],
};

sql_function!(es_load_stream, pg_finfo_es_load_stream, load_stream);

fn load_stream(args: Args) -> Datum {
    let (stream_id, _) = args.required_text(0, "stream_id");
    let from = args.required_i64(1, "from_sequence");
    if from < 0 {
        errors::invalid(format!("from_sequence must be 0 or more, not {from}"));
    }
    let max = args.opt_i64(2);
    if let Some(m) = max.filter(|m| *m < 0) {
        errors::invalid(format!("max_count must be NULL (all) or 0 or more, not {m}"));
    }
    return_rows(args.0, crate::integrity::for_schema(&LOAD_STREAM, &LOAD_STREAM_PRE_05), &[Some(stream_id), Some(Datum::from(from)), max.map(Datum::from)])
}

static STREAM_VERSION: Stmt = Stmt {
    // a stream that is deleted, hard-deleted or archived reads as not found
    sql: "SELECT version FROM eventstore.streams WHERE stream_id = $1 AND state = 'live'",
    args: &[pg_sys::TEXTOID],
};

static STREAM_VERSION_PRE_05: Stmt = Stmt {
    sql: "SELECT version FROM eventstore.streams WHERE stream_id = $1",
    args: &[pg_sys::TEXTOID],
};

sql_function!(es_stream_version, pg_finfo_es_stream_version, stream_version);

fn stream_version(args: Args) -> Datum {
    let (stream_id, _) = args.required_text(0, "stream_id");
    let spi = Spi::connect();
    let rows = spi.run(crate::integrity::for_schema(&STREAM_VERSION, &STREAM_VERSION_PRE_05), &[Some(stream_id)], true);
    let v = if rows.len() == 1 { rows.i64(0, 1).unwrap_or(0) } else { 0 };
    spi.finish();
    return_i64(v)
}
