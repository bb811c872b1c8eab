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
    REGISTRY.set(None);
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

/// Whether the stream lives on this node, with its shard's placement held in place (the share lock a
/// shard move's switch-over waits for; it takes the exclusive one), read in a fresh snapshot
/// after that lock. An append to a stream here on a node that joined after distribute() and was
/// not prepared is refused.
pub(crate) fn locate(stream_id: pg_sys::Datum, name: &str) -> bool {
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
    local
}

/// The _here functions append where Citus delegated them, on the stream's node: there the tables'
/// triggers see the grant the function holds, in the same backend. During a shard move's
/// switch-over the call can reach the node the shard has just left.
pub(crate) fn require_local(stream_id: pg_sys::Datum, name: &str) {
    if !locate(stream_id, name) {
        errors::raise_detail(
            Code::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("the append to stream \"{name}\" did not run on the node that holds the stream"),
            "The stream's shard was moving to another node at that moment; a retry runs on the new node.".into(),
        );
    }
}

/// The call of a _here function with the client's arguments as they are. Citus delegates it to the
/// stream's node as part of this transaction, the function being in the FROM list (Citus
/// delegates no call from an expression evaluated inside a function) and its distribution argument
/// a constant in the plan Citus makes for these parameter values.
pub(crate) static APPEND_EVENT_HERE: Stmt = Stmt {
    sql: "SELECT * FROM eventstore.append_event_here($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    args: &[
        pg_sys::TEXTOID,
        pg_sys::TEXTOID,
        pg_sys::TEXTOID,
        pg_sys::JSONBOID,
        pg_sys::JSONBOID,
        pg_sys::INT8OID,
        pg_sys::UUIDOID,
        pg_sys::UUIDOID,
        pg_sys::INT4OID,
    ],
};
pub(crate) static APPEND_EVENTS_HERE: Stmt = Stmt {
    sql: "SELECT * FROM eventstore.append_events_here($1, $2, $3, $4, $5)",
    args: &[pg_sys::TEXTOID, pg_sys::TEXTOID, pg_sys::JSONBOID, pg_sys::INT8OID, pg_sys::UUIDOID],
};

/// Runs the append on the stream's node; returns the stream's version after it.
pub(crate) fn append_there(stmt: &'static Stmt, args: crate::fcall::Args) -> i64 {
    let values: Vec<Option<pg_sys::Datum>> = (0..stmt.args.len()).map(|i| args.opt_datum(i)).collect();
    let spi = Spi::connect();
    let version = spi.run(stmt, &values, false).i64(0, 1);
    spi.finish();
    version.unwrap_or_else(|| errors::raise(Code::ERRCODE_INTERNAL_ERROR, "the append on the stream's node returned nothing".into()))
}

thread_local! {
    /// Whether eventstore.event_ids is distributed (a store distributed with 0.6.0 lacks it
    /// until prepare_nodes()); forgotten with DISTRIBUTED.
    static REGISTRY: Cell<Option<bool>> = const { Cell::new(None) };
}

// (to_regclass: a 0.6.0 schema, whose appends the new library serves until ALTER EXTENSION UPDATE,
// has no registry)
static REGISTRY_DISTRIBUTED: Stmt = Stmt {
    sql: "SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition \
          WHERE logicalrelid = pg_catalog.to_regclass('eventstore.event_ids'))",
    args: &[],
};

/// An append that names event ids, or that runs on another node than its stream's, needs the
/// registry and the _here functions, which a store distributed with 0.6.0 gets from prepare_nodes().
pub(crate) fn require_registry() {
    if REGISTRY.get().is_none() {
        let spi = Spi::connect();
        REGISTRY.set(spi.run(&REGISTRY_DISTRIBUTED, &[], false).bool(0, 1));
        spi.finish();
    }
    if REGISTRY.get() != Some(true) {
        errors::raise_detail(
            Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "this append needs the store's nodes prepared for 0.7.0".into(),
            "The store was distributed with 0.6.0: run ALTER EXTENSION pg_eventstore UPDATE, then \
             SELECT eventstore.prepare_nodes() on the coordinator. Until then, appends that name no event id \
             and are delegated to the stream's node work."
                .into(),
        );
    }
}
static CLAIM_ONE: Stmt = Stmt {
    sql: "INSERT INTO eventstore.event_ids (event_id, stream_id) VALUES ($1[1], $2) ON CONFLICT (event_id) DO NOTHING",
    args: &[pg_sys::UUIDARRAYOID, pg_sys::TEXTOID],
};
static CLAIM_MANY: Stmt = Stmt {
    sql: "INSERT INTO eventstore.event_ids (event_id, stream_id) SELECT i, $2 FROM unnest($1::uuid[]) i \
          ON CONFLICT (event_id) DO NOTHING",
    args: &[pg_sys::UUIDARRAYOID, pg_sys::TEXTOID],
};
static CLAIMED_ELSEWHERE: Stmt = Stmt {
    sql: "SELECT event_id, stream_id FROM eventstore.event_ids WHERE event_id = ANY ($1) AND stream_id <> $2",
    args: &[pg_sys::UUIDARRAYOID, pg_sys::TEXTOID],
};
static USED_ELSEWHERE: Stmt = Stmt {
    sql: "SELECT e.stream_id FROM (SELECT stream_id, event_id FROM eventstore.events \
                                   UNION ALL SELECT stream_id, event_id FROM eventstore.archived_events) e \
          WHERE e.event_id = ANY ($1) AND e.stream_id <> $2 LIMIT 1",
    args: &[pg_sys::UUIDARRAYOID, pg_sys::TEXTOID],
};

/// The cluster-wide rule that an event id is never used in two streams, for the ids an append
/// names. Each is claimed in the registry (distributed by id) in the append's transaction, before
/// the stream is locked: of two appends racing to use one id in different streams, the second
/// waits on the first's claim and, once that commits, finds it taken (23505). The registry holds
/// every event's id from before the store was distributed (distribute_finish) and every id an
/// append named since; the ids the store generates are not claimed (that would make every append
/// a two-phase commit), so an id that may be one of them is also looked up in the events of every
/// node. A claim stays when its event is deleted: whether the event is gone cannot be asked
/// safely, as a two-phase commit may have committed the claim on its node and not yet the event on
/// the stream's.
pub(crate) fn claim_event_ids(ids: &[Option<pg_sys::Datum>], stream_id: pg_sys::Datum, name: &str) {
    require_registry();
    let spi = Spi::connect();
    let array = Some(crate::append::array(ids, pg_sys::UUIDOID));
    spi.run(if ids.len() == 1 { &CLAIM_ONE } else { &CLAIM_MANY }, &[array, Some(stream_id)], false);
    let claimed = spi.run(&CLAIMED_ELSEWHERE, &[array, Some(stream_id)], false);
    if claimed.len() > 0 {
        errors::event_id_elsewhere(&claimed.text(0, 2).unwrap_or_default(), name);
    }
    // (a query over every shard of every node, 20 to 50 ms here: only for ids that need it)
    let generated: Vec<Option<pg_sys::Datum>> = ids
        .iter()
        .filter(|d| crate::append::may_be_generated(u128::from_be_bytes(crate::commands::uuid_bytes(d.unwrap()))))
        .copied()
        .collect();
    if !generated.is_empty() {
        let array = Some(crate::append::array(&generated, pg_sys::UUIDOID));
        let used = spi.run(&USED_ELSEWHERE, &[array, Some(stream_id)], false);
        if used.len() > 0 {
            errors::event_id_elsewhere(&used.text(0, 1).unwrap_or_default(), name);
        }
    }
    spi.finish();
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
