//! What goes into the store and what comes back, with typed payloads through serde.

use crate::Error;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// An event to append. Payload and metadata are JSON objects (the store's rule).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: String,
    pub payload: Value,
    pub metadata: Value,
    /// Caller-chosen id: a retry of an append that committed returns its sequence instead of
    /// appending twice. None: the store generates a UUIDv7.
    pub id: Option<Uuid>,
    /// The payload's schema version (1 or more).
    pub version: i32,
}

impl NewEvent {
    /// An event whose payload is `payload` serialized; it must serialize to a JSON object.
    pub fn new(event_type: impl Into<String>, payload: &impl Serialize) -> Result<NewEvent, Error> {
        Ok(NewEvent {
            event_type: event_type.into(),
            payload: object(payload, "payload")?,
            metadata: Value::Object(Map::new()),
            id: None,
            version: 1,
        })
    }

    pub fn with_metadata(mut self, metadata: &impl Serialize) -> Result<NewEvent, Error> {
        self.metadata = object(metadata, "metadata")?;
        Ok(self)
    }

    pub fn with_id(mut self, id: Uuid) -> NewEvent {
        self.id = Some(id);
        self
    }

    pub fn with_version(mut self, version: i32) -> NewEvent {
        self.version = version;
        self
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut e = json!({"type": self.event_type, "payload": self.payload, "metadata": self.metadata, "version": self.version});
        if let Some(id) = self.id {
            e["id"] = json!(id.to_string());
        }
        e
    }
}

fn object(v: &impl Serialize, what: &str) -> Result<Value, Error> {
    match serde_json::to_value(v)? {
        Value::Object(m) => Ok(Value::Object(m)),
        other => Err(Error::InvalidArgument(format!("{what} must serialize to a JSON object, not {other}"))),
    }
}

/// What the stream's version must be before an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Any version: concurrent appends all succeed, one after the other.
    Any,
    /// The stream must have no events yet.
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's version must be exactly this.
    Exact(i64),
}

impl ExpectedVersion {
    pub(crate) fn to_sql(self) -> Option<i64> {
        match self {
            ExpectedVersion::Any => None,
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::StreamExists => Some(-1),
            ExpectedVersion::Exact(v) => Some(v),
        }
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub stream_id: String,
    pub stream_type: String,
    pub sequence: i64,
    pub global_position: i64,
    pub event_type: String,
    pub event_version: i32,
    pub payload: Value,
    pub metadata: Value,
    pub event_id: Uuid,
    pub command_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// The payload as a type of the application's.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_value(self.payload.clone())?)
    }
}

/// The newest snapshot of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The last event folded into it.
    pub sequence: i64,
    pub snapshot_version: i32,
    pub payload: Value,
    pub created_at: DateTime<Utc>,
}

impl Snapshot {
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_value(self.payload.clone())?)
    }
}

/// A stream loaded for folding: its newest snapshot (if any) and the events after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub snapshot: Option<Snapshot>,
    pub events: Vec<RecordedEvent>,
}

impl Loaded {
    /// The stream's version as loaded (the last event's sequence, or the snapshot's).
    pub fn version(&self) -> i64 {
        self.events.last().map(|e| e.sequence).or(self.snapshot.as_ref().map(|s| s.sequence)).unwrap_or(0)
    }
}

/// A command to record (Sequent's command records).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewCommand {
    pub command_type: String,
    pub payload: Value,
    pub stream_id: Option<String>,
    pub user_id: Option<String>,
    /// The event that caused this command: (stream id, sequence).
    pub caused_by: Option<(String, i64)>,
    /// Caller-chosen id, for safe retries; None: generated.
    pub command_id: Option<Uuid>,
}

impl NewCommand {
    pub fn new(command_type: impl Into<String>, payload: &impl Serialize) -> Result<NewCommand, Error> {
        Ok(NewCommand { command_type: command_type.into(), payload: object(payload, "payload")?, ..Default::default() })
    }

    pub fn for_stream(mut self, stream_id: impl Into<String>) -> NewCommand {
        self.stream_id = Some(stream_id.into());
        self
    }

    pub fn by_user(mut self, user_id: impl Into<String>) -> NewCommand {
        self.user_id = Some(user_id.into());
        self
    }

    pub fn caused_by(mut self, stream_id: impl Into<String>, sequence: i64) -> NewCommand {
        self.caused_by = Some((stream_id.into(), sequence));
        self
    }

    pub fn with_id(mut self, id: Uuid) -> NewCommand {
        self.command_id = Some(id);
        self
    }
}

/// One step of a causation chain, from an event back to the root command.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainLink {
    pub depth: i32,
    /// "event" or "command".
    pub kind: String,
    pub command_id: Option<Uuid>,
    pub stream_id: Option<String>,
    pub sequence: Option<i64>,
    /// The event type or the command type.
    pub type_name: String,
}

/// Which events of the global feed to read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedFilter {
    pub stream_types: Option<Vec<String>>,
    pub event_types: Option<Vec<String>>,
    /// (member, size): only the streams whose id hashes to `member` of `size`.
    pub consumer_group: Option<(i32, i32)>,
}

impl FeedFilter {
    pub fn stream_types<S: Into<String>>(types: impl IntoIterator<Item = S>) -> FeedFilter {
        FeedFilter { stream_types: Some(types.into_iter().map(Into::into).collect()), ..Default::default() }
    }
}
