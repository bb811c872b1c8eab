-- The benchmark database: the extension, and the baselines it is measured against.
CREATE EXTENSION pg_eventstore;

CREATE SCHEMA baseline;

-- The floor: postgres-es's events table (cqrs-es), as its documentation creates it. No function, no
-- checks beyond its primary key.
CREATE TABLE baseline.events (
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

-- What a user would write instead of the extension: the same append semantics in PL/pgSQL
-- (stream row lock, version check, insert, version bump), with an event id and a global position.
CREATE TABLE baseline.streams (
    stream_id   text PRIMARY KEY,
    stream_type text NOT NULL,
    version     bigint NOT NULL
);

CREATE TABLE baseline.store_events (
    stream_id       text NOT NULL,
    sequence        bigint NOT NULL,
    event_id        uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    event_type      text NOT NULL,
    payload         jsonb NOT NULL,
    metadata        jsonb NOT NULL,
    global_position bigserial UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, sequence)
);

CREATE FUNCTION baseline.append_event(p_stream_id text, p_stream_type text, p_event_type text,
                                      p_payload jsonb, p_metadata jsonb DEFAULT '{}',
                                      p_expected_version bigint DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    SELECT version INTO v FROM baseline.streams WHERE stream_id = p_stream_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO baseline.streams VALUES (p_stream_id, p_stream_type, 0) ON CONFLICT DO NOTHING;
        SELECT version INTO v FROM baseline.streams WHERE stream_id = p_stream_id FOR UPDATE;
    END IF;
    IF p_expected_version IS NOT NULL AND p_expected_version <> v THEN
        RAISE EXCEPTION 'stream %: expected version %, actual %', p_stream_id, p_expected_version, v
            USING ERRCODE = '40001';
    END IF;
    INSERT INTO baseline.store_events (stream_id, sequence, event_type, payload, metadata)
    VALUES (p_stream_id, v + 1, p_event_type, p_payload, p_metadata);
    UPDATE baseline.streams SET version = v + 1 WHERE stream_id = p_stream_id;
    RETURN v + 1;
END
$$;

-- Commands with the events they caused, as a user would write it: a commands table, and the same
-- append with a command_id column whose foreign key the database checks.
CREATE TABLE baseline.commands (
    command_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    command_type text NOT NULL,
    payload      jsonb NOT NULL,
    stream_id    text,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE baseline.cmd_events (LIKE baseline.store_events INCLUDING DEFAULTS INCLUDING INDEXES);
ALTER TABLE baseline.cmd_events ADD COLUMN command_id uuid REFERENCES baseline.commands;

CREATE FUNCTION baseline.record_command(p_command_type text, p_payload jsonb, p_stream_id text DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    id uuid;
BEGIN
    INSERT INTO baseline.commands (command_type, payload, stream_id) VALUES (p_command_type, p_payload, p_stream_id)
    RETURNING command_id INTO id;
    RETURN id;
END
$$;

CREATE FUNCTION baseline.append_event_cmd(p_stream_id text, p_stream_type text, p_event_type text,
                                          p_payload jsonb, p_metadata jsonb, p_command_id uuid)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    SELECT version INTO v FROM baseline.streams WHERE stream_id = p_stream_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO baseline.streams VALUES (p_stream_id, p_stream_type, 0) ON CONFLICT DO NOTHING;
        SELECT version INTO v FROM baseline.streams WHERE stream_id = p_stream_id FOR UPDATE;
    END IF;
    INSERT INTO baseline.cmd_events (stream_id, sequence, event_type, payload, metadata, command_id)
    VALUES (p_stream_id, v + 1, p_event_type, p_payload, p_metadata, p_command_id);
    UPDATE baseline.streams SET version = v + 1 WHERE stream_id = p_stream_id;
    RETURN v + 1;
END
$$;

-- The floor for this feature set: a bare table with exactly the store's columns, collations and
-- indexes (primary key, unique event id, unique global position, category index), written by plain
-- INSERTs without checks or triggers. The single and batch workloads compare the store's appends with it
-- to separate what the store's code costs from what its indexes cost.
CREATE TABLE baseline.store_shaped_events (LIKE eventstore.events INCLUDING DEFAULTS INCLUDING INDEXES);
CREATE SEQUENCE baseline.store_shaped_position;
-- The same for the streams table (with its fillfactor, which LIKE does not copy): the stream row
-- and the event row written by one statement of plain SQL, the floor of an append in this schema
-- (an INSERT of both for a new stream; an UPDATE of the version and an INSERT for an existing one).
CREATE TABLE baseline.store_shaped_streams (LIKE eventstore.streams INCLUDING DEFAULTS INCLUDING INDEXES)
    WITH (fillfactor = 70);

-- No autovacuum in the bench database: its workers started several times a run, on whichever
-- variant was running. (A VACUUM before each run instead was worse: the pages it dirtied were
-- written out during the next run, which halved the batch INSERT baseline.) The tables here are
-- insert-only but for the streams rows, which HOT pruning keeps small.
DO $$
DECLARE t regclass;
BEGIN
    FOR t IN SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r' AND n.nspname IN ('eventstore', 'baseline') LOOP
        EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = off, toast.autovacuum_enabled = off)', t);
    END LOOP;
END
$$;

-- Streams that bench/instructions.py's trigger-path workload inserts events into directly.
INSERT INTO eventstore.streams (stream_id, stream_type) SELECT 'trg-' || i, 'Bench' FROM generate_series(0, 7) AS i;
