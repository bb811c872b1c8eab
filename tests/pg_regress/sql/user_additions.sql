-- append_event and append_events write events and bump stream versions straight into the heap and
-- indexes (src/direct.rs). Whatever a user adds to the store's tables is still honoured: with a
-- trigger, a CHECK constraint or a column of their own the functions write through SQL statements.
-- (The store's functions run with a search path of pg_catalog only, so a trigger function that is
-- called from them names its tables with their schema, or sets its own search_path.)
\set SHOW_CONTEXT never

-- A user's audit trigger on events sees every appended event.
CREATE TABLE audit (stream_id text, sequence bigint);
CREATE FUNCTION audit_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.audit VALUES (NEW.stream_id, NEW.sequence);
    RETURN NULL;
END $$;
CREATE TRIGGER audit_event AFTER INSERT ON eventstore.events FOR EACH ROW EXECUTE FUNCTION audit_event();
SELECT eventstore.append_event('user-1', 'Thing', 'Made', '{}');
SELECT eventstore.append_events('user-1', 'Thing', '[{"type": "A", "payload": {}}, {"type": "B", "payload": {}}]');
SELECT * FROM audit ORDER BY sequence;
-- Disabled, it is not called, and the store writes directly again.
ALTER TABLE eventstore.events DISABLE TRIGGER audit_event;
SELECT eventstore.append_event('user-1', 'Thing', 'C', '{}');
SELECT count(*) AS audited FROM audit;
DROP TRIGGER audit_event ON eventstore.events;

-- A user's trigger on streams sees every version bump.
CREATE FUNCTION audit_stream() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.audit VALUES (NEW.stream_id, NEW.version);
    RETURN NEW;
END $$;
CREATE TRIGGER audit_stream BEFORE UPDATE ON eventstore.streams FOR EACH ROW EXECUTE FUNCTION audit_stream();
SELECT eventstore.append_event('user-1', 'Thing', 'D', '{}');
SELECT * FROM audit WHERE stream_id = 'user-1' AND sequence = 5;
DROP TRIGGER audit_stream ON eventstore.streams;

-- A user's CHECK constraint holds for appends too, and a violation leaves nothing behind.
ALTER TABLE eventstore.events ADD CONSTRAINT amount_given
    CHECK (event_type <> 'Paid' OR payload ? 'amount') NOT VALID;
SELECT eventstore.append_event('user-1', 'Thing', 'Paid', '{"note": "no amount"}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_events('user-1', 'Thing', '[{"type": "Paid", "payload": {"amount": 1}}, {"type": "Paid", "payload": {}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_event('user-1', 'Thing', 'Paid', '{"amount": 5}');
ALTER TABLE eventstore.events DROP CONSTRAINT amount_given;

-- A column of the user's own gets its default.
ALTER TABLE eventstore.events ADD COLUMN tenant text NOT NULL DEFAULT 'acme';
SELECT eventstore.append_event('user-1', 'Thing', 'E', '{}');
SELECT sequence, tenant FROM eventstore.events WHERE stream_id = 'user-1' AND event_type = 'E';
ALTER TABLE eventstore.events DROP COLUMN tenant;
-- Once dropped, appends go straight to the table again.
SELECT eventstore.append_events('user-1', 'Thing', '[{"type": "F", "payload": {}}, {"type": "G", "payload": {"x": 1}}]');

SELECT sequence, event_type, payload FROM eventstore.events WHERE stream_id = 'user-1' ORDER BY sequence;
SELECT version FROM eventstore.streams WHERE stream_id = 'user-1';
SELECT * FROM eventstore.verify();

-- A read-only transaction cannot append, whichever way the store would write.
BEGIN READ ONLY;
SELECT eventstore.append_event('user-1', 'Thing', 'H', '{}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN READ ONLY;
SELECT eventstore.append_event('user-new', 'Thing', 'H', '{}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- The direct writes check the caller's table privileges as the statements would. The store's
-- functions run as their owner; a declaration of the same C function without SECURITY DEFINER
-- (as an older install had) must not let a role without rights write.
CREATE FUNCTION public.append_as_caller(text, text, text, jsonb, jsonb DEFAULT '{}', bigint DEFAULT NULL,
    uuid DEFAULT NULL, uuid DEFAULT NULL, integer DEFAULT 1) RETURNS bigint
    LANGUAGE c AS 'pg_eventstore', 'es_append_event';
CREATE ROLE es_no_rights;
GRANT USAGE ON SCHEMA eventstore TO es_no_rights;
SET ROLE es_no_rights;
SELECT public.append_as_caller('user-1', 'Thing', 'I', '{}');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT version FROM eventstore.streams WHERE stream_id = 'user-1';
DROP FUNCTION public.append_as_caller;
REVOKE USAGE ON SCHEMA eventstore FROM es_no_rights;
DROP ROLE es_no_rights;

DROP TABLE audit;
DROP FUNCTION audit_event();
DROP FUNCTION audit_stream();
