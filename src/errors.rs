//! Every error the store raises goes through here, so each has a SQLSTATE and a message for people.
//! The codes are documented in README.md ("Errors").

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

pub use pgrx::PgSqlErrorCode as Code;

/// Raise an ERROR; never returns. The transaction (or the caller's savepoint) rolls back,
/// so nothing half-written survives.
pub fn raise(code: PgSqlErrorCode, message: String) -> ! {
    ErrorReport::new(code, message, "pg_eventstore").report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

pub fn raise_detail(code: PgSqlErrorCode, message: String, detail: String) -> ! {
    ErrorReport::new(code, message, "pg_eventstore")
        .set_detail(detail)
        .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

pub fn null_arg(name: &str) -> ! {
    raise(Code::ERRCODE_NULL_VALUE_NOT_ALLOWED, format!("{name} must not be NULL"))
}

pub fn invalid(message: String) -> ! {
    raise(Code::ERRCODE_INVALID_PARAMETER_VALUE, message)
}

/// The optimistic-concurrency conflict: retryable, so it carries the serialization-failure code.
pub fn version_conflict(stream_id: &str, expected: i64, actual: i64) -> ! {
    let wanted = match expected {
        -1 => "the stream to exist".to_string(),
        0 => "version 0 (no events)".to_string(),
        n => format!("version {n}"),
    };
    raise_detail(
        Code::ERRCODE_T_R_SERIALIZATION_FAILURE,
        format!(
            "concurrency conflict on stream \"{stream_id}\": expected version {expected}, actual version {actual}"
        ),
        format!("The append expected {wanted}; reload the stream and retry."),
    )
}

/// An event id the append names is an event of another stream.
pub fn event_id_elsewhere(other: &str, stream_id: &str) -> ! {
    raise_detail(
        Code::ERRCODE_UNIQUE_VIOLATION,
        format!("event id already exists in stream \"{other}\""),
        format!("Event ids are unique in the store; the append to \"{stream_id}\" was rejected."),
    )
}
