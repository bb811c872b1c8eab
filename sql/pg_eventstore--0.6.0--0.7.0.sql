-- pg_eventstore 0.6.0 -> 0.7.0: durable subscriptions on a distributed store, and nodes added to a
-- distributed store. A subscription's checkpoint there is one position per node; read_all_nodes
-- can stop at given positions per node (up_to), which a subscription's poll uses to deliver an
-- unacknowledged batch again; prepare_nodes() readies nodes that joined after distribute(), and
-- distribute() now works on a store that holds data. The lifecycle functions work on a distributed
-- store, through a grant table (lifecycle_grants) that prepare_nodes() distributes on a store
-- distributed with 0.6.0. Appends claim the event ids they name in a registry distributed by id
-- (event_ids), so that no id is used in two streams, also by appends racing on different nodes;
-- prepare_nodes() sets it up, and the append functions' new delegation, on a store distributed
-- with 0.6.0.
-- Nothing changes for a store that is not distributed.
\echo Use "ALTER EXTENSION pg_eventstore UPDATE TO '0.7.0'" to load this file. \quit

ALTER TABLE eventstore.subscription_state
    ADD COLUMN checkpoint_nodes jsonb CHECK (jsonb_typeof(checkpoint_nodes) = 'object'),
    ADD COLUMN delivered_nodes  jsonb CHECK (jsonb_typeof(delivered_nodes) = 'object'),
    ADD CONSTRAINT subscription_nodes_both_or_neither CHECK ((checkpoint_nodes IS NULL) = (delivered_nodes IS NULL));

-- On a distributed store, the lifecycle functions' grant to the nodes that hold the rows they
-- change (src/distributed.rs, grant_lifecycle): a row written in the function's transaction and
-- removed before it ends, never committed. Only the store's owner writes it. A store distributed
-- with 0.6.0 makes it a reference table in prepare_nodes().
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

-- a store distributed with 0.6.0: its subscriptions (made before distribute(), which 0.6.0 allowed
-- only then) go on from their checkpoint, a position of the coordinator's range
DO $nodes$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
        EXECUTE $update$
            UPDATE eventstore.subscription_state
               SET checkpoint_nodes = jsonb_build_object('0', checkpoint),
                   delivered_nodes = jsonb_build_object('0', checkpoint), delivered_up_to = checkpoint
             WHERE EXISTS (SELECT FROM pg_catalog.pg_dist_partition
                            WHERE logicalrelid = 'eventstore.events'::pg_catalog.regclass)$update$;
    END IF;
END
$nodes$;

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

ALTER FUNCTION eventstore.subscription_lag SECURITY DEFINER;
REVOKE ALL ON FUNCTION eventstore.subscription_lag FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eventstore.subscription_lag TO eventstore_reader;

DROP VIEW eventstore.subscriptions;
CREATE VIEW eventstore.subscriptions AS
SELECT s.name, s.stream_types, s.event_types, s.checkpoint, s.delivered_up_to,
       CASE WHEN s.lease_expires_at > now() THEN s.lease_pid END AS lease_pid,
       CASE WHEN s.lease_expires_at > now() THEN s.lease_expires_at END AS lease_expires_at,
       l.lag_positions, l.lag_events,
       s.created_at, s.updated_at, s.checkpoint_nodes
FROM eventstore.subscription_state s
CROSS JOIN LATERAL eventstore.subscription_lag(s.checkpoint, s.checkpoint_nodes, s.stream_types, s.event_types) l;
GRANT SELECT ON eventstore.subscriptions TO eventstore_reader;

DROP FUNCTION eventstore.read_all_nodes(jsonb, integer, text[], text[], integer, integer);
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
ALTER FUNCTION eventstore.read_all_nodes SECURITY DEFINER;
REVOKE ALL ON FUNCTION eventstore.read_all_nodes FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eventstore.read_all_nodes TO eventstore_reader;

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
ALTER FUNCTION eventstore.append_event_here SECURITY DEFINER;
ALTER FUNCTION eventstore.append_events_here SECURITY DEFINER;
REVOKE ALL ON FUNCTION eventstore.append_event_here, eventstore.append_events_here FROM PUBLIC;

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
REVOKE ALL ON FUNCTION eventstore.distribute_finish FROM PUBLIC;

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
REVOKE ALL ON FUNCTION eventstore.prepare_nodes FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore.distribute(shard_count integer DEFAULT 32) RETURNS void
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

-- One node's part of distribute() and prepare_nodes(): its copies of events and archived_events
-- get the constraints of a distributed store, and its global_position_seq the node's own range.
-- Idempotent.
CREATE OR REPLACE FUNCTION eventstore.distribute_prepare_node() RETURNS void
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
