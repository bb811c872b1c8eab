//! The global feed: read_all in global_position order without ever skipping an event that commits
//! late, category and consumer-group reads, backward reads, and LISTEN/NOTIFY wake-ups.
//!
//! Why it is gap-safe: every event stores `horizon_xid`, the next transaction id read *after* its
//! position was taken, and its transaction had an id before it took the position. So when every
//! transaction with an id below an event's horizon has ended, every lower position is either
//! committed (and visible) or never will be. read_all returns events in position order and stops at
//! the first one whose horizon is not yet below the oldest running transaction id of its snapshot
//! (`pg_snapshot_xmin`). A transaction held open delays the feed; it can never make it skip.
//! A horizon above this cluster's next transaction id cannot have been made here: such events come
//! from a dump of an older cluster and are settled.

use crate::errors;
use crate::fcall::Args;
use crate::spi::{return_rows, Spi, Stmt};
use pgrx::pg_sys::{self, Datum};
use pgrx::{FromDatum, IntoDatum};

macro_rules! feed_columns {
    () => {
        "global_position, stream_id, stream_type, sequence, event_type, event_version, payload, metadata, \
         event_id, command_id, created_at"
    };
}

macro_rules! settled_select {
    ($source:expr) => {
        concat!(
            "SELECT ", feed_columns!(), " FROM (",
            "SELECT e.*, bool_and(e.horizon_xid <= x.xmin OR e.horizon_xid > $7) ",
            "OVER (ORDER BY e.global_position) AS settled ",
            "FROM (", $source, ") e, (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin) x",
            ") t WHERE t.settled ORDER BY t.global_position"
        )
    };
}

macro_rules! feed_filters {
    () => {
        " AND ($4::text[] IS NULL OR e.event_type = ANY ($4)) \
          AND ($6::int4 IS NULL OR (hashtextextended(e.stream_id, 0) & 9223372036854775807) % $6 = $5)"
    };
}

const FEED_ARGS: &[pg_sys::Oid] = &[
    pg_sys::INT8OID,
    pg_sys::INT4OID,
    pg_sys::TEXTARRAYOID,
    pg_sys::TEXTARRAYOID,
    pg_sys::INT4OID,
    pg_sys::INT4OID,
    pg_sys::XID8OID,
];

/// All streams: one walk of the global_position index from the reader's position.
pub static READ_ALL: Stmt = Stmt {
    sql: settled_select!(concat!(
        "SELECT * FROM eventstore.events e WHERE e.global_position > $1",
        feed_filters!(),
        " ORDER BY e.global_position LIMIT $2"
    )),
    args: FEED_ARGS,
};

/// Some stream types: one walk of (stream_type, global_position) per type, merged.
pub static READ_CATEGORIES: Stmt = Stmt {
    sql: settled_select!(concat!(
        "SELECT c.* FROM (SELECT DISTINCT unnest($3::text[]) AS stream_type) k ",
        // The range is written on the whole (stream_type, global_position) key, not as
        // stream_type = k AND global_position > $1: with the equality the planner can serve the
        // order from the global_position index plus a filter, which it prefers because that index
        // follows the heap, and which reads every event of every type up to the batch (25 ms
        // instead of 4 ms for a 1% category at 1M events, see bench/results/feed_scale.md).
        "CROSS JOIN LATERAL (SELECT * FROM eventstore.events e ",
        "WHERE (e.stream_type, e.global_position) > (k.stream_type, $1) AND e.stream_type <= k.stream_type",
        feed_filters!(),
        " ORDER BY e.stream_type, e.global_position LIMIT $2) c ORDER BY c.global_position LIMIT $2"
    )),
    args: FEED_ARGS,
};

/// The node (Citus group id) that assigned a position: each node of a distributed store takes its
/// positions from its own range, group id << 48 onwards (eventstore.distribute_prepare_node); on
/// one node every position is node 0's.
pub fn node_of(position: i64) -> i64 {
    position >> 48
}

/// A checked read_all request; also what a subscription's poll reads.
pub struct FeedRead {
    pub after: i64,
    pub max_count: i32,
    pub stream_types: Option<Datum>,
    pub event_types: Option<Datum>,
    pub group: Option<(i32, i32)>,
}

impl FeedRead {
    pub fn stmt(&self) -> &'static Stmt {
        if self.stream_types.is_some() { &READ_CATEGORIES } else { &READ_ALL }
    }

    /// The statement's parameters.
    pub fn params(&self) -> Vec<Option<Datum>> {
        let next = cluster_next_xid();
        vec![
            Some(Datum::from(self.after)),
            Some(Datum::from(self.max_count)),
            self.stream_types,
            self.event_types,
            self.group.map(|g| Datum::from(g.0)),
            self.group.map(|g| Datum::from(g.1)),
            Some(Datum::from(next)),
        ]
    }
}

/// A text[] filter: NULL means all; it must not be empty or hold NULL or empty strings.
pub fn check_types(d: Option<Datum>, name: &str) -> Option<Datum> {
    let d = d?;
    let values = unsafe { Vec::<Option<String>>::from_datum(d, false) }.unwrap_or_default();
    if values.is_empty() {
        errors::invalid(format!("{name} must not be empty (NULL means all)"));
    }
    if values.iter().any(|v| v.as_deref().is_none_or(str::is_empty)) {
        errors::invalid(format!("{name} must not contain NULL or empty names"));
    }
    Some(d)
}

pub fn check_group(member: Option<i32>, size: Option<i32>) -> Option<(i32, i32)> {
    match (member, size) {
        (None, None) => None,
        (Some(m), Some(s)) if s >= 1 && (0..s).contains(&m) => Some((m, s)),
        (Some(m), Some(s)) => errors::invalid(format!(
            "consumer_group_member must be between 0 and consumer_group_size - 1 (size {s} must be 1 or more), not {m}"
        )),
        _ => errors::invalid("consumer_group_member and consumer_group_size must be given together".into()),
    }
}

pub fn check_max_count(v: i32) -> i32 {
    if v < 0 {
        errors::invalid(format!("max_count must be 0 or more, not {v}"));
    }
    v
}

sql_function!(es_read_all, pg_finfo_es_read_all, read_all);

fn read_all(args: Args) -> Datum {
    crate::distributed::refuse_with(
        "eventstore.read_all",
        "Each node of a distributed store has a feed of its own: read them with eventstore.read_all_nodes.",
    );
    let after = args.required_i64(0, "after_position");
    if after < 0 {
        errors::invalid(format!("after_position must be 0 or more, not {after}"));
    }
    let read = FeedRead {
        after,
        max_count: check_max_count(args.required_i32(1, "max_count")),
        stream_types: check_types(args.opt_datum(2), "stream_types"),
        event_types: check_types(args.opt_datum(3), "event_types"),
        group: check_group(args.opt_i32(4), args.opt_i32(5)),
    };
    return_rows(args.0, read.stmt(), &read.params())
}

/// The bound above which a horizon cannot have been made by this cluster. Read after the snapshot
/// the feed statement uses was taken, so every horizon visible in it that this cluster made is at
/// most this. On a hot standby the replayed next id can trail the primary's, so there the bound is
/// disabled and only the xmin rule applies (which a standby's snapshot keeps safe).
pub fn cluster_next_xid() -> u64 {
    unsafe {
        if pg_sys::RecoveryInProgress() {
            u64::MAX
        } else {
            pg_sys::ReadNextFullTransactionId().value
        }
    }
}

static TAIL: Stmt = Stmt {
    sql: "SELECT global_position, (horizon_xid <= pg_snapshot_xmin(pg_current_snapshot()) OR horizon_xid > $2) \
          FROM eventstore.events WHERE global_position < $1 ORDER BY global_position DESC LIMIT 1000",
    args: &[pg_sys::INT8OID, pg_sys::XID8OID],
};

static BLOCKER: Stmt = Stmt {
    sql: "SELECT x.xmin, a.pid, a.xact_start, \
                 CASE WHEN a.pid IS NULL THEN NULL WHEN a.usename = session_user OR pg_has_role(session_user, 'pg_read_all_stats', 'USAGE') \
                      THEN a.query ELSE '<insufficient privilege>' END \
          FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin) x \
          LEFT JOIN pg_stat_activity a \
            ON a.backend_xid::text = (x.xmin::text::numeric % 4294967296)::text \
           AND x.xmin < $1 \
          ORDER BY a.xact_start LIMIT 1",
    args: &[pg_sys::XID8OID],
};

sql_function!(es_feed_status, pg_finfo_es_feed_status, feed_status);

/// One row: the newest position, the position a reader at the head reaches now, how many events
/// sit between them, and the transaction that holds the horizon back (if any).
fn feed_status(args: Args) -> Datum {
    crate::distributed::refuse("eventstore.feed_status");
    let next = cluster_next_xid();
    let spi = Spi::connect();
    let (head, safe) = head_and_safe(&spi, next);
    let lagging = if safe < head { count_after(&spi, safe) } else { 0 };
    let blocker = spi.run(&BLOCKER, &[Some(Datum::from(next))], true);
    // With nothing held back, the oldest running transaction (the notifier writing its state, say)
    // holds nothing: no blocker is named.
    let held = lagging > 0;
    let row = [
        Some(Datum::from(head)),
        Some(Datum::from(safe)),
        Some(Datum::from(lagging)),
        blocker.datum(0, 1),
        blocker.datum(0, 2).filter(|_| held),
        blocker.datum(0, 3).filter(|_| held),
        blocker.text(0, 4).filter(|_| held).and_then(|q| q.into_datum()),
    ];
    spi.finish();
    crate::spi::return_row(args.0, &row)
}

/// The newest position, and the position a reader at the head reaches now: the last event before
/// the first one that is not settled. Not that event's position minus one: positions are not
/// dense, and a lower one may still belong to a transaction in flight.
pub fn head_and_safe(spi: &Spi, next: u64) -> (i64, i64) {
    // Unsettled events are the newest ones (positions are taken in time order); walk back from the
    // head until a whole page is settled, which also catches a writer that read its horizon late.
    let (mut head, mut first_unsettled, mut before) = (None, None, i64::MAX);
    let mut below_unsettled: Option<i64> = None;
    loop {
        let page = spi.run(&TAIL, &[Some(Datum::from(before)), Some(Datum::from(next))], true);
        let mut any_unsettled = false;
        for r in 0..page.len() {
            let p = page.i64(r, 1).unwrap();
            head.get_or_insert(p);
            if page.bool(r, 2) == Some(false) {
                any_unsettled = true;
                first_unsettled = Some(p);
                below_unsettled = None;
            } else if first_unsettled.is_some() && below_unsettled.is_none() {
                below_unsettled = Some(p);
            }
            before = p;
        }
        if page.len() < 1000 || !any_unsettled {
            break;
        }
    }
    let head = head.unwrap_or(0);
    match first_unsettled {
        None => (head, head),
        Some(_) => (head, below_unsettled.unwrap_or(0)),
    }
}

static COUNT_AFTER: Stmt = Stmt {
    sql: "SELECT count(*) FROM eventstore.events WHERE global_position > $1",
    args: &[pg_sys::INT8OID],
};

fn count_after(spi: &Spi, position: i64) -> i64 {
    spi.run(&COUNT_AFTER, &[Some(Datum::from(position))], true).i64(0, 1).unwrap_or(0)
}

static STREAM_BACKWARD: Stmt = Stmt {
    sql: "SELECT sequence, event_type, event_version, payload, metadata, event_id, command_id, \
                 global_position, created_at \
          FROM eventstore.events WHERE stream_id = $1 AND sequence <= COALESCE($2, 9223372036854775807) \
            AND sequence >= (SELECT COALESCE(max(truncate_before), 0) FROM eventstore.streams WHERE stream_id = $1) \
          ORDER BY sequence DESC LIMIT $3",
    args: &[pg_sys::TEXTOID, pg_sys::INT8OID, pg_sys::INT8OID],
};

static STREAM_BACKWARD_PRE_05: Stmt = Stmt {
    sql: "SELECT sequence, event_type, event_version, payload, metadata, event_id, command_id, \
                 global_position, created_at \
          FROM eventstore.events WHERE stream_id = $1 AND sequence <= COALESCE($2, 9223372036854775807) \
          ORDER BY sequence DESC LIMIT $3",
    args: &[pg_sys::TEXTOID, pg_sys::INT8OID, pg_sys::INT8OID],
};

fn stream_backward() -> &'static Stmt {
    crate::integrity::for_schema(&STREAM_BACKWARD, &STREAM_BACKWARD_PRE_05)
}

sql_function!(es_read_stream_backward, pg_finfo_es_read_stream_backward, read_stream_backward);

/// Newest first, from `from_sequence` (NULL = the last event) down.
fn read_stream_backward(args: Args) -> Datum {
    let (stream_id, _) = args.required_text(0, "stream_id");
    let from = args.opt_i64(1);
    let max = args.required_i64(2, "max_count");
    if max < 0 {
        errors::invalid(format!("max_count must be 0 or more, not {max}"));
    }
    return_rows(args.0, stream_backward(), &[Some(stream_id), from.map(Datum::from), Some(Datum::from(max))])
}

sql_function!(es_last_event, pg_finfo_es_last_event, last_event);

fn last_event(args: Args) -> Datum {
    let (stream_id, _) = args.required_text(0, "stream_id");
    return_rows(args.0, stream_backward(), &[Some(stream_id), None, Some(Datum::from(1i64))])
}

static CATEGORY_BACKWARD: Stmt = Stmt {
    sql: concat!(
        "SELECT ", feed_columns!(), " FROM eventstore.events ",
        "WHERE stream_type = $1 AND global_position < COALESCE($3, 9223372036854775807) ",
        "ORDER BY global_position DESC LIMIT $2"
    ),
    args: &[pg_sys::TEXTOID, pg_sys::INT4OID, pg_sys::INT8OID],
};

sql_function!(es_read_category_backward, pg_finfo_es_read_category_backward, read_category_backward);

/// A category's newest events (what a UI shows), newest first; `before_position` pages back.
fn read_category_backward(args: Args) -> Datum {
    crate::distributed::refuse("eventstore.read_category_backward");
    let (stream_type, _) = args.required_text(0, "stream_type");
    let max = check_max_count(args.required_i32(1, "max_count"));
    return_rows(
        args.0,
        &CATEGORY_BACKWARD,
        &[Some(stream_type), Some(Datum::from(max)), args.opt_datum(2)],
    )
}

// ---------------------------------------------------------------------------------------------
// NOTIFY: once per committing transaction that appended, on channel "eventstore" and on
// "eventstore.<stream_type>" for each stream type it touched, with the highest position as payload.
// The notifier worker sends them (notifier.rs); a transaction that finds none sends its own.
// ---------------------------------------------------------------------------------------------

/// Channel names are identifiers: at most 63 bytes. Longer stream types get only the main channel.
const MAX_CHANNEL: usize = 63;

/// One transaction's notifications.
pub fn send<'a>(max_position: i64, stream_types: impl Iterator<Item = &'a str>) {
    let payload = max_position.to_string();
    notify("eventstore", &payload);
    for t in stream_types {
        let channel = format!("eventstore.{t}");
        if channel.len() <= MAX_CHANNEL {
            notify(&channel, &payload);
        }
    }
}

fn notify(channel: &str, payload: &str) {
    unsafe {
        pgrx::direct_function_call_as_datum(pg_sys::pg_notify, &[channel.into_datum(), payload.into_datum()]);
    }
}
