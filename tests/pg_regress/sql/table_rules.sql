-- The rules hold for every writer: plain INSERT/UPDATE/DELETE/TRUNCATE on the store's tables go
-- through the same checks as the functions.
\set SHOW_CONTEXT never

SELECT eventstore.append_event('direct-1', 'Thing', 'Made', '{}');

-- A direct INSERT must use the next sequence (it is an append expecting version sequence - 1).
INSERT INTO eventstore.events (stream_id, sequence, event_type, payload) VALUES ('direct-1', 2, 'Changed', '{}');
SELECT version FROM eventstore.streams WHERE stream_id = 'direct-1';
SELECT stream_type, global_position > 0 AS positioned FROM eventstore.events WHERE stream_id = 'direct-1' AND sequence = 2;
INSERT INTO eventstore.events (stream_id, sequence, event_type, payload) VALUES ('direct-1', 2, 'Changed', '{}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO eventstore.events (stream_id, sequence, event_type, payload) VALUES ('direct-1', 5, 'Changed', '{}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO eventstore.events (stream_id, sequence, event_type, payload) VALUES ('direct-unknown', 1, 'Made', '{}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO eventstore.events (stream_id, sequence, stream_type, event_type, payload) VALUES ('direct-1', 3, 'Other', 'Changed', '{}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO eventstore.events (stream_id, sequence, event_type, payload, global_position) VALUES ('direct-1', 3, 'Changed', '{}', 1);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO eventstore.events (stream_id, sequence, event_type, payload) VALUES ('direct-1', 3, 'Changed', '[]');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO eventstore.events (stream_id, sequence, event_type, payload, metadata) VALUES ('direct-1', 3, 'Changed', '{}', '"x"');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO eventstore.events (stream_id, sequence, event_type, payload) VALUES ('direct-1', 3, '', '{}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO eventstore.events (stream_id, sequence, event_type, payload, event_version) VALUES ('direct-1', 3, 'Changed', '{}', 0);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO eventstore.events (stream_id, sequence, event_type, payload, command_id) VALUES ('direct-1', 3, 'Changed', '{}', gen_random_uuid());
\echo :LAST_ERROR_SQLSTATE
SELECT version FROM eventstore.streams WHERE stream_id = 'direct-1';

-- Events are immutable.
UPDATE eventstore.events SET payload = '{"x": 1}' WHERE stream_id = 'direct-1';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM eventstore.events WHERE stream_id = 'direct-1';
\echo :LAST_ERROR_SQLSTATE
TRUNCATE eventstore.events CASCADE;
\echo :LAST_ERROR_SQLSTATE

-- A stream's version moves only with its events; its identity never changes; it is not deleted.
UPDATE eventstore.streams SET version = 10 WHERE stream_id = 'direct-1';
\echo :LAST_ERROR_SQLSTATE
UPDATE eventstore.streams SET stream_type = 'Other' WHERE stream_id = 'direct-1';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM eventstore.streams WHERE stream_id = 'direct-1';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO eventstore.streams (stream_id, stream_type, version) VALUES ('direct-2', 'Thing', 4);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO eventstore.streams (stream_id, stream_type) VALUES ('', 'Thing');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO eventstore.streams (stream_id, stream_type, snapshot_threshold) VALUES ('direct-3', 'Thing', 0);
\echo :LAST_ERROR_SQLSTATE
-- A stream may be created empty and then appended to; its snapshot threshold may be set.
INSERT INTO eventstore.streams (stream_id, stream_type) VALUES ('direct-2', 'Thing');
UPDATE eventstore.streams SET snapshot_threshold = 50 WHERE stream_id = 'direct-2';
SELECT eventstore.append_event('direct-2', 'Thing', 'Made', '{}', expected_version => 0);
SELECT stream_id, version, snapshot_threshold FROM eventstore.streams WHERE stream_id = 'direct-2';

-- Commands are immutable and their correlation_id is derived, never taken from the writer.
INSERT INTO eventstore.commands (command_id, command_type, payload) VALUES ('00000000-0000-4000-8000-00000000d001', 'Make', '{}');
SELECT command_id = correlation_id AS is_root FROM eventstore.commands WHERE command_id = '00000000-0000-4000-8000-00000000d001';
INSERT INTO eventstore.commands (command_type, payload, correlation_id) VALUES ('Make', '{}', gen_random_uuid());
\echo :LAST_ERROR_SQLSTATE
INSERT INTO eventstore.commands (command_type, payload, caused_by_stream_id, caused_by_sequence) VALUES ('Make', '{}', 'direct-1', 99);
\echo :LAST_ERROR_SQLSTATE
UPDATE eventstore.commands SET user_id = 'mallory';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM eventstore.commands;
\echo :LAST_ERROR_SQLSTATE

-- Snapshots can only cover events that exist.
INSERT INTO eventstore.snapshots (stream_id, sequence, payload) VALUES ('direct-1', 9, '{}');
\echo :LAST_ERROR_SQLSTATE
