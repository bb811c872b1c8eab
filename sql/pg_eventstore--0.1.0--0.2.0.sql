-- pg_eventstore 0.1.0 -> 0.2.0: eventstore.verify(), least-privilege roles with SECURITY DEFINER
-- functions, and the tables registered with pg_dump. The block below is the same text as the end of
-- sql/schema.sql; tests/upgrade.sh checks that an upgraded store equals a fresh install.
\echo Use "ALTER EXTENSION pg_eventstore UPDATE TO '0.2.0'" to load this file. \quit

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
    IF NOT pg_catalog.pg_has_role('eventstore_writer', 'eventstore_reader', 'MEMBER') THEN
        GRANT eventstore_reader TO eventstore_writer;
    END IF;
END
$roles$;

REVOKE ALL ON ALL TABLES IN SCHEMA eventstore FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA eventstore FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA eventstore FROM PUBLIC;
GRANT USAGE ON SCHEMA eventstore TO eventstore_reader;

ALTER FUNCTION eventstore.append_event SECURITY DEFINER;
ALTER FUNCTION eventstore.append_events SECURITY DEFINER;
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
GRANT SELECT ON eventstore.subscriptions TO eventstore_reader;

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
SELECT pg_catalog.pg_extension_config_dump('eventstore.global_position_seq', '');
