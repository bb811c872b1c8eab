-- pg_eventstore 0.5.0 -> 0.6.0: running on Citus. eventstore.distribute(), the per-node step it
-- runs on every node, and read_all_nodes, the feed of a distributed store; nothing changes for a
-- store that is not distributed.
\echo Use "ALTER EXTENSION pg_eventstore UPDATE TO '0.6.0'" to load this file. \quit

CREATE FUNCTION eventstore.distribute(shard_count integer DEFAULT 32) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
    AS $distribute$
DECLARE
    f text;
    failed text;
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
    PERFORM eventstore.distribute_prepare_node();
    SELECT string_agg(format('%s:%s: %s', nodename, nodeport, result), '; ') INTO failed
      FROM run_command_on_workers('SELECT eventstore.distribute_prepare_node()') WHERE NOT success;
    IF failed IS NOT NULL THEN
        RAISE EXCEPTION 'eventstore.distribute() could not prepare every worker: %', failed
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Each worker needs pg_eventstore installed, at the same version as the coordinator.';
    END IF;
    SET LOCAL citus.multi_shard_modify_mode TO 'sequential';
    -- the store's triggers only ever touch rows of the stream they fire for, which live in the
    -- same shard group
    SET LOCAL citus.enable_unsafe_triggers TO on;
    PERFORM create_reference_table('eventstore.stream_types');
    PERFORM create_distributed_table('eventstore.streams', 'stream_id', shard_count := shard_count);
    PERFORM create_distributed_table('eventstore.events', 'stream_id', colocate_with := 'eventstore.streams');
    PERFORM create_distributed_table('eventstore.snapshots', 'stream_id', colocate_with := 'eventstore.streams');
    PERFORM create_distributed_table('eventstore.archived_events', 'stream_id', colocate_with := 'eventstore.streams');
    PERFORM create_reference_table('eventstore.commands');
    ALTER TABLE eventstore.events ADD CONSTRAINT events_command_id_fkey
        FOREIGN KEY (command_id) REFERENCES eventstore.commands (command_id);
    FOREACH f IN ARRAY ARRAY[
        'eventstore.append_event(text,text,text,jsonb,jsonb,bigint,uuid,uuid,integer)',
        'eventstore.append_events(text,text,jsonb,bigint,uuid)',
        'eventstore.load_stream(text,bigint,bigint)',
        'eventstore.stream_version(text)',
        'eventstore.take_snapshot(text,bigint,jsonb,integer)',
        'eventstore.load_snapshot(text,bigint)',
        'eventstore.read_stream_backward(text,bigint,bigint)',
        'eventstore.last_event(text)'
    ] LOOP
        PERFORM create_distributed_function(f::regprocedure, 'stream_id', colocate_with := 'eventstore.streams',
                                                          force_delegation := true);
    END LOOP;
END
$distribute$;

-- One node's part of distribute(): its copies of events and archived_events get the constraints
-- of a distributed store, and its global_position_seq the node's own range. Idempotent.
CREATE FUNCTION eventstore.distribute_prepare_node() RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
    AS $prepare$
DECLARE
    g bigint := (SELECT groupid FROM pg_dist_local_group);
    low bigint;
BEGIN
    ALTER TABLE eventstore.events DROP CONSTRAINT IF EXISTS events_command_id_fkey;
    IF pg_get_constraintdef((SELECT oid FROM pg_constraint WHERE conname = 'events_event_id_key'
                             AND conrelid = 'eventstore.events'::regclass)) = 'UNIQUE (event_id)' THEN
        ALTER TABLE eventstore.events DROP CONSTRAINT events_event_id_key,
            ADD CONSTRAINT events_event_id_key UNIQUE (stream_id, event_id),
            DROP CONSTRAINT events_global_position_key,
            ADD CONSTRAINT events_global_position_key UNIQUE (global_position, stream_id);
        ALTER TABLE eventstore.archived_events DROP CONSTRAINT archived_events_event_id_key,
            ADD CONSTRAINT archived_events_event_id_key UNIQUE (stream_id, event_id);
    END IF;
    low := g * (1::bigint << 48) + 1;
    IF (SELECT seqmin FROM pg_sequence WHERE seqrelid = 'eventstore.global_position_seq'::regclass) <> low THEN
        EXECUTE format('ALTER SEQUENCE eventstore.global_position_seq MINVALUE %1$s MAXVALUE %2$s START WITH %3$s RESTART WITH %3$s',
                       low, low + (1::bigint << 48) - 2,
                       greatest(low, (SELECT last_value + 1 FROM eventstore.global_position_seq)));
    END IF;
END
$prepare$;

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
    consumer_group_size   integer DEFAULT NULL
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
    k text;
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
    FOR k IN SELECT jsonb_object_keys(after) LOOP
        IF k !~ '^[0-9]{1,9}$' OR jsonb_typeof(after -> k) <> 'number' OR (after ->> k) !~ '^[0-9]{1,19}$' THEN
            RAISE EXCEPTION 'after: "%" must be a node group id with a position of 0 or more, not %', k, after -> k
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
    FOR n IN
        SELECT r.success, r.result, r.nodeid,
               CASE WHEN r.success THEN split_part(r.result, ' ', 1)::integer END AS g,
               CASE WHEN r.success THEN split_part(r.result, ' ', 2)::xid8 END AS xmin
        FROM run_command_on_all_nodes(
            'SELECT (SELECT groupid FROM pg_dist_local_group) || '' '' || pg_snapshot_xmin(pg_current_snapshot())') r
        ORDER BY 4
    LOOP
        IF NOT n.success THEN
            RAISE EXCEPTION 'node % did not answer: %', n.nodeid, n.result
                USING ERRCODE = 'connection_failure', HINT = 'The feed waits for every node; retry when it is back.';
        END IF;
        EXIT WHEN left_ <= 0;
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

REVOKE ALL ON FUNCTION eventstore.distribute(integer), eventstore.distribute_prepare_node() FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.read_all_nodes FROM PUBLIC;
ALTER FUNCTION eventstore.read_all_nodes SECURITY DEFINER;
GRANT EXECUTE ON FUNCTION eventstore.read_all_nodes TO eventstore_reader;
