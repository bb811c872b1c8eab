//! The store on a Citus cluster (`eventstore.distribute()`, README "Running on Citus"): what the
//! Rust side needs to know about it. The distribution itself is SQL (sql/schema.sql).

use crate::errors::{self, Code};
use crate::spi::{end_nest_level, set_in_nest_level, Spi, Stmt};
use pgrx::pg_sys;
use std::cell::Cell;

thread_local! {
    /// Whether eventstore.events is a Citus distributed table; forgotten on every relcache
    /// invalidation (create_distributed_table sends one for the table it distributes).
    static DISTRIBUTED: Cell<Option<bool>> = const { Cell::new(None) };
}

pub(crate) fn forget() {
    DISTRIBUTED.set(None);
}

/// Whether the citus extension is in this database. Asked when a statement is prepared, not per
/// call: a statement prepared before CREATE EXTENSION citus keeps its generic plan until the
/// session ends, which Citus then refuses with an error (never with a wrong result).
pub(crate) fn citus_installed() -> bool {
    unsafe { pg_sys::get_extension_oid(c"citus".as_ptr(), true) != pg_sys::InvalidOid }
}

static IS_DISTRIBUTED: Stmt = Stmt {
    sql: "SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition \
          WHERE logicalrelid = 'eventstore.events'::pg_catalog.regclass)",
    args: &[],
};

/// Whether this database's store has been distributed with eventstore.distribute().
pub(crate) fn distributed() -> bool {
    if let Some(d) = DISTRIBUTED.get() {
        return d;
    }
    let d = citus_installed() && {
        let spi = Spi::connect();
        let d = spi.run(&IS_DISTRIBUTED, &[], true).bool(0, 1).unwrap_or(false);
        spi.finish();
        d
    };
    DISTRIBUTED.set(Some(d));
    d
}

/// Refuses what does not work on a distributed store (yet), instead of running it half-way.
pub(crate) fn refuse(what: &str) {
    refuse_with(what, "README.md, \"Running on Citus\", lists what a distributed store can do.")
}

pub(crate) fn refuse_with(what: &str, detail: &str) {
    if distributed() {
        errors::raise_detail(
            Code::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("{what} is not available on a distributed store"),
            detail.into(),
        );
    }
}

static IS_COORDINATOR: Stmt = Stmt { sql: "SELECT pg_catalog.citus_is_coordinator()", args: &[] };

/// What lives in the coordinator's own tables (subscriptions) is made there.
pub(crate) fn require_coordinator(what: &str) {
    let spi = Spi::connect();
    let here = spi.run(&IS_COORDINATOR, &[], true).bool(0, 1).unwrap_or(false);
    spi.finish();
    if !here {
        errors::raise_detail(
            Code::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("{what} is made on the Citus coordinator, and this node is not it"),
            "Subscriptions of a distributed store live in the coordinator's subscription_state; connect there.".into(),
        );
    }
}

static LOCK_SHARD: Stmt = Stmt {
    sql: "SELECT pg_catalog.lock_shard_metadata(5, \
              ARRAY[pg_catalog.get_shard_id_for_distribution_column('eventstore.streams', $1)])",
    args: &[pg_sys::TEXTOID],
};

/// Whether the stream's shard is here, and whether this node's positions come from its own range
/// (a node added to the cluster after distribute() has the range of a fresh install, the
/// coordinator's, until eventstore.prepare_nodes() runs).
static SHARD_IS_LOCAL: Stmt = Stmt {
    sql: "SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_placement p \
                 WHERE p.shardid = pg_catalog.get_shard_id_for_distribution_column('eventstore.streams', $1) \
                   AND p.groupid = l.groupid), \
                 (SELECT s.seqmin FROM pg_catalog.pg_sequence s \
                   WHERE s.seqrelid = 'eventstore.global_position_seq'::pg_catalog.regclass) = (l.groupid::int8 << 48) + 1 \
          FROM pg_catalog.pg_dist_local_group l",
    args: &[pg_sys::TEXTOID],
};

/// An append runs where its stream lives: there the tables' triggers see the grant the function
/// holds, in the same backend. Citus delegates a call to that node when its arguments are constants
/// or parameters; a call it runs elsewhere (a volatile argument such as gen_random_uuid(), a call
/// from another function or for each row of a query) would reach the stream's node as a plain
/// INSERT from another backend, which the triggers there refuse for its store-assigned columns. So
/// the append holds the shard's placement in place (the share lock a shard move's switch-over
/// waits for; it takes the exclusive one) and then checks, in a fresh snapshot, that it is here.
pub(crate) fn require_local(stream_id: pg_sys::Datum, name: &str) {
    let spi = Spi::connect();
    spi.run(&LOCK_SHARD, &[Some(stream_id)], false);
    let (local, prepared) = placement(&spi, stream_id);
    spi.finish();
    if local && !prepared {
        errors::raise_detail(
            Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("the node that holds stream \"{name}\" is not prepared for the distributed store"),
            "The node joined the cluster after eventstore.distribute(): run SELECT eventstore.prepare_nodes() \
             on the coordinator, which gives it its own range of positions."
                .into(),
        );
    }
    if !local {
        errors::raise_detail(
            Code::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("the append to stream \"{name}\" did not run on the node that holds the stream"),
            "Citus runs eventstore.append_event and append_events on the stream's node when they are called \
             on their own (SELECT eventstore.append_event(...)) with constants or parameters as arguments; \
             compute volatile values such as gen_random_uuid() in the client. If the stream's shard was \
             moving to another node at that moment, a retry runs on the new node."
                .into(),
        );
    }
}

/// Whether the shard that holds this stream has its placement on this node.
pub(crate) fn stream_is_local(stream_id: pg_sys::Datum) -> bool {
    let spi = Spi::connect();
    let local = placement(&spi, stream_id).0;
    spi.finish();
    local
}

/// Whether the stream's shard is here, and whether this node is prepared (SHARD_IS_LOCAL); read
/// in a fresh snapshot, so that a shard move that has just switched over is seen.
fn placement(spi: &Spi, stream_id: pg_sys::Datum) -> (bool, bool) {
    let r = spi.run(&SHARD_IS_LOCAL, &[Some(stream_id)], false);
    (r.bool(0, 1).unwrap_or(false), r.bool(0, 2).unwrap_or(false))
}

/// Runs `f` with Citus's nested distributed execution allowed, for the event-id lookup over every
/// node that an append makes from inside the call Citus delegated to the stream's node. Inside a
/// client's transaction block Citus refuses such a query ("cannot execute a distributed query from
/// a query on a shard"), as its connections to the other nodes do not see what the transaction
/// wrote there; the lookup is a read that accepts this (README, "Running on Citus": an id the same
/// transaction used on another node, like two appends racing with one new id, is not caught).
pub(crate) fn nested<R>(f: impl FnOnce() -> R) -> R {
    if !distributed() {
        return f();
    }
    let level = set_in_nest_level(c"citus.allow_nested_distributed_execution", c"on");
    let r = f();
    end_nest_level(level);
    r
}

/// The lifecycle functions (lifecycle.rs) run on the coordinator and change rows on the nodes that
/// hold them, where the append-only triggers fire in backends of Citus's own, which know nothing
/// of the function's grant (integrity::maintain). The grant travels as a row of the reference
/// table lifecycle_grants, written to every node in the function's transaction and removed
/// before it ends: a trigger there lets a change through when its own transaction wrote such a
/// row for the stream. Only the store's owner can write that table, and no such row ever commits.
static GRANT_LIFECYCLE: Stmt =
    Stmt { sql: "INSERT INTO eventstore.lifecycle_grants (stream_id) VALUES ($1)", args: &[pg_sys::TEXTOID] };
static LIFECYCLE_READY: Stmt = Stmt {
    sql: "SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition \
          WHERE logicalrelid = 'eventstore.lifecycle_grants'::pg_catalog.regclass)",
    args: &[],
};
static REVOKE_LIFECYCLE: Stmt = Stmt { sql: "DELETE FROM eventstore.lifecycle_grants", args: &[] };
static LIFECYCLE_GRANTED: Stmt = Stmt {
    sql: "SELECT EXISTS (SELECT FROM eventstore.lifecycle_grants g \
                         WHERE (g.stream_id IS NULL OR g.stream_id = $1) \
                           AND g.xmin = pg_catalog.xid(pg_catalog.pg_current_xact_id()))",
    args: &[pg_sys::TEXTOID],
};

/// Called by a lifecycle function on a distributed store before it changes rows of `stream_id`
/// (None: of any stream). The changes are made through the coordinator, as Citus routes them,
/// one connection per node, so that each node's changes run in the backend that holds the grant.
pub(crate) fn grant_lifecycle(what: &str, stream_id: Option<pg_sys::Datum>) -> i32 {
    require_coordinator(what);
    let level = set_in_nest_level(c"citus.multi_shard_modify_mode", c"sequential");
    let spi = Spi::connect();
    if !spi.run(&LIFECYCLE_READY, &[], false).bool(0, 1).unwrap_or(false) {
        errors::raise_detail(
            Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("{what} needs the store's nodes prepared for it"),
            "The store was distributed before 0.7.0: run SELECT eventstore.prepare_nodes() on the coordinator.".into(),
        );
    }
    spi.run(&GRANT_LIFECYCLE, &[stream_id], false);
    spi.finish();
    level
}

pub(crate) fn revoke_lifecycle(level: i32) {
    let spi = Spi::connect();
    spi.run(&REVOKE_LIFECYCLE, &[], false);
    spi.finish();
    end_nest_level(level);
}

/// Whether this node's part of the transaction holds a lifecycle grant for the stream; asked by
/// the triggers only where they would otherwise refuse.
pub(crate) fn lifecycle_granted(stream_id: Option<pg_sys::Datum>) -> bool {
    if !distributed() {
        return false;
    }
    let spi = Spi::connect();
    let granted = spi.run(&LIFECYCLE_GRANTED, &[stream_id], false).bool(0, 1).unwrap_or(false);
    spi.finish();
    granted
}
