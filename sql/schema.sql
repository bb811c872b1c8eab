-- pg_eventstore schema: tables, the triggers that guard them, and the SQL API.
-- The Rust side (src/) implements every function declared here; this file is the contract.

-- ---------------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------------

-- Stream ids and stream types are identifiers, not prose: every column holding one uses the "C"
-- collation, so the indexes on them compare bytes instead of calling the database's locale
-- (strcoll), which was a tenth of a batch append's time, and LIKE 'prefix%' on them can use an index.
-- Equality is the same under any deterministic collation; only ORDER BY stream_id sorts bytewise.

-- Per stream type settings (Sequent's snapshot thresholds live here and are copied to new streams).
CREATE TABLE eventstore.stream_types (
    stream_type         text COLLATE "C" PRIMARY KEY CHECK (stream_type <> ''),
    snapshot_threshold  integer CHECK (snapshot_threshold > 0),
    -- retention (set_retention, apply_retention): events older than max_age, beyond the newest
    -- max_count, or (keep_after_snapshot) folded into the newest snapshot are removed
    max_age             interval CHECK (max_age > interval '0'),
    max_count           bigint CHECK (max_count > 0),
    keep_after_snapshot boolean NOT NULL DEFAULT false
);

-- One row per stream (Sequent's stream_records). version is the last sequence, moved only by the
-- store as events are appended; the streams trigger enforces that.
-- The row rules of streams and events (non-empty names, positive numbers, JSON objects) are checked by
-- their triggers rather than CHECK constraints: Postgres re-reads a table's CHECK expressions for
-- every statement, which cost about a fifth of single-append throughput (bench/README.md); the triggers check a row
-- once, and rows the store's own functions write were checked before they got there.
-- state: 'live'; 'deleted' (soft: its events stay in the store and the feed, hidden from reads;
-- the next append reopens it); 'tombstone' (hard-deleted: its events are gone, its id stays taken);
-- 'archived' (its events are in archived_events). Events below truncate_before are gone or hidden.
CREATE TABLE eventstore.streams (
    stream_id          text COLLATE "C" PRIMARY KEY,
    stream_type        text COLLATE "C" NOT NULL,
    version            bigint NOT NULL DEFAULT 0,
    snapshot_threshold integer,
    created_at         timestamptz NOT NULL DEFAULT now(),
    state              text COLLATE "C" NOT NULL DEFAULT 'live',
    truncate_before    bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 70); -- room for HOT updates of version on every append

-- One row per command that was executed (Sequent's command_records). Its row rules (non-empty
-- command_type and stream_id, payload an object, caused_by_* both or neither) are checked by the
-- commands trigger, like those of streams and events: as CHECK constraints Postgres re-read and
-- planned them for every statement, which was 60,000 instructions of each record_command.
CREATE TABLE eventstore.commands (
    command_id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    command_type        text NOT NULL,
    payload             jsonb NOT NULL,
    stream_id           text COLLATE "C",
    user_id             text,
    caused_by_stream_id text COLLATE "C",
    caused_by_sequence  bigint,
    correlation_id      uuid,
    created_at          timestamptz NOT NULL DEFAULT now()
);

-- One row per event. global_position and horizon_xid are assigned by the store (see the events
-- trigger); horizon_xid is the next transaction id at the moment the position was taken: once every
-- transaction below it has ended, no lower position can still appear. The global feed relies on it.
CREATE TABLE eventstore.events (
    stream_id       text COLLATE "C" NOT NULL,
    sequence        bigint NOT NULL,
    event_id        uuid NOT NULL DEFAULT gen_random_uuid(),
    stream_type     text COLLATE "C" NOT NULL,
    event_type      text NOT NULL,
    event_version   integer NOT NULL DEFAULT 1,
    payload         jsonb NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}',
    command_id      uuid REFERENCES eventstore.commands (command_id),
    global_position bigint NOT NULL,
    horizon_xid     xid8 NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, sequence),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_global_position_key UNIQUE (global_position)
);

CREATE SEQUENCE eventstore.global_position_seq AS bigint NO CYCLE;

-- everything one causation chain did, e.g. for an audit trail
CREATE INDEX commands_correlation_id_idx ON eventstore.commands (correlation_id);

-- A command's causing event (caused_by_stream_id, caused_by_sequence) must exist when the command is
-- recorded (the commands trigger checks it); it may be removed later by a hard delete, a truncation
-- or an archive, and causation_chain then shows what became of it. So it is not a foreign key.

-- A snapshot folds events 1..sequence of a live stream: the snapshots trigger checks
-- 1 <= sequence <= version, snapshot_version >= 1 and a JSON object as payload. (Not a foreign key
-- to the event: keeping the events after a snapshot removes the ones it folded.)
CREATE TABLE eventstore.snapshots (
    stream_id        text COLLATE "C" NOT NULL,
    sequence         bigint NOT NULL,
    snapshot_version integer NOT NULL DEFAULT 1,
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, sequence)
);

-- Events of archived streams (archive_stream, restore_stream), with the positions and ids they had.
CREATE TABLE eventstore.archived_events (
    stream_id       text COLLATE "C" NOT NULL,
    sequence        bigint NOT NULL,
    event_id        uuid NOT NULL,
    stream_type     text COLLATE "C" NOT NULL,
    event_type      text NOT NULL,
    event_version   integer NOT NULL,
    payload         jsonb NOT NULL,
    metadata        jsonb NOT NULL,
    command_id      uuid,
    global_position bigint NOT NULL,
    horizon_xid     xid8 NOT NULL,
    created_at      timestamptz NOT NULL,
    archived_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, sequence),
    CONSTRAINT archived_events_event_id_key UNIQUE (event_id)
);

-- What was deleted, truncated, archived, erased or redacted, by whom, when and why: which stream,
-- which events, which JSON paths; never the values. Written by the lifecycle functions only.
CREATE TABLE eventstore.audit_log (
    entry_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action         text NOT NULL,
    stream_id      text COLLATE "C",
    command_id     uuid,
    first_sequence bigint,    -- the span of events concerned
    last_sequence  bigint,
    sequences      bigint[],  -- the events concerned, when not all of the span
    paths          text[],    -- the JSON paths redacted
    rows           bigint NOT NULL,
    reason         text,
    done_by        text NOT NULL DEFAULT session_user,
    done_at        timestamptz NOT NULL DEFAULT now()
);

-- On a distributed store, the lifecycle functions' grant to the nodes that hold the rows they
-- change (src/distributed.rs, grant_lifecycle): a row written in the function's transaction and
-- removed before it ends, never committed. Only the store's owner writes it.
CREATE TABLE eventstore.lifecycle_grants (
    stream_id text COLLATE "C"   -- NULL: rows of any stream
);
REVOKE ALL ON eventstore.lifecycle_grants FROM PUBLIC;
-- (a replica identity for Citus, which moves reference tables with logical replication)
ALTER TABLE eventstore.lifecycle_grants REPLICA IDENTITY FULL;

-- On a distributed store, the event ids that appends name, claimed in the append's transaction
-- (src/distributed.rs, claim_event_ids): distributed by event_id, so that two appends racing to use
-- one id in streams on different nodes meet on one row, and the second is refused. Unused on one
-- node, where events' own unique key does this.
CREATE TABLE eventstore.event_ids (
    event_id  uuid PRIMARY KEY,
    stream_id text COLLATE "C" NOT NULL
);
REVOKE ALL ON eventstore.event_ids FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- Triggers: the rules hold for every writer, including plain INSERT/UPDATE/DELETE on the tables.
-- The trigger functions have no SET search_path clause on purpose: it would save and restore every
-- setting once per row. The statements they run resolve names in pg_catalog only (src/spi.rs).
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION eventstore.events_guard() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'es_events_guard';
CREATE FUNCTION eventstore.streams_guard() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'es_streams_guard';
CREATE FUNCTION eventstore.commands_guard() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'es_commands_guard';
CREATE FUNCTION eventstore.append_only() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'es_append_only';

CREATE TRIGGER events_guard BEFORE INSERT ON eventstore.events
    FOR EACH ROW EXECUTE FUNCTION eventstore.events_guard();
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON eventstore.events
    FOR EACH ROW EXECUTE FUNCTION eventstore.append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON eventstore.events
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.append_only();

CREATE TRIGGER streams_guard BEFORE INSERT OR UPDATE ON eventstore.streams
    FOR EACH ROW EXECUTE FUNCTION eventstore.streams_guard();
CREATE TRIGGER streams_no_delete BEFORE DELETE ON eventstore.streams
    FOR EACH ROW EXECUTE FUNCTION eventstore.append_only();
CREATE TRIGGER streams_no_truncate BEFORE TRUNCATE ON eventstore.streams
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.append_only();

CREATE FUNCTION eventstore.snapshots_guard() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'es_snapshots_guard';
CREATE TRIGGER snapshots_guard BEFORE INSERT OR UPDATE ON eventstore.snapshots
    FOR EACH ROW EXECUTE FUNCTION eventstore.snapshots_guard();

-- archived events and the audit log are written by the lifecycle functions only
CREATE TRIGGER archived_events_append_only BEFORE INSERT OR UPDATE OR DELETE ON eventstore.archived_events
    FOR EACH ROW EXECUTE FUNCTION eventstore.append_only();
CREATE TRIGGER archived_events_no_truncate BEFORE TRUNCATE ON eventstore.archived_events
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.append_only();
CREATE TRIGGER audit_log_append_only BEFORE INSERT OR UPDATE OR DELETE ON eventstore.audit_log
    FOR EACH ROW EXECUTE FUNCTION eventstore.append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON eventstore.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.append_only();

CREATE TRIGGER commands_guard BEFORE INSERT ON eventstore.commands
    FOR EACH ROW EXECUTE FUNCTION eventstore.commands_guard();
CREATE TRIGGER commands_append_only BEFORE UPDATE OR DELETE ON eventstore.commands
    FOR EACH ROW EXECUTE FUNCTION eventstore.append_only();
CREATE TRIGGER commands_no_truncate BEFORE TRUNCATE ON eventstore.commands
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.append_only();

-- ---------------------------------------------------------------------------------------------
-- Appending and reading
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION eventstore.append_event(
    stream_id        text,
    stream_type      text,
    event_type       text,
    payload          jsonb,
    metadata         jsonb   DEFAULT '{}',
    expected_version bigint  DEFAULT NULL,
    event_id         uuid    DEFAULT NULL,
    command_id       uuid    DEFAULT NULL,
    event_version    integer DEFAULT 1
) RETURNS bigint
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_append_event';

CREATE FUNCTION eventstore.append_events(
    stream_id        text,
    stream_type      text,
    events           jsonb,
    expected_version bigint DEFAULT NULL,
    command_id       uuid   DEFAULT NULL
) RETURNS bigint
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_append_events';

-- On a distributed store, the part of an append that runs on the stream's node, called by
-- append_event/append_events where they do not run there themselves (after they have claimed the
-- event ids the append names). Only the store's owner may call them.
CREATE FUNCTION eventstore.append_event_here(
    stream_id text, stream_type text, event_type text, payload jsonb, metadata jsonb,
    expected_version bigint, event_id uuid, command_id uuid, event_version integer
) RETURNS bigint
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_append_event_here';

CREATE FUNCTION eventstore.append_events_here(
    stream_id text, stream_type text, events jsonb, expected_version bigint, command_id uuid
) RETURNS bigint
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_append_events_here';

CREATE FUNCTION eventstore.load_stream(
    stream_id     text,
    from_sequence bigint DEFAULT 1,
    max_count     bigint DEFAULT NULL
) RETURNS TABLE (
    sequence        bigint,
    event_type      text,
    event_version   integer,
    payload         jsonb,
    metadata        jsonb,
    event_id        uuid,
    command_id      uuid,
    global_position bigint,
    created_at      timestamptz
)
    LANGUAGE c STABLE ROWS 100 SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_load_stream';

CREATE FUNCTION eventstore.stream_version(stream_id text) RETURNS bigint
    LANGUAGE c STABLE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_stream_version';

-- ---------------------------------------------------------------------------------------------
-- Snapshots
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION eventstore.take_snapshot(
    stream_id        text,
    sequence         bigint,
    payload          jsonb,
    snapshot_version integer DEFAULT 1
) RETURNS void
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_take_snapshot';

CREATE FUNCTION eventstore.load_snapshot(
    stream_id    text,
    max_sequence bigint DEFAULT NULL
) RETURNS TABLE (
    sequence         bigint,
    snapshot_version integer,
    payload          jsonb,
    created_at       timestamptz
)
    LANGUAGE c STABLE ROWS 1 SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_load_snapshot';

CREATE FUNCTION eventstore.set_snapshot_threshold(stream_type text, threshold integer)
    RETURNS bigint
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_set_snapshot_threshold';

CREATE FUNCTION eventstore.streams_needing_snapshot(max_count integer DEFAULT 100)
    RETURNS TABLE (
        stream_id             text,
        stream_type           text,
        version               bigint,
        events_since_snapshot bigint
    )
    LANGUAGE c STABLE ROWS 100 SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_streams_needing_snapshot';

-- ---------------------------------------------------------------------------------------------
-- Commands and causation
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION eventstore.record_command(
    command_type        text,
    payload             jsonb,
    stream_id           text   DEFAULT NULL,
    user_id             text   DEFAULT NULL,
    caused_by_stream_id text   DEFAULT NULL,
    caused_by_sequence  bigint DEFAULT NULL,
    command_id          uuid   DEFAULT NULL
) RETURNS uuid
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_record_command';

CREATE FUNCTION eventstore.causation_chain(stream_id text, sequence bigint)
    RETURNS TABLE (
        depth      integer,
        kind       text,
        command_id uuid,
        stream_id  text,
        sequence   bigint,
        type       text
    )
    LANGUAGE c STABLE ROWS 10 SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_causation_chain';

-- ---------------------------------------------------------------------------------------------
-- The global feed: gap-safe reads in global_position order, categories, consumer groups
-- ---------------------------------------------------------------------------------------------

-- category reads (read_all with stream_types, read_category_backward) walk this index in order
CREATE INDEX events_category_idx ON eventstore.events (stream_type, global_position);

CREATE FUNCTION eventstore.read_all(
    after_position        bigint  DEFAULT 0,
    max_count             integer DEFAULT 1000,
    stream_types          text[]  DEFAULT NULL,
    event_types           text[]  DEFAULT NULL,
    consumer_group_member integer DEFAULT NULL,
    consumer_group_size   integer DEFAULT NULL
) RETURNS TABLE (
    global_position bigint,
    stream_id       text,
    stream_type     text,
    sequence        bigint,
    event_type      text,
    event_version   integer,
    payload         jsonb,
    metadata        jsonb,
    event_id        uuid,
    command_id      uuid,
    created_at      timestamptz
)
    LANGUAGE c STABLE ROWS 1000 SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_read_all';

-- How far the feed's safe horizon trails the newest event, and which transaction holds it back.
CREATE FUNCTION eventstore.feed_status() RETURNS TABLE (
    head_position    bigint,
    safe_position    bigint,
    lagging_events   bigint,
    oldest_xid       xid8,
    blocking_pid     integer,
    blocking_since   timestamptz,
    blocking_query   text
)
    LANGUAGE c STABLE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_feed_status';

CREATE FUNCTION eventstore.read_stream_backward(
    stream_id     text,
    from_sequence bigint DEFAULT NULL,
    max_count     bigint DEFAULT 100
) RETURNS TABLE (
    sequence        bigint,
    event_type      text,
    event_version   integer,
    payload         jsonb,
    metadata        jsonb,
    event_id        uuid,
    command_id      uuid,
    global_position bigint,
    created_at      timestamptz
)
    LANGUAGE c STABLE ROWS 100 SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_read_stream_backward';

CREATE FUNCTION eventstore.last_event(stream_id text) RETURNS TABLE (
    sequence        bigint,
    event_type      text,
    event_version   integer,
    payload         jsonb,
    metadata        jsonb,
    event_id        uuid,
    command_id      uuid,
    global_position bigint,
    created_at      timestamptz
)
    LANGUAGE c STABLE ROWS 1 SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_last_event';

CREATE FUNCTION eventstore.read_category_backward(
    stream_type     text,
    max_count       integer DEFAULT 100,
    before_position bigint  DEFAULT NULL
) RETURNS TABLE (
    global_position bigint,
    stream_id       text,
    stream_type     text,
    sequence        bigint,
    event_type      text,
    event_version   integer,
    payload         jsonb,
    metadata        jsonb,
    event_id        uuid,
    command_id      uuid,
    created_at      timestamptz
)
    LANGUAGE c STABLE ROWS 100 SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_read_category_backward';

-- ---------------------------------------------------------------------------------------------
-- Durable named subscriptions: a checkpoint per subscription and a lease so that one worker at a
-- time receives its events.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE eventstore.subscription_state (
    name                text PRIMARY KEY CHECK (name <> ''),
    stream_types        text[],
    event_types         text[],
    checkpoint          bigint NOT NULL DEFAULT 0 CHECK (checkpoint >= 0),
    delivered_up_to     bigint NOT NULL DEFAULT 0,
    lease_pid           integer,
    lease_backend_start timestamptz,
    lease_expires_at    timestamptz,
    lease_seconds       integer NOT NULL DEFAULT 30 CHECK (lease_seconds > 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- a distributed store's subscription (README "Running on Citus"): its checkpoint and what its
    -- holder's last poll delivered, per node ({"<group id>": position}); NULL on one node
    checkpoint_nodes    jsonb CHECK (jsonb_typeof(checkpoint_nodes) = 'object'),
    delivered_nodes     jsonb CHECK (jsonb_typeof(delivered_nodes) = 'object'),
    CONSTRAINT subscription_delivered_after_checkpoint CHECK (delivered_up_to >= checkpoint),
    CONSTRAINT subscription_nodes_both_or_neither CHECK ((checkpoint_nodes IS NULL) = (delivered_nodes IS NULL))
);

-- How far a subscription is behind: positions assigned and events (of its types) stored after its
-- checkpoint. A function, not a join in the view, so that on a distributed store Citus plans each
-- count on its own (it does not join its tables with the coordinator's subscription_state); there
-- both are summed over the nodes' position ranges, each counted from its own checkpoint.
CREATE FUNCTION eventstore.subscription_lag(
    checkpoint bigint, checkpoint_nodes jsonb, stream_types text[], event_types text[],
    OUT lag_positions bigint, OUT lag_events bigint
)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
    AS $lag$
#variable_conflict use_variable
DECLARE
    g bigint;
    from_ bigint;
    head bigint;
    n bigint;
BEGIN
    IF checkpoint_nodes IS NULL THEN
        lag_positions := COALESCE((SELECT max(e.global_position) FROM eventstore.events e), 0) - checkpoint;
        lag_events := (SELECT count(*) FROM eventstore.events e
                        WHERE e.global_position > checkpoint
                          AND (stream_types IS NULL OR e.stream_type = ANY (stream_types))
                          AND (event_types IS NULL OR e.event_type = ANY (event_types)));
        RETURN;
    END IF;
    lag_positions := 0;
    lag_events := 0;
    FOR g IN SELECT DISTINCT d.groupid FROM pg_dist_node d
             UNION SELECT k::bigint FROM jsonb_object_keys(checkpoint_nodes) k LOOP
        from_ := GREATEST(COALESCE((checkpoint_nodes ->> g::text)::bigint, 0), g << 48);
        SELECT max(e.global_position), count(*) FILTER (
                   WHERE (stream_types IS NULL OR e.stream_type = ANY (stream_types))
                     AND (event_types IS NULL OR e.event_type = ANY (event_types)))
          INTO head, n
          FROM eventstore.events e
         WHERE e.global_position > from_ AND e.global_position < (g + 1) << 48;
        lag_positions := lag_positions + COALESCE(head - from_, 0);
        lag_events := lag_events + n;
    END LOOP;
END
$lag$;

CREATE VIEW eventstore.subscriptions AS
SELECT s.name, s.stream_types, s.event_types, s.checkpoint, s.delivered_up_to,
       CASE WHEN s.lease_expires_at > now() THEN s.lease_pid END AS lease_pid,
       CASE WHEN s.lease_expires_at > now() THEN s.lease_expires_at END AS lease_expires_at,
       l.lag_positions, l.lag_events,
       s.created_at, s.updated_at, s.checkpoint_nodes
FROM eventstore.subscription_state s
CROSS JOIN LATERAL eventstore.subscription_lag(s.checkpoint, s.checkpoint_nodes, s.stream_types, s.event_types) l;

CREATE FUNCTION eventstore.create_subscription(
    name         text,
    stream_types text[] DEFAULT NULL,
    event_types  text[] DEFAULT NULL,
    start_from   bigint DEFAULT 0
) RETURNS void
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_create_subscription';

CREATE FUNCTION eventstore.delete_subscription(name text) RETURNS void
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_delete_subscription';

CREATE FUNCTION eventstore.poll(name text, max_count integer DEFAULT 100) RETURNS TABLE (
    global_position bigint,
    stream_id       text,
    stream_type     text,
    sequence        bigint,
    event_type      text,
    event_version   integer,
    payload         jsonb,
    metadata        jsonb,
    event_id        uuid,
    command_id      uuid,
    created_at      timestamptz
)
    LANGUAGE c VOLATILE ROWS 100 SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_poll';

CREATE FUNCTION eventstore.ack(name text, "position" bigint) RETURNS void
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_ack';

-- The notifier's hand-over (src/notifier.rs): the position up to which every committed
-- transaction has been announced, written by the notifier when it stops (and every few seconds);
-- the next one starts from here, so nothing that committed in between goes unannounced.
CREATE TABLE eventstore.notifier_state (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    announced_up_to bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------------------
-- Stream lifecycle and data protection (eventstore_admin): deleting, truncating, archiving,
-- retention, erasure. The feed keeps every remaining event and passes over removed positions;
-- every removal of data is written to audit_log.
-- ---------------------------------------------------------------------------------------------

-- Sets the given JSON paths of a document to null where they exist (used by redact_events and
-- redact_command; not granted to anyone).
CREATE FUNCTION eventstore.redact_json(doc jsonb, paths text[]) RETURNS jsonb
    LANGUAGE c IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_redact_json';

CREATE FUNCTION eventstore.delete_stream(
    stream_id        text,
    expected_version bigint  DEFAULT NULL,
    hard             boolean DEFAULT false,
    allow_reuse      boolean DEFAULT false,
    reason           text    DEFAULT NULL
) RETURNS bigint
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_delete_stream';

CREATE FUNCTION eventstore.truncate_stream(stream_id text, before_sequence bigint, reason text)
    RETURNS bigint
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_truncate_stream';

CREATE FUNCTION eventstore.set_retention(
    stream_type         text,
    max_age             interval DEFAULT NULL,
    max_count           bigint   DEFAULT NULL,
    keep_after_snapshot boolean  DEFAULT false
) RETURNS void
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_set_retention';

CREATE FUNCTION eventstore.apply_retention() RETURNS TABLE (
    stream_id      text,
    stream_type    text,
    events_removed bigint
)
    LANGUAGE c VOLATILE ROWS 100 SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_apply_retention';

CREATE FUNCTION eventstore.archive_stream(stream_id text, expected_version bigint DEFAULT NULL)
    RETURNS bigint
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_archive_stream';

CREATE FUNCTION eventstore.restore_stream(stream_id text) RETURNS bigint
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_restore_stream';

CREATE FUNCTION eventstore.load_archived_stream(
    stream_id     text,
    from_sequence bigint DEFAULT 1,
    max_count     bigint DEFAULT NULL
) RETURNS TABLE (
    sequence        bigint,
    event_type      text,
    event_version   integer,
    payload         jsonb,
    metadata        jsonb,
    event_id        uuid,
    command_id      uuid,
    global_position bigint,
    created_at      timestamptz
)
    LANGUAGE c STABLE ROWS 100 SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_load_archived_stream';

CREATE FUNCTION eventstore.erase_stream(stream_id text, reason text) RETURNS bigint
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_erase_stream';

CREATE FUNCTION eventstore.redact_events(stream_id text, sequences bigint[], paths text[], reason text)
    RETURNS bigint
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_redact_events';

CREATE FUNCTION eventstore.redact_command(command_id uuid, paths text[], reason text) RETURNS bigint
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_redact_command';

CREATE FUNCTION eventstore.delete_commands_without_events(
    stream_id  text        DEFAULT NULL,
    older_than timestamptz DEFAULT NULL,
    reason     text        DEFAULT NULL
) RETURNS bigint
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_delete_commands_without_events';

-- ---------------------------------------------------------------------------------------------
-- Verification: every invariant of the store, checked over the whole store (operators, tests,
-- and after a restore). No rows = healthy.
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION eventstore.verify() RETURNS TABLE (
    invariant text,
    stream_id text,
    sequence  bigint,
    detail    text
)
    LANGUAGE c STABLE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'es_verify';

-- ---------------------------------------------------------------------------------------------
-- Running on Citus (README "Running on Citus"). distribute() turns this database's store, on a
-- Citus coordinator whose workers are already added, into a distributed one: streams, events,
-- snapshots and archived events hash-distributed by stream_id and colocated, so that a stream and
-- everything of it live on one node; commands and stream types reference tables (on every node);
-- and the stream functions delegated to the node that owns the stream, where they run with the same
-- triggers and guarantees as on one node. Each node takes global positions from its own range
-- (its Citus group id times 2^48 onwards), so a position names the node that assigned it and stays
-- unique across the cluster, also after a shard moves.
-- ---------------------------------------------------------------------------------------------

-- distribute()'s last step, once the tables are distributed, and what prepare_nodes() gives a store
-- distributed with 0.6.0. Idempotent.
CREATE FUNCTION eventstore.distribute_finish() RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
    AS $finish$
DECLARE
    g text[];
BEGIN
    -- The lifecycle functions' grant table, the registry of claimed event ids (as many shards as
    -- streams has), and the functions. append_event and append_events are delegated to the
    -- stream's node only outside a transaction block, where that node may write the registry on
    -- another; inside one they run where they are called, claim the ids there, and call the _here
    -- functions, which Citus delegates as part of the client's transaction.
    IF NOT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = 'eventstore.lifecycle_grants'::regclass) THEN
        PERFORM create_reference_table('eventstore.lifecycle_grants');
    END IF;
    IF NOT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = 'eventstore.event_ids'::regclass) THEN
        PERFORM create_distributed_table('eventstore.event_ids', 'event_id', colocate_with := 'none',
            shard_count := (SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'eventstore.streams'::regclass)::integer);
        -- every id stored so far (one a store distributed with 0.6.0 holds twice, which verify()
        -- reports, stays with one of its streams)
        INSERT INTO eventstore.event_ids (event_id, stream_id)
            SELECT event_id, stream_id FROM eventstore.events ON CONFLICT (event_id) DO NOTHING;
        INSERT INTO eventstore.event_ids (event_id, stream_id)
            SELECT event_id, stream_id FROM eventstore.archived_events ON CONFLICT (event_id) DO NOTHING;
    END IF;
    FOREACH g SLICE 1 IN ARRAY ARRAY[
        ['eventstore.append_event(text,text,text,jsonb,jsonb,bigint,uuid,uuid,integer)', 'false'],
        ['eventstore.append_events(text,text,jsonb,bigint,uuid)', 'false'],
        ['eventstore.append_event_here(text,text,text,jsonb,jsonb,bigint,uuid,uuid,integer)', 'true'],
        ['eventstore.append_events_here(text,text,jsonb,bigint,uuid)', 'true'],
        ['eventstore.load_stream(text,bigint,bigint)', 'true'],
        ['eventstore.stream_version(text)', 'true'],
        ['eventstore.take_snapshot(text,bigint,jsonb,integer)', 'true'],
        ['eventstore.load_snapshot(text,bigint)', 'true'],
        ['eventstore.read_stream_backward(text,bigint,bigint)', 'true'],
        ['eventstore.last_event(text)', 'true']
    ] LOOP
        PERFORM create_distributed_function(g[1]::regprocedure, 'stream_id', colocate_with := 'eventstore.streams',
                                            force_delegation := g[2]::boolean);
    END LOOP;
END
$finish$;

-- Every node's copy of the store made ready for the distributed store (distribute_prepare_node):
-- part of distribute(), and to be run again after citus_add_node, before shards move to the new
-- node (an append there refuses until then). Idempotent.
CREATE FUNCTION eventstore.prepare_nodes() RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
    AS $prepare_nodes$
DECLARE
    failed text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'eventstore.prepare_nodes() needs Citus' USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF NOT citus_is_coordinator() THEN
        RAISE EXCEPTION 'eventstore.prepare_nodes() runs on the Citus coordinator, and this node is not it'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM eventstore.distribute_prepare_node();
    SELECT string_agg(format('%s:%s: %s', nodename, nodeport, result), '; ') INTO failed
      FROM run_command_on_workers('SELECT eventstore.distribute_prepare_node()') WHERE NOT success;
    IF failed IS NOT NULL THEN
        RAISE EXCEPTION 'could not prepare every worker for the distributed store: %', failed
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Each worker needs pg_eventstore installed, at the same version as the coordinator.';
    END IF;
    IF EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = 'eventstore.events'::regclass) THEN
        PERFORM eventstore.distribute_finish();
    END IF;
END
$prepare_nodes$;

CREATE FUNCTION eventstore.distribute(shard_count integer DEFAULT 32) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
    AS $distribute$
DECLARE
    f text;
    g text[];
    guards CONSTANT text[] := ARRAY[
        ['streams', 'streams_guard'], ['events', 'events_guard'], ['snapshots', 'snapshots_guard'],
        ['commands', 'commands_guard'], ['streams', 'streams_no_truncate'], ['events', 'events_no_truncate'],
        ['archived_events', 'archived_events_no_truncate'], ['archived_events', 'archived_events_append_only'],
        ['commands', 'commands_no_truncate']];
BEGIN
    IF shard_count IS NULL OR shard_count < 1 OR shard_count > 64000 THEN
        RAISE EXCEPTION 'shard_count must be between 1 and 64000, not %', shard_count
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'eventstore.distribute() needs Citus'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Run it on a Citus coordinator, after CREATE EXTENSION citus and citus_add_node for each worker.';
    END IF;
    IF NOT citus_is_coordinator() THEN
        RAISE EXCEPTION 'eventstore.distribute() runs on the Citus coordinator, and this node is not it'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = 'eventstore.events'::regclass) THEN
        RAISE EXCEPTION 'the store is already distributed' USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_dist_node WHERE noderole = 'primary' AND groupid <> 0) THEN
        RAISE EXCEPTION 'the Citus cluster has no workers yet'
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Add them with citus_add_node first.';
    END IF;
    -- The constraints Citus accepts: a unique key must hold the distribution column, so event ids
    -- are unique per stream (appends look a retried id up in its stream) and positions unique per
    -- node (each node's own range). The foreign key to commands is taken off while the tables move
    -- and put back once commands is a reference table. The workers' copies of the tables (created
    -- by CREATE EXTENSION there, and never holding rows) get the same definition first; that step
    -- may be repeated, so a distribute() that failed later can simply be run again.
    PERFORM eventstore.prepare_nodes();
    SET LOCAL citus.multi_shard_modify_mode TO 'sequential';
    -- the store's triggers only ever touch rows of the stream they fire for, which live in the
    -- same shard group
    SET LOCAL citus.enable_unsafe_triggers TO on;
    -- A store that holds data: Citus copies its rows into the new shards, whose triggers would
    -- take each copied row for a new write (and refuse a stream that is not at version 0), and
    -- the coordinator's copies (the shells now) then give up the rows they held, past the store's
    -- refusal of TRUNCATE. The rows are the store's own, checked when they were written: these
    -- triggers are off while the rows move, and on again once they are in.
    SET LOCAL client_min_messages TO warning;   -- Citus's notices about the copy
    FOREACH g SLICE 1 IN ARRAY guards LOOP
        EXECUTE format('ALTER TABLE eventstore.%I DISABLE TRIGGER %I', g[1], g[2]);
    END LOOP;
    PERFORM create_reference_table('eventstore.stream_types');
    PERFORM create_distributed_table('eventstore.streams', 'stream_id', shard_count := shard_count);
    PERFORM create_distributed_table('eventstore.events', 'stream_id', colocate_with := 'eventstore.streams');
    PERFORM create_distributed_table('eventstore.snapshots', 'stream_id', colocate_with := 'eventstore.streams');
    PERFORM create_distributed_table('eventstore.archived_events', 'stream_id', colocate_with := 'eventstore.streams');
    PERFORM create_reference_table('eventstore.commands');
    FOREACH f IN ARRAY ARRAY['events', 'snapshots', 'archived_events', 'streams', 'commands', 'stream_types'] LOOP
        PERFORM truncate_local_data_after_distributing_table(('eventstore.' || f)::regclass);
    END LOOP;
    FOREACH g SLICE 1 IN ARRAY guards LOOP
        EXECUTE format('ALTER TABLE eventstore.%I ENABLE TRIGGER %I', g[1], g[2]);
    END LOOP;
    ALTER TABLE eventstore.events ADD CONSTRAINT events_command_id_fkey
        FOREIGN KEY (command_id) REFERENCES eventstore.commands (command_id);
    -- subscriptions made so far go on from their checkpoint, which is a position of the
    -- coordinator's range (node 0), where the events of that time keep their positions
    UPDATE eventstore.subscription_state
       SET checkpoint_nodes = jsonb_build_object('0', checkpoint),
           delivered_nodes = jsonb_build_object('0', checkpoint), delivered_up_to = checkpoint
     WHERE checkpoint_nodes IS NULL;
    PERFORM eventstore.distribute_finish();
END
$distribute$;

-- The global feed of a distributed store. Each node gives positions from its own range and settles
-- them by its own transaction ids, so a reader keeps one checkpoint per node: `after` is a JSON
-- object {"<node group id>": position, ...} (missing nodes start at 0), and each row says which
-- node's range its position is from. Per node the rows come in position order and stop at the
-- first one that is not settled there, as read_all does; the rows of a node come wherever the event
-- lives now (a moved shard takes its events' positions along), so a shard move neither hides nor
-- repeats one. Per stream, an event whose predecessor has a position from another node's range (the
-- stream's shard moved) is held back, with everything after it from its node, until the reader has
-- that predecessor: events of a stream come in sequence order. There is no order across nodes.
CREATE FUNCTION eventstore.read_all_nodes(
    after                 jsonb   DEFAULT '{}',
    max_count             integer DEFAULT 1000,
    stream_types          text[]  DEFAULT NULL,
    event_types           text[]  DEFAULT NULL,
    consumer_group_member integer DEFAULT NULL,
    consumer_group_size   integer DEFAULT NULL,
    up_to                 jsonb   DEFAULT NULL
) RETURNS TABLE (
    node            integer,
    global_position bigint,
    stream_id       text,
    stream_type     text,
    sequence        bigint,
    event_type      text,
    event_version   integer,
    payload         jsonb,
    metadata        jsonb,
    event_id        uuid,
    command_id      uuid,
    created_at      timestamptz
)
    LANGUAGE plpgsql VOLATILE ROWS 1000 SET search_path = pg_catalog, pg_temp
    -- Citus distributes a multi-shard query with parameters only from a plan for their values
    SET plan_cache_mode = force_custom_plan
    AS $read_all_nodes$
#variable_conflict use_column
DECLARE
    n record;
    r record;
    done jsonb;
    arg text;
    k text;
    v jsonb;
    left_ integer := max_count;
    got bigint;
BEGIN
    IF after IS NULL OR max_count IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', CASE WHEN after IS NULL THEN 'after' ELSE 'max_count' END
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF jsonb_typeof(after) <> 'object' THEN
        RAISE EXCEPTION 'after must be a JSON object of node group ids and positions, like {"1": 281474976710700}'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_typeof(up_to) <> 'object' THEN
        RAISE EXCEPTION 'up_to must be NULL or a JSON object of node group ids and positions'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR arg, k, v IN SELECT 'after', e.key, e.value FROM jsonb_each(after) e
                     UNION ALL SELECT 'up_to', e.key, e.value FROM jsonb_each(COALESCE(up_to, '{}')) e LOOP
        IF k !~ '^[0-9]{1,9}$' OR jsonb_typeof(v) <> 'number' OR v::text !~ '^[0-9]{1,19}$' THEN
            RAISE EXCEPTION '%: "%" must be a node group id with a position of 0 or more, not %', arg, k, v
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    IF max_count < 0 THEN
        RAISE EXCEPTION 'max_count must be 0 or more, not %', max_count USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF stream_types = '{}' OR array_position(stream_types, NULL) IS NOT NULL OR '' = ANY (stream_types)
       OR event_types = '{}' OR array_position(event_types, NULL) IS NOT NULL OR '' = ANY (event_types) THEN
        RAISE EXCEPTION 'stream_types and event_types must be NULL (all) or names, none empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (consumer_group_member IS NULL) <> (consumer_group_size IS NULL)
       OR consumer_group_size < 1 OR consumer_group_member NOT BETWEEN 0 AND consumer_group_size - 1 THEN
        RAISE EXCEPTION 'consumer_group_member must be between 0 and consumer_group_size - 1, both given or neither'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'eventstore.read_all_nodes reads a distributed store; this one is not: use eventstore.read_all'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = 'eventstore.events'::regclass) THEN
        RAISE EXCEPTION 'eventstore.read_all_nodes reads a distributed store; this one is not: use eventstore.read_all'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    done := after;
    -- each node's oldest running transaction, asked before any row is read. (Unlike read_all there is
    -- no "horizon above the next transaction id" rule for a dump of an older cluster: the next id is
    -- known only from before the read, and an event that committed since has a horizon above it.)
    -- And the highest position the node has handed out: a node the reader is past has nothing new
    -- for it now (what it hands out later is read by a later call), and its range, a query over
    -- every shard, is not read.
    FOR n IN
        SELECT r.success, r.result, r.nodeid,
               CASE WHEN r.success THEN split_part(r.result, ' ', 1)::integer END AS g,
               CASE WHEN r.success THEN split_part(r.result, ' ', 2)::xid8 END AS xmin,
               CASE WHEN r.success THEN split_part(r.result, ' ', 3)::bigint END AS head
        FROM run_command_on_all_nodes(
            'SELECT (SELECT groupid FROM pg_dist_local_group) || '' '' || pg_snapshot_xmin(pg_current_snapshot())
                    || '' '' || (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END
                                 FROM eventstore.global_position_seq)') r
        ORDER BY 4
    LOOP
        IF NOT n.success THEN
            RAISE EXCEPTION 'node % did not answer: %', n.nodeid, n.result
                USING ERRCODE = 'connection_failure', HINT = 'The feed waits for every node; retry when it is back.';
        END IF;
        EXIT WHEN left_ <= 0;
        CONTINUE WHEN up_to IS NOT NULL AND NOT up_to ? n.g::text;
        CONTINUE WHEN n.head <= COALESCE((done ->> n.g::text)::bigint, 0);
        got := 0;
        FOR r IN
            SELECT t.* FROM (
                SELECT e.*,
                       bool_and(e.horizon_xid <= n.xmin
                                AND (e.prev IS NULL OR e.prev >> 48 = n.g
                                     OR e.prev <= COALESCE((done ->> (e.prev >> 48)::text)::bigint, 0)))
                           OVER (ORDER BY e.global_position) AS settled
                FROM (SELECT ev.*, pv.global_position AS prev
                      FROM eventstore.events ev
                      LEFT JOIN eventstore.events pv ON pv.stream_id = ev.stream_id AND pv.sequence = ev.sequence - 1
                      WHERE ev.global_position > GREATEST(COALESCE((done ->> n.g::text)::bigint, 0), n.g::bigint << 48)
                        AND ev.global_position < (n.g::bigint + 1) << 48
                        AND (up_to IS NULL OR ev.global_position <= (up_to ->> n.g::text)::bigint)
                        AND (stream_types IS NULL OR ev.stream_type = ANY (stream_types))
                        AND (event_types IS NULL OR ev.event_type = ANY (event_types))
                        AND (consumer_group_size IS NULL OR
                             (hashtextextended(ev.stream_id, 0) & 9223372036854775807) % consumer_group_size
                                 = consumer_group_member)
                      ORDER BY ev.global_position LIMIT left_) e
            ) t WHERE t.settled ORDER BY t.global_position
        LOOP
            node := n.g; global_position := r.global_position; stream_id := r.stream_id;
            stream_type := r.stream_type; sequence := r.sequence; event_type := r.event_type;
            event_version := r.event_version; payload := r.payload; metadata := r.metadata;
            event_id := r.event_id; command_id := r.command_id; created_at := r.created_at;
            RETURN NEXT;
            got := got + 1;
            done := jsonb_set(done, ARRAY[n.g::text], to_jsonb(r.global_position));
        END LOOP;
        left_ := left_ - got;
    END LOOP;
END
$read_all_nodes$;

-- One node's part of distribute() and prepare_nodes(): its copies of events and archived_events
-- get the constraints of a distributed store, and its global_position_seq the node's own range.
-- Idempotent.
CREATE FUNCTION eventstore.distribute_prepare_node() RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
    AS $prepare$
DECLARE
    g bigint := (SELECT groupid FROM pg_dist_local_group);
    low bigint;
BEGIN
    IF EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = 'eventstore.events'::regclass) THEN
        -- a node that joined after distribute() (prepare_nodes): its copies of the tables are the
        -- shells Citus plans queries on, and what changes here is for this node only
        SET LOCAL citus.enable_ddl_propagation TO off;
    ELSE
        -- distribute() puts it back once commands is a reference table
        ALTER TABLE eventstore.events DROP CONSTRAINT IF EXISTS events_command_id_fkey;
    END IF;
    IF pg_get_constraintdef((SELECT oid FROM pg_constraint WHERE conname = 'events_event_id_key'
                             AND conrelid = 'eventstore.events'::regclass)) = 'UNIQUE (event_id)' THEN
        ALTER TABLE eventstore.events DROP CONSTRAINT events_event_id_key;
        ALTER TABLE eventstore.events ADD CONSTRAINT events_event_id_key UNIQUE (stream_id, event_id);
        ALTER TABLE eventstore.events DROP CONSTRAINT events_global_position_key;
        ALTER TABLE eventstore.events ADD CONSTRAINT events_global_position_key UNIQUE (global_position, stream_id);
        ALTER TABLE eventstore.archived_events DROP CONSTRAINT archived_events_event_id_key;
        ALTER TABLE eventstore.archived_events ADD CONSTRAINT archived_events_event_id_key UNIQUE (stream_id, event_id);
    END IF;
    low := g * (1::bigint << 48) + 1;
    IF (SELECT seqmin FROM pg_sequence WHERE seqrelid = 'eventstore.global_position_seq'::regclass) <> low THEN
        EXECUTE format('ALTER SEQUENCE eventstore.global_position_seq MINVALUE %1$s MAXVALUE %2$s START WITH %3$s RESTART WITH %3$s',
                       low, low + (1::bigint << 48) - 2,
                       greatest(low, (SELECT last_value + 1 FROM eventstore.global_position_seq)));
    END IF;
END
$prepare$;

-- ---------------------------------------------------------------------------------------------
-- Privileges. Nobody but the owner touches the tables; everyone else goes through the functions,
-- which run as the owner (SECURITY DEFINER) with a fixed search_path, check their arguments and
-- never build SQL from them. Two roles (cluster-wide, so created only if missing, and left in
-- place by DROP EXTENSION) carry the grants:
--   eventstore_reader: every read, the feed, verify(), and consuming subscriptions (poll/ack move
--                      only the subscription's own checkpoint, never the store's data);
--   eventstore_writer: everything the reader can, plus appends, commands, snapshots, snapshot
--                      thresholds, and creating/deleting subscriptions.
-- ---------------------------------------------------------------------------------------------

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'eventstore_reader') THEN
        CREATE ROLE eventstore_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'eventstore_writer') THEN
        CREATE ROLE eventstore_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'eventstore_admin') THEN
        CREATE ROLE eventstore_admin NOLOGIN;
    END IF;
    IF NOT pg_catalog.pg_has_role('eventstore_writer', 'eventstore_reader', 'MEMBER') THEN
        GRANT eventstore_reader TO eventstore_writer;
    END IF;
    IF NOT pg_catalog.pg_has_role('eventstore_admin', 'eventstore_reader', 'MEMBER') THEN
        GRANT eventstore_reader TO eventstore_admin;
    END IF;
END
$roles$;

REVOKE ALL ON ALL TABLES IN SCHEMA eventstore FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA eventstore FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA eventstore FROM PUBLIC;
GRANT USAGE ON SCHEMA eventstore TO eventstore_reader;

ALTER FUNCTION eventstore.append_event SECURITY DEFINER;
ALTER FUNCTION eventstore.append_events SECURITY DEFINER;
ALTER FUNCTION eventstore.append_event_here SECURITY DEFINER;
ALTER FUNCTION eventstore.append_events_here SECURITY DEFINER;
ALTER FUNCTION eventstore.take_snapshot SECURITY DEFINER;
ALTER FUNCTION eventstore.set_snapshot_threshold SECURITY DEFINER;
ALTER FUNCTION eventstore.record_command SECURITY DEFINER;
ALTER FUNCTION eventstore.create_subscription SECURITY DEFINER;
ALTER FUNCTION eventstore.delete_subscription SECURITY DEFINER;
GRANT EXECUTE ON FUNCTION
    eventstore.append_event, eventstore.append_events, eventstore.take_snapshot,
    eventstore.set_snapshot_threshold, eventstore.record_command,
    eventstore.create_subscription, eventstore.delete_subscription
    TO eventstore_writer;

ALTER FUNCTION eventstore.load_stream SECURITY DEFINER;
ALTER FUNCTION eventstore.stream_version SECURITY DEFINER;
ALTER FUNCTION eventstore.load_snapshot SECURITY DEFINER;
ALTER FUNCTION eventstore.streams_needing_snapshot SECURITY DEFINER;
ALTER FUNCTION eventstore.causation_chain SECURITY DEFINER;
ALTER FUNCTION eventstore.read_all SECURITY DEFINER;
ALTER FUNCTION eventstore.read_all_nodes SECURITY DEFINER;
ALTER FUNCTION eventstore.feed_status SECURITY DEFINER;
ALTER FUNCTION eventstore.read_stream_backward SECURITY DEFINER;
ALTER FUNCTION eventstore.last_event SECURITY DEFINER;
ALTER FUNCTION eventstore.read_category_backward SECURITY DEFINER;
ALTER FUNCTION eventstore.poll SECURITY DEFINER;
ALTER FUNCTION eventstore.ack SECURITY DEFINER;
ALTER FUNCTION eventstore.verify SECURITY DEFINER;
GRANT EXECUTE ON FUNCTION
    eventstore.load_stream, eventstore.stream_version, eventstore.load_snapshot,
    eventstore.streams_needing_snapshot, eventstore.causation_chain, eventstore.read_all,
    eventstore.feed_status, eventstore.read_stream_backward, eventstore.last_event,
    eventstore.read_category_backward, eventstore.poll, eventstore.ack, eventstore.verify
    TO eventstore_reader;
ALTER FUNCTION eventstore.subscription_lag SECURITY DEFINER;
GRANT EXECUTE ON FUNCTION eventstore.subscription_lag TO eventstore_reader;
GRANT SELECT ON eventstore.subscriptions TO eventstore_reader;
GRANT EXECUTE ON FUNCTION eventstore.read_all_nodes TO eventstore_reader;

ALTER FUNCTION eventstore.load_archived_stream SECURITY DEFINER;
GRANT EXECUTE ON FUNCTION eventstore.load_archived_stream TO eventstore_reader;
ALTER FUNCTION eventstore.delete_stream SECURITY DEFINER;
ALTER FUNCTION eventstore.truncate_stream SECURITY DEFINER;
ALTER FUNCTION eventstore.set_retention SECURITY DEFINER;
ALTER FUNCTION eventstore.apply_retention SECURITY DEFINER;
ALTER FUNCTION eventstore.archive_stream SECURITY DEFINER;
ALTER FUNCTION eventstore.restore_stream SECURITY DEFINER;
ALTER FUNCTION eventstore.erase_stream SECURITY DEFINER;
ALTER FUNCTION eventstore.redact_events SECURITY DEFINER;
ALTER FUNCTION eventstore.redact_command SECURITY DEFINER;
ALTER FUNCTION eventstore.delete_commands_without_events SECURITY DEFINER;
GRANT EXECUTE ON FUNCTION
    eventstore.delete_stream, eventstore.truncate_stream, eventstore.set_retention,
    eventstore.apply_retention, eventstore.archive_stream, eventstore.restore_stream,
    eventstore.erase_stream, eventstore.redact_events, eventstore.redact_command,
    eventstore.delete_commands_without_events
    TO eventstore_admin;
GRANT SELECT ON eventstore.audit_log TO eventstore_admin;

-- ---------------------------------------------------------------------------------------------
-- pg_dump: the tables' rows and the position sequence belong to the user, not to the extension's
-- script, so a dump carries them. See README.md ("Dump and restore") for restoring.
-- ---------------------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('eventstore.stream_types', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.streams', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.commands', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.events', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.snapshots', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.subscription_state', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.notifier_state', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.archived_events', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.audit_log_entry_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.global_position_seq', '');
