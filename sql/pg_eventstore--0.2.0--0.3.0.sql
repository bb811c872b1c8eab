-- pg_eventstore 0.2.0 -> 0.3.0: stream ids and stream types use the "C" collation (see the top of
-- sql/schema.sql). The tables are not rewritten, but every index on these columns is rebuilt and the
-- foreign keys between events, commands and snapshots are checked again: on a large store this takes
-- a while (about 25 s per 10 million events on the benchmark machine) and holds ACCESS EXCLUSIVE
-- locks on the tables until the update commits.
\echo Use "ALTER EXTENSION pg_eventstore UPDATE TO '0.3.0'" to load this file. \quit

-- the view reads events.stream_type, and Postgres does not change the type of a column a view uses
DROP VIEW eventstore.subscriptions;

ALTER TABLE eventstore.stream_types
    ALTER COLUMN stream_type TYPE text COLLATE "C";
ALTER TABLE eventstore.streams
    ALTER COLUMN stream_id TYPE text COLLATE "C",
    ALTER COLUMN stream_type TYPE text COLLATE "C";
ALTER TABLE eventstore.events
    ALTER COLUMN stream_id TYPE text COLLATE "C",
    ALTER COLUMN stream_type TYPE text COLLATE "C";
ALTER TABLE eventstore.commands
    ALTER COLUMN stream_id TYPE text COLLATE "C",
    ALTER COLUMN caused_by_stream_id TYPE text COLLATE "C";
ALTER TABLE eventstore.snapshots
    ALTER COLUMN stream_id TYPE text COLLATE "C";

CREATE VIEW eventstore.subscriptions AS
SELECT s.name, s.stream_types, s.event_types, s.checkpoint, s.delivered_up_to,
       CASE WHEN s.lease_expires_at > now() THEN s.lease_pid END AS lease_pid,
       CASE WHEN s.lease_expires_at > now() THEN s.lease_expires_at END AS lease_expires_at,
       h.head - s.checkpoint AS lag_positions,
       (SELECT count(*) FROM eventstore.events e
         WHERE e.global_position > s.checkpoint
           AND (s.stream_types IS NULL OR e.stream_type = ANY (s.stream_types))
           AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))) AS lag_events,
       s.created_at, s.updated_at
FROM eventstore.subscription_state s
CROSS JOIN (SELECT COALESCE(max(global_position), 0) AS head FROM eventstore.events) h;

REVOKE ALL ON eventstore.subscriptions FROM PUBLIC;
GRANT SELECT ON eventstore.subscriptions TO eventstore_reader;
