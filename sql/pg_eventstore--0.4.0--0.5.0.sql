-- pg_eventstore 0.4.0 -> 0.5.0: stream lifecycle and data protection. Streams get a state and a
-- truncation point, stream types a retention, events of archived streams a table of their own,
-- removals an audit log; a command's causing event and a snapshot's event are no longer foreign
-- keys (a hard delete, a truncation or an archive may remove them), the snapshots trigger checks
-- what the foreign key did. Quick: new columns with constant defaults rewrite nothing.
\echo Use "ALTER EXTENSION pg_eventstore UPDATE TO '0.5.0'" to load this file. \quit

ALTER TABLE eventstore.stream_types
    ADD COLUMN max_age interval CHECK (max_age > interval '0'),
    ADD COLUMN max_count bigint CHECK (max_count > 0),
    ADD COLUMN keep_after_snapshot boolean NOT NULL DEFAULT false;

ALTER TABLE eventstore.streams
    ADD COLUMN state text COLLATE "C" NOT NULL DEFAULT 'live',
    ADD COLUMN truncate_before bigint NOT NULL DEFAULT 0;

ALTER TABLE eventstore.commands DROP CONSTRAINT commands_caused_by_fkey;
ALTER TABLE eventstore.snapshots
    DROP CONSTRAINT snapshots_event_fkey,
    DROP CONSTRAINT snapshots_snapshot_version_check,
    DROP CONSTRAINT snapshots_payload_check;

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

CREATE TABLE eventstore.audit_log (
    entry_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action         text NOT NULL,
    stream_id      text COLLATE "C",
    command_id     uuid,
    first_sequence bigint,
    last_sequence  bigint,
    sequences      bigint[],
    paths          text[],
    rows           bigint NOT NULL,
    reason         text,
    done_by        text NOT NULL DEFAULT session_user,
    done_at        timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION eventstore.snapshots_guard() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'es_snapshots_guard';
CREATE TRIGGER snapshots_guard BEFORE INSERT OR UPDATE ON eventstore.snapshots
    FOR EACH ROW EXECUTE FUNCTION eventstore.snapshots_guard();
CREATE TRIGGER archived_events_append_only BEFORE INSERT OR UPDATE OR DELETE ON eventstore.archived_events
    FOR EACH ROW EXECUTE FUNCTION eventstore.append_only();
CREATE TRIGGER archived_events_no_truncate BEFORE TRUNCATE ON eventstore.archived_events
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.append_only();
CREATE TRIGGER audit_log_append_only BEFORE INSERT OR UPDATE OR DELETE ON eventstore.audit_log
    FOR EACH ROW EXECUTE FUNCTION eventstore.append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON eventstore.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.append_only();

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

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'eventstore_admin') THEN
        CREATE ROLE eventstore_admin NOLOGIN;
    END IF;
    IF NOT pg_catalog.pg_has_role('eventstore_admin', 'eventstore_reader', 'MEMBER') THEN
        GRANT eventstore_reader TO eventstore_admin;
    END IF;
END
$roles$;

REVOKE ALL ON eventstore.archived_events, eventstore.audit_log FROM PUBLIC;
REVOKE ALL ON SEQUENCE eventstore.audit_log_entry_id_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION
    eventstore.snapshots_guard, eventstore.redact_json, eventstore.delete_stream, eventstore.truncate_stream,
    eventstore.set_retention, eventstore.apply_retention, eventstore.archive_stream, eventstore.restore_stream,
    eventstore.load_archived_stream, eventstore.erase_stream, eventstore.redact_events, eventstore.redact_command,
    eventstore.delete_commands_without_events
    FROM PUBLIC;

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

SELECT pg_catalog.pg_extension_config_dump('eventstore.archived_events', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.audit_log_entry_id_seq', '');
