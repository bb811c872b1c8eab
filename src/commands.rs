//! Commands and causation: record_command and causation_chain.

use crate::errors::{self, Code};
use crate::fcall::Args;
use crate::spi::{return_rows, Spi, Stmt};
use pgrx::pg_sys::{self, Datum};
use pgrx::IntoDatum;
use std::cell::RefCell;

thread_local! {
    /// The commands this transaction recorded, each with the subtransaction that recorded it.
    static RECORDED: RefCell<Vec<([u8; 16], pg_sys::SubTransactionId)>> = const { RefCell::new(Vec::new()) };
}

pub fn init() {
    unsafe {
        pg_sys::RegisterXactCallback(Some(forget_recorded), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(forget_recorded_sub), std::ptr::null_mut());
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn forget_recorded(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    if matches!(event, XACT_EVENT_COMMIT | XACT_EVENT_ABORT | XACT_EVENT_PREPARE | XACT_EVENT_PARALLEL_ABORT) {
        RECORDED.with(|r| r.borrow_mut().clear());
    }
}

/// A subtransaction that rolls back takes the commands it (or one inside it) recorded with it;
/// every subtransaction that began after it is inside it, so those are the ones with its id or a
/// later one.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn forget_recorded_sub(
    event: pg_sys::SubXactEvent::Type,
    sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        RECORDED.with(|r| r.borrow_mut().retain(|&(_, s)| s < sub));
    }
}

pub(crate) fn uuid_bytes(d: Datum) -> [u8; 16] {
    let mut b = [0u8; 16];
    b.copy_from_slice(unsafe { std::slice::from_raw_parts(d.cast_mut_ptr::<u8>(), 16) });
    b
}

static LOCK_COMMAND: Stmt = Stmt {
    sql: "SELECT 1 FROM ONLY eventstore.commands x WHERE command_id = $1 FOR KEY SHARE OF x",
    args: &[pg_sys::UUIDOID],
};

/// The foreign key of an event written directly to its command, checked as the executor's
/// foreign key trigger does it: the command must exist, and it is locked against deletion until
/// the transaction ends. A command this transaction recorded itself (and has not rolled back)
/// cannot go away before it commits, nor be seen by anyone else: no lookup.
pub fn check_for_event(command_id: Datum) {
    let id = uuid_bytes(command_id);
    if RECORDED.with(|r| r.borrow().iter().any(|(c, _)| *c == id)) {
        return;
    }
    let spi = Spi::connect();
    let found = spi.run(&LOCK_COMMAND, &[Some(command_id)], false).len() == 1;
    spi.finish();
    if !found {
        errors::raise_detail(
            Code::ERRCODE_FOREIGN_KEY_VIOLATION,
            "insert or update on table \"events\" violates foreign key constraint \"events_command_id_fkey\"".into(),
            format!("Key (command_id)=({}) is not present in table \"commands\".", uuid::Uuid::from_bytes(id)),
        );
    }
}

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
          VALUES ($1, $2, $3, $4, $5, $6, $7)",
    args: COMMAND_ARGS,
};

/// On a distributed store: commands is a reference table, written on every node, and the node
/// that holds the causing event is the only one whose trigger can look it up; so the correlation
/// id is derived here and written with the row (each node's trigger checks what it can).
static INSERT_COMMAND_CORRELATED: Stmt = Stmt {
    sql: "INSERT INTO eventstore.commands (command_id, command_type, payload, stream_id, user_id, \
                                          caused_by_stream_id, caused_by_sequence, correlation_id) \
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    args: &[
        pg_sys::UUIDOID,
        pg_sys::TEXTOID,
        pg_sys::JSONBOID,
        pg_sys::TEXTOID,
        pg_sys::TEXTOID,
        pg_sys::TEXTOID,
        pg_sys::INT8OID,
        pg_sys::UUIDOID,
    ],
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
    let given = args.opt_datum(6);
    let id = match given {
        Some(d) => unsafe { <pgrx::Uuid as pgrx::FromDatum>::from_datum(d, false) }.unwrap(),
        // time-ordered like event ids: new ids land at the right end of the primary key
        None => pgrx::Uuid::from_bytes(crate::append::new_v7().to_be_bytes()),
    };
    let id_datum = id.into_datum();
    let values = [
        id_datum,
        Some(command_type),
        Some(payload),
        stream_id,
        user_id,
        caused_by_stream,
        caused_by_sequence.map(Datum::from),
    ];
    let direct = crate::direct::insert_command(given.is_some(), || {
        let correlation = match (caused_by_stream, caused_by_sequence) {
            (Some(s), Some(q)) => causing_correlation(s, q).or(id_datum),
            _ => id_datum,
        };
        let created_at = Datum::from(unsafe { pg_sys::GetCurrentTransactionStartTimestamp() });
        let [a, b, c, d, e, f, g] = values;
        [a, b, c, d, e, f, g, correlation, Some(created_at)]
    });
    let inserted = match direct {
        Some(inserted) => inserted,
        None => {
            // No ON CONFLICT, which Postgres refuses on a table with rules: a given id that exists
            // already is a unique violation, caught.
            let distributed = crate::distributed::distributed();
            let correlation = match (caused_by_stream, caused_by_sequence) {
                (Some(s), Some(q)) if distributed => causing_correlation(s, q).or(id_datum),
                _ => id_datum,
            };
            let spi = Spi::connect();
            let insert = || match distributed {
                false => spi.run(&INSERT_COMMAND, &values, false).len(),
                true => {
                    let [a, b, c, d, e, f, g] = values;
                    spi.run(&INSERT_COMMAND_CORRELATED, &[a, b, c, d, e, f, g, correlation], false).len()
                }
            };
            let inserted = match given {
                Some(_) => crate::spi::unless_error(Code::ERRCODE_UNIQUE_VIOLATION, insert).is_some(),
                None => {
                    insert();
                    true
                }
            };
            spi.finish();
            inserted
        }
    };
    if inserted {
        let sub = unsafe { pg_sys::GetCurrentSubTransactionId() };
        RECORDED.with(|r| r.borrow_mut().push((*id.as_bytes(), sub)));
    } else {
        let spi = Spi::connect();
        let same = spi.run(&SAME_COMMAND, &values, false);
        if same.bool(0, 1) != Some(true) {
            errors::raise_detail(
                Code::ERRCODE_UNIQUE_VIOLATION,
                format!("command {id} was already recorded with different content"),
                "A command id may be reused only to retry exactly the same command.".into(),
            );
        }
        spi.finish();
    }
    id_datum.unwrap()
}

static CAUSING_EVENT: Stmt = Stmt {
    sql: "SELECT c.correlation_id FROM eventstore.events e \
          LEFT JOIN eventstore.commands c ON c.command_id = e.command_id \
          WHERE e.stream_id = $1 AND e.sequence = $2 FOR KEY SHARE OF e",
    args: &[pg_sys::TEXTOID, pg_sys::INT8OID],
};

/// The correlation id a command caused by this event gets (its command's correlation id; None
/// when the event has no command); the event is locked as the foreign key's check locks it.
fn causing_correlation(stream_id: Datum, sequence: i64) -> Option<Datum> {
    let spi = Spi::connect();
    let rows = spi.run(&CAUSING_EVENT, &[Some(stream_id), Some(Datum::from(sequence))], false);
    if rows.len() == 0 {
        let sid = unsafe { <String as pgrx::FromDatum>::from_datum(stream_id, false) }.unwrap_or_default();
        errors::raise(Code::ERRCODE_FOREIGN_KEY_VIOLATION, format!("causing event {sid}#{sequence} does not exist"));
    }
    let correlation = rows.datum(0, 1).map(|d| unsafe { pg_sys::SPI_datumTransfer(d, false, 16) });
    spi.finish();
    correlation
}

static CAUSATION_CHAIN: Stmt = Stmt {
    sql: "WITH RECURSIVE chain(depth, kind, command_id, stream_id, sequence, type) AS ( \
            SELECT 0, 'event'::text, e.command_id, e.stream_id, e.sequence, e.event_type \
            FROM (SELECT stream_id, sequence, command_id, event_type FROM eventstore.events \
                  UNION ALL SELECT stream_id, sequence, command_id, event_type FROM eventstore.archived_events) e \
            WHERE e.stream_id = $1 AND e.sequence = $2 \
          UNION ALL \
            SELECT ch.depth + 1, step.kind, step.command_id, step.stream_id, step.sequence, step.type \
            FROM chain ch \
            JOIN eventstore.commands c ON c.command_id = ch.command_id \
            CROSS JOIN LATERAL ( \
                SELECT 'command'::text, c.command_id, c.stream_id, NULL::bigint, c.command_type \
                WHERE ch.kind = 'event' \
              UNION ALL \
                SELECT 'event', e.command_id, e.stream_id, e.sequence, e.event_type \
                FROM (SELECT stream_id, sequence, command_id, event_type FROM eventstore.events \
                      UNION ALL SELECT stream_id, sequence, command_id, event_type FROM eventstore.archived_events) e \
                WHERE ch.kind = 'command' AND e.stream_id = c.caused_by_stream_id \
                  AND e.sequence = c.caused_by_sequence \
              UNION ALL \
                SELECT 'removed', NULL, c.caused_by_stream_id, c.caused_by_sequence, \
                       COALESCE((SELECT CASE WHEN s.state = 'tombstone' THEN 'tombstone' ELSE 'truncated' END \
                                 FROM eventstore.streams s WHERE s.stream_id = c.caused_by_stream_id), 'deleted') \
                WHERE ch.kind = 'command' AND c.caused_by_stream_id IS NOT NULL \
                  AND NOT EXISTS (SELECT FROM eventstore.events e \
                                  WHERE e.stream_id = c.caused_by_stream_id AND e.sequence = c.caused_by_sequence) \
                  AND NOT EXISTS (SELECT FROM eventstore.archived_events e \
                                  WHERE e.stream_id = c.caused_by_stream_id AND e.sequence = c.caused_by_sequence) \
            ) AS step(kind, command_id, stream_id, sequence, type) \
          ) \
          SELECT depth, kind, command_id, stream_id, sequence, type FROM chain ORDER BY depth",
    args: &[pg_sys::TEXTOID, pg_sys::INT8OID],
};

static CAUSATION_CHAIN_PRE_05: Stmt = Stmt {
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

static EVENT_STEP: Stmt = Stmt {
    sql: "SELECT command_id, event_type FROM eventstore.events WHERE stream_id = $1 AND sequence = $2 \
          UNION ALL \
          SELECT command_id, event_type FROM eventstore.archived_events WHERE stream_id = $1 AND sequence = $2",
    args: &[pg_sys::TEXTOID, pg_sys::INT8OID],
};

static COMMAND_STEP: Stmt = Stmt {
    sql: "SELECT command_type, stream_id, caused_by_stream_id, caused_by_sequence FROM eventstore.commands \
          WHERE command_id = $1",
    args: &[pg_sys::UUIDOID],
};

/// causation_chain on a distributed store, one step at a time: each event of the chain may live on
/// another node, and Citus runs a recursive query only within one stream. Each step is a lookup
/// that Citus routes to the node holding it.
fn causation_chain_stepwise(args: Args, stream_id: Datum, sequence: i64) -> Datum {
    let spi = Spi::connect();
    let mut rows: Vec<[Option<Datum>; 6]> = Vec::new();
    let mut at = Some((stream_id, sequence));
    while let Some((s, q)) = at.take() {
        let depth = Some(Datum::from(rows.len() as i32));
        let event = spi.run(&EVENT_STEP, &[Some(s), Some(Datum::from(q))], true);
        if event.len() == 0 {
            if rows.is_empty() {
                break;
            }
            // the causing event is gone; a distributed store has no lifecycle functions, so only a
            // superuser's DELETE can have removed it
            rows.push([depth, "removed".into_datum(), None, Some(s), Some(Datum::from(q)), "deleted".into_datum()]);
            break;
        }
        let command = event.datum(0, 1).map(|d| unsafe { pg_sys::SPI_datumTransfer(d, false, 16) });
        let event_type = event.text(0, 2);
        rows.push([depth, "event".into_datum(), command, Some(s), Some(Datum::from(q)), event_type.into_datum()]);
        let Some(command) = command else { break };
        let c = spi.run(&COMMAND_STEP, &[Some(command)], true);
        if c.len() == 0 || rows.len() > 100_000 {
            break;
        }
        rows.push([
            Some(Datum::from(rows.len() as i32)),
            "command".into_datum(),
            Some(command),
            c.text(0, 2).into_datum(),
            None,
            c.text(0, 1).into_datum(),
        ]);
        if let (Some(cs), Some(cq)) = (c.text(0, 3), c.i64(0, 4)) {
            at = Some((cs.into_datum().unwrap(), cq));
        }
    }
    let result = crate::spi::return_many(args.0, &rows);
    spi.finish();
    result
}

fn causation_chain(args: Args) -> Datum {
    let (stream_id, _) = args.required_text(0, "stream_id");
    let sequence = args.required_i64(1, "sequence");
    if crate::distributed::distributed() {
        return causation_chain_stepwise(args, stream_id, sequence);
    }
    return_rows(args.0, crate::integrity::for_schema(&CAUSATION_CHAIN, &CAUSATION_CHAIN_PRE_05), &[Some(stream_id), Some(Datum::from(sequence))])
}
