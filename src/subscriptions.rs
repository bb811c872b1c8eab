//! Durable named subscriptions: a checkpoint per subscription, moved by ack, and a lease so that
//! one worker at a time receives a subscription's events. A second worker polling the same
//! subscription gets nothing while the holder's session is alive and its lease (renewed by every
//! poll and ack) has not run out; when the holder's session ends or its lease expires, the next
//! poller takes over from the checkpoint, so unacknowledged events are delivered again
//! (at-least-once, without duplicates in the normal case).

use crate::errors::{self, Code};
use crate::fcall::{return_void, Args};
use crate::feed::{check_max_count, check_types, FeedRead};
use crate::spi::{Spi, Stmt};
use pgrx::pg_sys::{self, Datum};

static CREATE: Stmt = Stmt {
    sql: "INSERT INTO eventstore.subscription_state (name, stream_types, event_types, checkpoint, delivered_up_to) \
          VALUES ($1, $2, $3, $4, $4) ON CONFLICT (name) DO NOTHING",
    args: &[pg_sys::TEXTOID, pg_sys::TEXTARRAYOID, pg_sys::TEXTARRAYOID, pg_sys::INT8OID],
};

/// On a distributed store the checkpoint is one position per node (README, "Running on Citus").
static CREATE_NODES: Stmt = Stmt {
    sql: "INSERT INTO eventstore.subscription_state \
              (name, stream_types, event_types, checkpoint, delivered_up_to, checkpoint_nodes, delivered_nodes) \
          VALUES ($1, $2, $3, $4, $4, '{}', '{}') ON CONFLICT (name) DO NOTHING",
    args: &[pg_sys::TEXTOID, pg_sys::TEXTARRAYOID, pg_sys::TEXTARRAYOID, pg_sys::INT8OID],
};

sql_function!(es_create_subscription, pg_finfo_es_create_subscription, create_subscription);

fn create_subscription(args: Args) -> Datum {
    let (name, name_s) = args.required_text(0, "name");
    let stream_types = check_types(args.opt_datum(1), "stream_types");
    let event_types = check_types(args.opt_datum(2), "event_types");
    let start = args.required_i64(3, "start_from");
    if start < 0 {
        errors::invalid(format!("start_from must be 0 or more, not {start}"));
    }
    let distributed = crate::distributed::distributed();
    if distributed {
        require_node_columns();
        crate::distributed::require_coordinator("a subscription of a distributed store");
        if start != 0 {
            errors::raise_detail(
                Code::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("a subscription of a distributed store starts from the beginning (start_from 0), not from {start}"),
                "Positions are per node on a distributed store: one position cannot say where to start on every node.".into(),
            );
        }
    }
    let spi = Spi::connect();
    let create = if distributed { &CREATE_NODES } else { &CREATE };
    spi.run(create, &[Some(name), stream_types, event_types, Some(Datum::from(start))], false);
    if unsafe { pg_sys::SPI_processed } == 0 {
        errors::raise(Code::ERRCODE_DUPLICATE_OBJECT, format!("subscription \"{name_s}\" already exists"));
    }
    spi.finish();
    return_void()
}

static DELETE: Stmt = Stmt {
    sql: "DELETE FROM eventstore.subscription_state WHERE name = $1",
    args: &[pg_sys::TEXTOID],
};

sql_function!(es_delete_subscription, pg_finfo_es_delete_subscription, delete_subscription);

fn delete_subscription(args: Args) -> Datum {
    let (name, name_s) = args.required_text(0, "name");
    let spi = Spi::connect();
    spi.run(&DELETE, &[Some(name)], false);
    if unsafe { pg_sys::SPI_processed } == 0 {
        unknown(&name_s);
    }
    spi.finish();
    return_void()
}

fn unknown(name: &str) -> ! {
    errors::raise(Code::ERRCODE_UNDEFINED_OBJECT, format!("subscription \"{name}\" does not exist"))
}

static LOCK: Stmt = Stmt {
    sql: "SELECT s.stream_types, s.event_types, s.checkpoint, s.delivered_up_to, \
                 (s.lease_pid = $2 AND s.lease_backend_start = $3) AS mine, \
                 (s.lease_pid IS NOT NULL AND s.lease_expires_at > now() AND EXISTS ( \
                     SELECT 1 FROM pg_stat_activity a \
                     WHERE a.pid = s.lease_pid AND a.backend_start = s.lease_backend_start \
                       AND a.datname = current_database())) AS leased, \
                 s.lease_pid \
          FROM eventstore.subscription_state s WHERE s.name = $1 FOR UPDATE",
    args: &[pg_sys::TEXTOID, pg_sys::INT4OID, pg_sys::TIMESTAMPTZOID],
};

struct State {
    stream_types: Option<Datum>,
    event_types: Option<Datum>,
    checkpoint: i64,
    delivered_up_to: i64,
    mine: bool,
    /// Another live session holds an unexpired lease.
    held_by: Option<i32>,
}

fn me() -> (Datum, Datum) {
    unsafe { (Datum::from(pg_sys::MyProcPid), Datum::from(pg_sys::MyStartTimestamp)) }
}

fn lock(spi: &Spi, name: Datum, name_s: &str) -> State {
    let (pid, start) = me();
    let r = spi.run(&LOCK, &[Some(name), Some(pid), Some(start)], false);
    if r.len() == 0 {
        unknown(name_s);
    }
    let mine = r.bool(0, 5) == Some(true);
    let leased = r.bool(0, 6) == Some(true);
    State {
        stream_types: r.datum(0, 1),
        event_types: r.datum(0, 2),
        checkpoint: r.i64(0, 3).unwrap(),
        delivered_up_to: r.i64(0, 4).unwrap(),
        mine,
        held_by: (leased && !mine).then(|| r.i64(0, 7).unwrap_or(0) as i32),
    }
}

static TAKE_LEASE: Stmt = Stmt {
    sql: "UPDATE eventstore.subscription_state \
          SET lease_pid = $2, lease_backend_start = $3, lease_expires_at = now() + lease_seconds * interval '1 second', \
              delivered_up_to = $4, updated_at = now() \
          WHERE name = $1",
    args: &[pg_sys::TEXTOID, pg_sys::INT4OID, pg_sys::TIMESTAMPTZOID, pg_sys::INT8OID],
};

sql_function!(es_poll, pg_finfo_es_poll, poll);

/// The next events after the checkpoint, for the session holding (or now taking) the lease.
fn poll(args: Args) -> Datum {
    let (name, name_s) = args.required_text(0, "name");
    let max_count = check_max_count(args.required_i32(1, "max_count"));
    let distributed = crate::distributed::distributed();
    if distributed {
        require_node_columns();
    }
    let spi = Spi::connect();
    let s = lock(&spi, name, &name_s);
    if s.held_by.is_some() {
        // Another worker is on it: this one gets nothing until that lease ends.
        spi.finish();
        return crate::spi::return_nothing(args.0);
    }
    if distributed {
        poll_nodes(&spi, args, name, &s, max_count);
        spi.finish();
        return Datum::from(0);
    }
    let read = FeedRead {
        after: s.checkpoint,
        max_count,
        stream_types: s.stream_types,
        event_types: s.event_types,
        group: None,
    };
    // The feed's bound on horizons (feed::cluster_next_xid, in the parameters) must be read after
    // the snapshot the read uses: a statement run with a fresh snapshot of its own would take it
    // later, and could then see an event committed in between whose horizon is above the bound
    // and count it as settled while a lower position is still in flight (a subscriber missed one
    // event that way in the stress test). So: snapshot first, then the parameters, then the read
    // in that snapshot.
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
    let params = read.params();
    let reached = spi.return_rows(args.0, read.stmt(), &params, true);
    unsafe { pg_sys::PopActiveSnapshot() };
    // A new holder starts over from the checkpoint; the same holder may poll again before acking.
    let before = if s.mine { s.delivered_up_to } else { s.checkpoint };
    let delivered = reached.unwrap_or(s.checkpoint).max(before);
    let (pid, start) = me();
    spi.run(&TAKE_LEASE, &[Some(name), Some(pid), Some(start), Some(Datum::from(delivered))], false);
    spi.finish();
    Datum::from(0)
}

static ACK: Stmt = Stmt {
    sql: "UPDATE eventstore.subscription_state \
          SET checkpoint = $2, updated_at = now(), \
              lease_expires_at = CASE WHEN $3 THEN now() + lease_seconds * interval '1 second' ELSE lease_expires_at END \
          WHERE name = $1",
    args: &[pg_sys::TEXTOID, pg_sys::INT8OID, pg_sys::BOOLOID],
};

sql_function!(es_ack, pg_finfo_es_ack, ack);

/// Moves the checkpoint to `position`: never backwards, never past what poll delivered.
fn ack(args: Args) -> Datum {
    let (name, name_s) = args.required_text(0, "name");
    let position = args.required_i64(1, "position");
    let spi = Spi::connect();
    let s = lock(&spi, name, &name_s);
    if let Some(pid) = s.held_by {
        errors::raise_detail(
            Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("subscription \"{name_s}\" is leased by another session (pid {pid})"),
            "Only the session that polled the events may acknowledge them while its lease lasts.".into(),
        );
    }
    if crate::distributed::distributed() {
        ack_nodes(&spi, name, &name_s, &s, position);
        spi.finish();
        return return_void();
    }
    if position < s.checkpoint {
        errors::invalid(format!(
            "ack would move subscription \"{name_s}\" backwards: checkpoint is {}, not {position}",
            s.checkpoint
        ));
    }
    if position > s.delivered_up_to {
        errors::invalid(format!(
            "position {position} was not delivered by subscription \"{name_s}\" (delivered up to {})",
            s.delivered_up_to
        ));
    }
    spi.run(&ACK, &[Some(name), Some(Datum::from(position)), Some(Datum::from(s.mine))], false);
    spi.finish();
    return_void()
}

// ---------------------------------------------------------------------------------------------
// A distributed store's subscriptions (README, "Running on Citus"). The checkpoint is one position
// per node, and the feed is eventstore.read_all_nodes, whose rows come node by node, each node's in
// position order. ack(position) still names one row: it acknowledges that row and every row the
// batch delivered before it, so the new checkpoint is, for the nodes before the row's, what the
// batch delivered from them, and for the row's node the row itself. For that to mean the batch
// the client processed, a batch stays fixed until it is acknowledged: while a delivered batch is
// not fully acknowledged, its holder's polls deliver the rest of it again, never more (on one
// node a later poll may bring more, as positions there have one order).
// ---------------------------------------------------------------------------------------------

/// The per-node checkpoint and the holder's last delivery (distribute() gave the subscriptions made
/// before it theirs).
static LOCK_NODES: Stmt = Stmt {
    sql: "SELECT checkpoint_nodes, delivered_nodes, delivered_nodes <> checkpoint_nodes \
          FROM eventstore.subscription_state WHERE name = $1",
    args: &[pg_sys::TEXTOID],
};

static READ_NODES: Stmt = Stmt {
    sql: "SELECT global_position, stream_id, stream_type, sequence, event_type, event_version, payload, \
                 metadata, event_id, command_id, created_at \
          FROM eventstore.read_all_nodes($1, $2, $3, $4, up_to => $5)",
    args: &[pg_sys::JSONBOID, pg_sys::INT4OID, pg_sys::TEXTARRAYOID, pg_sys::TEXTARRAYOID, pg_sys::JSONBOID],
};

/// The lease as in TAKE_LEASE; the delivery is the checkpoint moved to the last row of each node
/// ($4, a JSON object built here from integers); delivered_up_to (and in ack, checkpoint) show the
/// largest position of the vector.
static TAKE_LEASE_NODES: Stmt = Stmt {
    sql: "UPDATE eventstore.subscription_state \
          SET lease_pid = $2, lease_backend_start = $3, lease_expires_at = now() + lease_seconds * interval '1 second', \
              delivered_nodes = checkpoint_nodes || $4::jsonb, \
              delivered_up_to = (SELECT COALESCE(max(value::bigint), 0) FROM jsonb_each_text(checkpoint_nodes || $4::jsonb)), \
              updated_at = now() \
          WHERE name = $1",
    args: &[pg_sys::TEXTOID, pg_sys::INT4OID, pg_sys::TIMESTAMPTZOID, pg_sys::TEXTOID],
};

static RENEW_LEASE: Stmt = Stmt {
    sql: "UPDATE eventstore.subscription_state \
          SET lease_expires_at = now() + lease_seconds * interval '1 second', updated_at = now() WHERE name = $1",
    args: &[pg_sys::TEXTOID],
};

/// The library serves an older schema until ALTER EXTENSION ... UPDATE runs; subscriptions of a
/// distributed store need 0.7.0's columns.
fn require_node_columns() {
    let has = crate::integrity::store_relid(c"subscription_state").is_some_and(|relid| unsafe {
        pg_sys::get_attnum(relid, c"checkpoint_nodes".as_ptr()) != pg_sys::InvalidAttrNumber as i16
    });
    if !has {
        errors::raise_detail(
            Code::ERRCODE_FEATURE_NOT_SUPPORTED,
            "subscriptions of a distributed store need the schema of pg_eventstore 0.7.0".into(),
            "Run ALTER EXTENSION pg_eventstore UPDATE on the coordinator.".into(),
        );
    }
}

fn poll_nodes(spi: &Spi, args: Args, name: Datum, s: &State, max_count: i32) {
    let r = spi.run(&LOCK_NODES, &[Some(name)], false);
    let (checkpoint, delivered, pending) = (r.datum(0, 1), r.datum(0, 2), r.bool(0, 3) == Some(true));
    if s.mine && pending {
        // the rest of the batch this session has not acknowledged yet, and nothing after it
        spi.return_rows(args.0, &READ_NODES, &[checkpoint, Some(Datum::from(max_count)), s.stream_types, s.event_types, delivered], false);
        spi.run(&RENEW_LEASE, &[Some(name)], false);
        return;
    }
    let reached = spi.return_rows_by_node(
        args.0,
        &READ_NODES,
        &[checkpoint, Some(Datum::from(max_count)), s.stream_types, s.event_types, None],
        false,
    );
    let moved: Vec<String> = reached.iter().map(|(node, position)| format!("\"{node}\": {position}")).collect();
    let moved = format!("{{{}}}", moved.join(", "));
    let (pid, start) = me();
    spi.run(
        &TAKE_LEASE_NODES,
        &[Some(name), Some(pid), Some(start), Some(pgrx::IntoDatum::into_datum(moved.as_str()).unwrap())],
        false,
    );
}

static NODE_STATE: Stmt = Stmt {
    sql: "SELECT COALESCE((checkpoint_nodes ->> $2)::bigint, 0), COALESCE((delivered_nodes ->> $2)::bigint, 0) \
          FROM eventstore.subscription_state WHERE name = $1",
    args: &[pg_sys::TEXTOID, pg_sys::TEXTOID],
};

/// The checkpoint moved to `position` on its node ($3) and, on every node before it, to what the
/// batch delivered.
static ACK_NODES: Stmt = Stmt {
    sql: "UPDATE eventstore.subscription_state \
          SET checkpoint_nodes = n.checkpoint, \
              checkpoint = (SELECT COALESCE(max(value::bigint), 0) FROM jsonb_each_text(n.checkpoint)), \
              lease_expires_at = now() + lease_seconds * interval '1 second', updated_at = now() \
          FROM (SELECT checkpoint_nodes \
                         || COALESCE((SELECT jsonb_object_agg(key, value) FROM jsonb_each(delivered_nodes) \
                                      WHERE key::bigint < $3), '{}') \
                         || jsonb_build_object($3::text, $2) AS checkpoint \
                FROM eventstore.subscription_state WHERE name = $1) n \
          WHERE name = $1",
    args: &[pg_sys::TEXTOID, pg_sys::INT8OID, pg_sys::INT8OID],
};

fn ack_nodes(spi: &Spi, name: Datum, name_s: &str, s: &State, position: i64) {
    require_node_columns();
    if !s.mine {
        // the batch a position belongs to is known only to the session that polled it
        errors::raise_detail(
            Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("subscription \"{name_s}\" was not polled by this session"),
            "On a distributed store, the session that polled a batch acknowledges it.".into(),
        );
    }
    let node = crate::feed::node_of(position);
    let node_s = node.to_string();
    let r = spi.run(&NODE_STATE, &[Some(name), Some(pgrx::IntoDatum::into_datum(node_s.as_str()).unwrap())], false);
    let (checkpoint, delivered) = (r.i64(0, 1).unwrap(), r.i64(0, 2).unwrap());
    if position < checkpoint {
        errors::invalid(format!(
            "ack would move subscription \"{name_s}\" backwards: its checkpoint on node {node} is {checkpoint}, not {position}"
        ));
    }
    if position > delivered {
        errors::invalid(format!(
            "position {position} was not delivered by subscription \"{name_s}\" (delivered up to {delivered} on node {node})"
        ));
    }
    if position == checkpoint {
        // already acknowledged (a repeated ack): nothing before it moves either
        return;
    }
    spi.run(&ACK_NODES, &[Some(name), Some(Datum::from(position)), Some(Datum::from(node))], false);
}
