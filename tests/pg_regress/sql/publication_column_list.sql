-- A publication whose column list leaves out the replica identity (PostgreSQL 15 on; 14 has no
-- column lists, expected/publication_column_list_1.out): Postgres refuses to UPDATE the table,
-- and so an append to an existing stream fails the same way and writes nothing.
\set SHOW_CONTEXT never
CREATE DATABASE es_publication_columns;
\c es_publication_columns
CREATE EXTENSION pg_eventstore;
SELECT eventstore.append_event('pub-1', 'Thing', 'Made', '{}');
SET client_min_messages = error;
CREATE PUBLICATION partial_streams FOR TABLE eventstore.streams (stream_type, version);
RESET client_min_messages;
UPDATE eventstore.streams SET snapshot_threshold = 5 WHERE stream_id = 'pub-1';
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_event('pub-1', 'Thing', 'Published', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_events('pub-1', 'Thing', '[{"type": "PublishedA", "payload": {}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT sequence, event_type FROM eventstore.events WHERE stream_id = 'pub-1' ORDER BY sequence;
DROP PUBLICATION partial_streams;
SELECT eventstore.append_event('pub-1', 'Thing', 'Published', '{}');
SELECT * FROM eventstore.verify();

\c pg_eventstore_regress
DROP DATABASE es_publication_columns;
