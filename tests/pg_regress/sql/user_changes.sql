-- Whatever a user changes in the store's tables, an append behaves as the same plain INSERT or
-- UPDATE would: the store writes straight into heap and indexes only while a table's whole
-- definition is exactly the one the extension created, and through SQL statements otherwise.
-- Each case below was skipped by 0.3.0's direct writes.
-- (A database of its own: the first case needs a store without events.)
\set SHOW_CONTEXT never
CREATE DATABASE es_user_changes;
\c es_user_changes
CREATE EXTENSION pg_eventstore;
INSERT INTO eventstore.streams (stream_id, stream_type) VALUES ('change-1', 'Thing');

-- NOT NULL added to a column the store leaves NULL: a plain INSERT fails, so does an append.
ALTER TABLE eventstore.events ALTER command_id SET NOT NULL;
INSERT INTO eventstore.events (stream_id, sequence, event_type, payload) VALUES ('change-1', 1, 'Plain', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_event('change-1', 'Thing', 'Changed', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_events('change-1', 'Thing', '[{"type": "A", "payload": {}}, {"type": "B", "payload": {}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_event('change-new', 'Thing', 'Made', '{}');
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE eventstore.events ALTER command_id DROP NOT NULL;
SELECT count(*) AS events, (SELECT count(*) FROM eventstore.streams) AS streams FROM eventstore.events;
SELECT eventstore.append_event('change-1', 'Thing', 'Made', '{}');
SELECT eventstore.append_event('change-1', 'Thing', 'Plain', '{}');

-- Rules: DO ALSO rules on events (INSERT) and streams (UPDATE) see every append.
CREATE TABLE rule_log (tbl text, stream_id text, n bigint);
CREATE RULE log_event AS ON INSERT TO eventstore.events
    DO ALSO INSERT INTO public.rule_log VALUES ('events', NEW.stream_id, NEW.sequence);
CREATE RULE log_version AS ON UPDATE TO eventstore.streams
    DO ALSO INSERT INTO public.rule_log VALUES ('streams', NEW.stream_id, NEW.version);
CREATE RULE log_stream AS ON INSERT TO eventstore.streams
    DO ALSO INSERT INTO public.rule_log VALUES ('new stream', NEW.stream_id, NEW.version);
SELECT eventstore.append_event('change-1', 'Thing', 'Ruled', '{}');
SELECT eventstore.append_events('change-1', 'Thing', '[{"type": "A", "payload": {}}, {"type": "B", "payload": {}}]');
SELECT eventstore.append_event('change-ruled', 'Thing', 'Made', '{}');
SELECT eventstore.append_event('change-ruled-ids', 'Thing', 'Made', '{}', event_id => 'e0000000-0000-0000-0000-000000000001');
SELECT eventstore.append_event('change-ruled-ids', 'Thing', 'Made', '{}', event_id => 'e0000000-0000-0000-0000-000000000001');
SELECT * FROM rule_log ORDER BY tbl, stream_id, n;
DROP RULE log_event ON eventstore.events;
DROP RULE log_version ON eventstore.streams;
DROP RULE log_stream ON eventstore.streams;
-- Gone again: appends are not logged any more.
SELECT eventstore.append_event('change-1', 'Thing', 'Unruled', '{}');
SELECT count(*) AS logged FROM rule_log;

-- A changed column default: appends use it, as a plain INSERT does (events and new streams).
ALTER TABLE eventstore.events ALTER created_at SET DEFAULT '2001-02-03 04:05:06+00';
ALTER TABLE eventstore.streams ALTER created_at SET DEFAULT '2001-02-03 04:05:06+00';
SELECT eventstore.append_event('change-1', 'Thing', 'Dated', '{}');
SELECT eventstore.append_events('change-1', 'Thing', '[{"type": "DatedA", "payload": {}}, {"type": "DatedB", "payload": {}}]');
SELECT eventstore.append_event('change-dated', 'Thing', 'Made', '{}');
SET TIME ZONE 'UTC';
SELECT event_type, created_at FROM eventstore.events
WHERE stream_id IN ('change-1', 'change-dated') AND created_at < '2002-01-01' ORDER BY stream_id, sequence;
SELECT stream_id, created_at FROM eventstore.streams WHERE created_at < '2002-01-01';
RESET TIME ZONE;
ALTER TABLE eventstore.events ALTER created_at SET DEFAULT now();
ALTER TABLE eventstore.streams ALTER created_at SET DEFAULT now();

-- (A publication with a column list: publication_column_list.sql.)
-- A publication of the whole tables is no obstacle: appends work and are published.
SET client_min_messages = error;
CREATE PUBLICATION whole_store FOR TABLE eventstore.streams, eventstore.events;
RESET client_min_messages;
SELECT eventstore.append_event('change-1', 'Thing', 'Published', '{}');
DROP PUBLICATION whole_store;

-- A trigger that carries the store's name but calls the user's function is the user's trigger.
CREATE TABLE guard_log (stream_id text, sequence bigint);
CREATE FUNCTION my_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.guard_log VALUES (NEW.stream_id, NEW.sequence);
    RETURN NEW;
END $$;
DROP TRIGGER events_guard ON eventstore.events;
CREATE TRIGGER events_guard BEFORE INSERT ON eventstore.events FOR EACH ROW EXECUTE FUNCTION my_guard();
SELECT eventstore.append_event('change-1', 'Thing', 'Guarded', '{}');
SELECT * FROM guard_log;
DROP TRIGGER events_guard ON eventstore.events;
CREATE TRIGGER events_guard BEFORE INSERT ON eventstore.events
    FOR EACH ROW EXECUTE FUNCTION eventstore.events_guard();

-- After all of it, the store is whole, and appends write directly again.
SELECT sequence, event_type FROM eventstore.events WHERE stream_id = 'change-1' ORDER BY sequence;
SELECT version FROM eventstore.streams WHERE stream_id = 'change-1';
SELECT * FROM eventstore.verify();

\c pg_eventstore_regress
DROP DATABASE es_user_changes;
