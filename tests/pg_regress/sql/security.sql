-- Least privilege. The store's tables belong to the role that created the extension; nobody else
-- reads or writes them directly. Everyone else works through the functions, which run as the owner
-- (SECURITY DEFINER) with a fixed search_path, granted to two roles the extension creates:
--   eventstore_writer: append, record commands, take snapshots, set thresholds, manage subscriptions,
--                      and everything the reader can (it is a member of eventstore_reader);
--   eventstore_reader: every read, the feed, feed_status, verify, and poll/ack on subscriptions;
--   eventstore_admin: the lifecycle functions (deleting, truncating, archiving, erasing) and the
--                     audit log, and everything the reader can.
-- Grant them to your application's login roles: GRANT eventstore_writer TO my_app;
\set SHOW_CONTEXT never

DO $$BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'es_app') THEN CREATE ROLE es_app LOGIN; END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'es_projector') THEN CREATE ROLE es_projector LOGIN; END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'es_nobody') THEN CREATE ROLE es_nobody LOGIN; END IF;
END$$;
GRANT eventstore_writer TO es_app;
GRANT eventstore_reader TO es_projector;

-- A writer appends, records commands, snapshots and reads.
SET ROLE es_app;
SELECT eventstore.append_event('sec-1', 'SecThing', 'Made', '{"by": "writer"}');
SELECT eventstore.record_command('Change', '{}', 'sec-1', caused_by_stream_id => 'sec-1', caused_by_sequence => 1) IS NOT NULL AS recorded;
SELECT eventstore.append_events('sec-1', 'SecThing', '[{"type": "Changed", "payload": {}}]', 1);
SELECT eventstore.take_snapshot('sec-1', 2, '{"state": "changed"}');
SELECT eventstore.create_subscription('sec-sub', ARRAY['SecThing']);
SELECT sequence, event_type FROM eventstore.load_stream('sec-1');

-- but cannot touch the tables, the position sequence or the trigger functions.
SELECT count(*) FROM eventstore.events;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO eventstore.events (stream_id, sequence, event_type, payload) VALUES ('sec-1', 3, 'Forged', '{}');
\echo :LAST_ERROR_SQLSTATE
UPDATE eventstore.streams SET version = 9 WHERE stream_id = 'sec-1';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM eventstore.commands;
\echo :LAST_ERROR_SQLSTATE
UPDATE eventstore.subscription_state SET checkpoint = 1000;
\echo :LAST_ERROR_SQLSTATE
SELECT nextval('eventstore.global_position_seq');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.events_guard();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- A reader reads: streams, snapshots, the feed, subscriptions, verify.
SET ROLE es_projector;
SELECT sequence, event_type FROM eventstore.load_stream('sec-1');
SELECT eventstore.stream_version('sec-1');
SELECT sequence, payload FROM eventstore.load_snapshot('sec-1');
SELECT stream_id, sequence, event_type FROM eventstore.read_all(0, 10, ARRAY['SecThing']);
SELECT stream_id, sequence, event_type FROM eventstore.poll('sec-sub', 1);
SELECT eventstore.ack('sec-sub', (SELECT max(global_position) FROM eventstore.read_all(0, 1, ARRAY['SecThing'])));
SELECT name, lag_events FROM eventstore.subscriptions WHERE name = 'sec-sub';
SELECT count(*) AS violations FROM eventstore.verify();
-- and nothing else.
SELECT eventstore.append_event('sec-1', 'SecThing', 'Forged', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.record_command('Forge', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.take_snapshot('sec-1', 1, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.set_snapshot_threshold('SecThing', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.delete_subscription('sec-sub');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.streams;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- A role that was granted neither cannot even see the schema's contents.
SET ROLE es_nobody;
SELECT * FROM eventstore.load_stream('sec-1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.subscriptions;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- A hostile search_path. A writer creates look-alikes of everything the functions use internally —
-- tables, jsonb_typeof, nextval, now, gen_random_uuid, max, the text = operator — in a schema it
-- puts before pg_catalog, plus temporary tables. Had a SECURITY DEFINER function resolved one of
-- them, it would run with the owner's rights; each look-alike raises an error to show it was not.
CREATE SCHEMA IF NOT EXISTS evil AUTHORIZATION es_app;
SET ROLE es_app;
CREATE TABLE evil.events (stream_id text, sequence bigint);
CREATE TABLE evil.streams (stream_id text, version bigint);
CREATE FUNCTION evil.trap() RETURNS text LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'a look-alike was called'; END$$;
CREATE FUNCTION evil.jsonb_typeof(jsonb) RETURNS text LANGUAGE sql AS 'SELECT evil.trap()';
CREATE FUNCTION evil.nextval(regclass) RETURNS bigint LANGUAGE sql AS 'SELECT length(evil.trap())::bigint';
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT evil.trap()::timestamptz';
CREATE FUNCTION evil.gen_random_uuid() RETURNS uuid LANGUAGE sql AS 'SELECT evil.trap()::uuid';
CREATE FUNCTION evil.texteq(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT evil.trap() IS NULL';
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq);
CREATE FUNCTION evil.max_step(bigint, bigint) RETURNS bigint LANGUAGE sql AS 'SELECT length(evil.trap())::bigint';
CREATE AGGREGATE evil.max(bigint) (SFUNC = evil.max_step, STYPE = bigint);
CREATE TEMP TABLE events (stream_id text, sequence bigint);
CREATE TEMP TABLE streams (stream_id text, version bigint);
SET search_path = pg_temp, evil, pg_catalog, eventstore;
-- The look-alikes are live for plain SQL in this session:
SELECT 'a'::text = 'a'::text;
\echo :LAST_ERROR_SQLSTATE
-- but the store's functions never reach them.
SELECT append_event('sec-evil', 'SecThing', 'Made', '{}');
SELECT append_events('sec-evil', 'SecThing', '[{"type": "Changed", "payload": {"n": 1}}, {"type": "Changed", "payload": {"n": 2}}]', 1);
SELECT record_command('Poke', '{}', 'sec-evil', caused_by_stream_id => 'sec-evil', caused_by_sequence => 3) IS NOT NULL AS recorded;
SELECT take_snapshot('sec-evil', 3, '{"n": 2}');
SELECT sequence, event_type, payload FROM load_stream('sec-evil');
SELECT stream_version('sec-evil');
SELECT sequence FROM load_snapshot('sec-evil');
SELECT depth, kind FROM causation_chain('sec-evil', 3);
SELECT stream_id, sequence FROM read_all(0, 10, ARRAY['SecThing']) WHERE stream_id OPERATOR(pg_catalog.=) 'sec-evil';
SELECT sequence FROM read_stream_backward('sec-evil', NULL, 2);
SELECT sequence FROM last_event('sec-evil');
SELECT stream_id, sequence FROM read_category_backward('SecThing', 1);
SELECT stream_id, sequence FROM poll('sec-sub', 10);
SELECT lagging_events FROM feed_status();
SELECT invariant FROM verify();
RESET search_path;
RESET ROLE;

-- The lifecycle functions belong to eventstore_admin (a member of eventstore_reader): a writer and
-- a reader may not delete, truncate, archive, erase or redact anything, nor read the audit log.
SET ROLE es_app;
SELECT eventstore.delete_stream('sec-1');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.erase_stream('sec-1', 'not mine to erase');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.apply_retention();
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM eventstore.audit_log;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE es_projector;
SELECT eventstore.archive_stream('sec-1');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM eventstore.load_archived_stream('sec-1');
RESET ROLE;
DO $$BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'es_dpo') THEN CREATE ROLE es_dpo LOGIN; END IF;
END$$;
GRANT eventstore_admin TO es_dpo;
-- An admin, with a hostile search_path of its own, erases and deletes; the look-alikes stay unused.
CREATE SCHEMA evil2 AUTHORIZATION es_dpo;
SET ROLE es_dpo;
CREATE FUNCTION evil2.trap() RETURNS text LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'a look-alike was called'; END$$;
CREATE FUNCTION evil2.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT evil2.trap()::timestamptz';
CREATE FUNCTION evil2.jsonb_set(jsonb, text[], jsonb, boolean) RETURNS jsonb LANGUAGE sql AS 'SELECT evil2.trap()::jsonb';
CREATE TABLE evil2.audit_log (action text);
SET search_path = evil2, pg_catalog, eventstore;
SELECT redact_events('sec-evil', NULL, ARRAY['payload.n'], 'dpo request');
SELECT erase_stream('sec-evil', 'dpo request');
SELECT delete_stream('sec-evil', hard => true, reason => 'dpo request');
SELECT action, rows, reason FROM eventstore.audit_log WHERE stream_id OPERATOR(pg_catalog.=) 'sec-evil' ORDER BY entry_id;
SELECT invariant FROM verify();
RESET search_path;
RESET ROLE;
DROP SCHEMA evil2 CASCADE;
REVOKE eventstore_admin FROM es_dpo;

DROP SCHEMA evil CASCADE;
REVOKE eventstore_writer FROM es_app;
REVOKE eventstore_reader FROM es_projector;
