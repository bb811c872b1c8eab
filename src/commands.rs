//! Commands and causation: record_command and causation_chain.

use crate::errors::{self, Code};
use crate::fcall::Args;
use crate::spi::{return_rows, Spi, Stmt};
use pgrx::pg_sys::{self, Datum};
use pgrx::IntoDatum;

/// command_id, command_type, payload, stream_id, user_id, caused_by_stream_id, caused_by_sequence
const COMMAND_ARGS: &[pg_sys::Oid] = &[
    pg_sys::UUIDOID,
    pg_sys::TEXTOID,
    pg_sys::JSONBOID,
    pg_sys::TEXTOID,
    pg_sys::TEXTOID,
    pg_sys::TEXTOID,
    pg_sys::INT8OID,
];

static INSERT_COMMAND: Stmt = Stmt {
    sql: "INSERT INTO eventstore.commands (command_id, command_type, payload, stream_id, user_id, \
                                          caused_by_stream_id, caused_by_sequence) \
          VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (command_id) DO NOTHING",
    args: COMMAND_ARGS,
};

static SAME_COMMAND: Stmt = Stmt {
    sql: "SELECT command_type = $2 AND payload = $3 AND stream_id IS NOT DISTINCT FROM $4 \
                 AND user_id IS NOT DISTINCT FROM $5 AND caused_by_stream_id IS NOT DISTINCT FROM $6 \
                 AND caused_by_sequence IS NOT DISTINCT FROM $7 \
          FROM eventstore.commands WHERE command_id = $1",
    args: COMMAND_ARGS,
};

sql_function!(es_record_command, pg_finfo_es_record_command, record_command);

/// Records a command. Retrying with the same command_id and the same content returns that id;
/// the same id with other content is a unique violation.
fn record_command(args: Args) -> Datum {
    let (command_type, _) = args.required_text(0, "command_type");
    let payload = args.required_object(1, "payload");
    let stream_id = args.opt_text(2, "stream_id").map(|t| t.0);
    let user_id = args.opt_datum(3);
    let caused_by_stream = args.opt_text(4, "caused_by_stream_id").map(|t| t.0);
    let caused_by_sequence = args.opt_i64(5);
    if caused_by_stream.is_some() != caused_by_sequence.is_some() {
        errors::invalid("caused_by_stream_id and caused_by_sequence must be given together".into());
    }
    let id = match args.opt_datum(6) {
        Some(d) => unsafe { <pgrx::Uuid as pgrx::FromDatum>::from_datum(d, false) }.unwrap(),
        None => pgrx::Uuid::from_bytes(*uuid::Uuid::new_v4().as_bytes()),
    };
    let values = [
        id.into_datum(),
        Some(command_type),
        Some(payload),
        stream_id,
        user_id,
        caused_by_stream,
        caused_by_sequence.map(Datum::from),
    ];
    let spi = Spi::connect();
    spi.run(&INSERT_COMMAND, &values, false);
    if unsafe { pg_sys::SPI_processed } == 0 {
        let same = spi.run(&SAME_COMMAND, &values, false);
        if same.bool(0, 1) != Some(true) {
            errors::raise_detail(
                Code::ERRCODE_UNIQUE_VIOLATION,
                format!("command {id} was already recorded with different content"),
                "A command id may be reused only to retry exactly the same command.".into(),
            );
        }
    }
    spi.finish();
    id.into_datum().unwrap()
}

static CAUSATION_CHAIN: Stmt = Stmt {
    sql: "WITH RECURSIVE chain(depth, kind, command_id, stream_id, sequence, type) AS ( \
            SELECT 0, 'event'::text, e.command_id, e.stream_id, e.sequence, e.event_type \
            FROM eventstore.events e WHERE e.stream_id = $1 AND e.sequence = $2 \
          UNION ALL \
            SELECT ch.depth + 1, step.kind, step.command_id, step.stream_id, step.sequence, step.type \
            FROM chain ch \
            JOIN eventstore.commands c ON c.command_id = ch.command_id \
            CROSS JOIN LATERAL ( \
                SELECT 'command'::text, c.command_id, c.stream_id, NULL::bigint, c.command_type \
                WHERE ch.kind = 'event' \
              UNION ALL \
                SELECT 'event', e.command_id, e.stream_id, e.sequence, e.event_type \
                FROM eventstore.events e \
                WHERE ch.kind = 'command' AND e.stream_id = c.caused_by_stream_id \
                  AND e.sequence = c.caused_by_sequence \
            ) AS step(kind, command_id, stream_id, sequence, type) \
          ) \
          SELECT depth, kind, command_id, stream_id, sequence, type FROM chain ORDER BY depth",
    args: &[pg_sys::TEXTOID, pg_sys::INT8OID],
};

sql_function!(es_causation_chain, pg_finfo_es_causation_chain, causation_chain);

fn causation_chain(args: Args) -> Datum {
    let (stream_id, _) = args.required_text(0, "stream_id");
    let sequence = args.required_i64(1, "sequence");
    return_rows(args.0, &CAUSATION_CHAIN, &[Some(stream_id), Some(Datum::from(sequence))])
}
