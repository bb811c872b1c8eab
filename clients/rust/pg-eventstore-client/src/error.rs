//! The store's errors, by SQLSTATE (README.md, "Errors"), as one enum.

/// What went wrong, as an application needs to tell it apart.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stream's version was not the expected one (SQLSTATE 40001): reload and retry.
    #[error("concurrency conflict on stream {stream:?}: expected version {expected:?}, actual version {actual:?}")]
    Conflict {
        /// Empty when the server did not name it (a serialization failure of another kind).
        stream: String,
        expected: Option<i64>,
        actual: Option<i64>,
    },
    /// An unknown subscription (42704), command or causing event (23503).
    #[error("not found: {0}")]
    NotFound(String),
    /// An argument the store refuses (22xxx, 23514): nothing was written.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An event or command id that exists already with other content (23505).
    #[error("duplicate: {0}")]
    Duplicate(String),
    /// A subscription that exists already (42710).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// Another session holds the subscription's lease (55000).
    #[error("leased by another session: {0}")]
    Leased(String),
    /// The role may not do this (42501).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Any other error the database reported.
    #[error("database error {code}: {message}")]
    Database { code: String, message: String },
    /// The connection failed or the pool is closed.
    #[error(transparent)]
    Connection(sqlx::Error),
    /// A payload could not be turned into JSON or back.
    #[error(transparent)]
    Serialization(#[from] serde_json::Error),
}

impl Error {
    /// A conflict an application should answer by reloading and retrying.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// The SQLSTATE the database reported, if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Conflict { .. } => Some("40001"),
            Error::Database { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        let Some(db) = e.as_database_error() else { return Error::Connection(e) };
        let message = db.message().to_string();
        match db.code().as_deref().unwrap_or("") {
            "40001" | "40P01" => conflict(&message),
            "42704" | "23503" => Error::NotFound(message),
            "23505" => Error::Duplicate(message),
            "42710" => Error::AlreadyExists(message),
            "55000" => Error::Leased(message),
            "42501" => Error::PermissionDenied(message),
            "23514" => Error::InvalidArgument(message),
            code if code.starts_with("22") => Error::InvalidArgument(message),
            code => Error::Database { code: code.to_string(), message },
        }
    }
}

/// The store's conflict message: `concurrency conflict on stream "S": expected version E, actual version A`.
fn conflict(message: &str) -> Error {
    let parsed = (|| {
        let rest = message.strip_prefix("concurrency conflict on stream \"")?;
        let (stream, versions) = rest.rsplit_once("\": expected version ")?;
        let (expected, actual) = versions.split_once(", actual version ")?;
        Some((stream.to_string(), expected.parse().ok()?, actual.parse().ok()?))
    })();
    match parsed {
        Some((stream, expected, actual)) => Error::Conflict { stream, expected: Some(expected), actual: Some(actual) },
        None => Error::Conflict { stream: String::new(), expected: None, actual: None },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conflicts_name_the_stream_and_both_versions() {
        match super::conflict("concurrency conflict on stream \"a \"quoted\" id\": expected version 3, actual version 5") {
            super::Error::Conflict { stream, expected, actual } => {
                assert_eq!((stream.as_str(), expected, actual), ("a \"quoted\" id", Some(3), Some(5)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(super::conflict("could not serialize access"), super::Error::Conflict { expected: None, .. }));
    }
}
