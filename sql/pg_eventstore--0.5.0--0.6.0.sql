-- pg_eventstore 0.5.0 -> 0.6.0: running on Citus. eventstore.distribute() and the per-node step
-- it runs on every node; nothing changes for a store that is not distributed.
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

REVOKE ALL ON FUNCTION eventstore.distribute(integer), eventstore.distribute_prepare_node() FROM PUBLIC;
