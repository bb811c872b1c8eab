-- eventstore.take_snapshot(stream_id, sequence, payload, snapshot_version DEFAULT 1) stores the state
-- folded from events 1..sequence; eventstore.load_snapshot(stream_id, max_sequence DEFAULT NULL)
-- returns the newest one at or below max_sequence. Loading an aggregate is load_snapshot, then
-- load_stream from the snapshot's sequence + 1.
\set SHOW_CONTEXT never

SELECT eventstore.append_events('counter-1', 'Counter',
  (SELECT jsonb_agg(jsonb_build_object('type', 'Incremented', 'payload', jsonb_build_object('by', i)))
   FROM generate_series(1, 25) AS i));

SELECT eventstore.take_snapshot('counter-1', 10, '{"total": 55}');
SELECT eventstore.take_snapshot('counter-1', 20, '{"total": 210}');
SELECT sequence, snapshot_version, payload FROM eventstore.load_snapshot('counter-1');
SELECT sequence, payload FROM eventstore.load_snapshot('counter-1', 15);
SELECT count(*) FROM eventstore.load_snapshot('counter-1', 9);
SELECT count(*) FROM eventstore.load_snapshot('counter-unknown');

-- Taking a snapshot again at the same sequence replaces it (e.g. a new snapshot_version).
SELECT eventstore.take_snapshot('counter-1', 20, '{"total": 210, "schema": 2}', 2);
SELECT sequence, snapshot_version, payload FROM eventstore.load_snapshot('counter-1');

-- Loading the aggregate: snapshot + the tail of events after it.
SELECT s.payload AS snapshot, count(e.*) AS tail_events, sum((e.payload->>'by')::int) AS tail_sum
FROM eventstore.load_snapshot('counter-1') s
LEFT JOIN LATERAL eventstore.load_stream('counter-1', s.sequence + 1) e ON true
GROUP BY s.payload;

-- The sequence must be between 1 and the stream's version.
SELECT eventstore.take_snapshot('counter-1', 26, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.take_snapshot('counter-1', 0, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.take_snapshot('counter-unknown', 1, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.take_snapshot('counter-1', NULL, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.take_snapshot('counter-1', 5, '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.take_snapshot('counter-1', 5, '{}', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.load_snapshot(NULL);
\echo :LAST_ERROR_SQLSTATE

-- Snapshot policy: set_snapshot_threshold(stream_type, threshold) gives new streams of the type that
-- threshold and updates existing ones (returns how many); streams_needing_snapshot(max_count) lists
-- streams whose events since their newest snapshot reach it.
SELECT eventstore.set_snapshot_threshold('Counter', 5);
SELECT eventstore.append_events('counter-2', 'Counter', '[{"type": "Incremented", "payload": {"by": 1}}]');
SELECT stream_id, snapshot_threshold FROM eventstore.streams WHERE stream_type = 'Counter' ORDER BY stream_id;
SELECT * FROM eventstore.streams_needing_snapshot();
SELECT eventstore.append_events('counter-2', 'Counter',
  '[{"type": "Incremented", "payload": {"by": 1}}, {"type": "Incremented", "payload": {"by": 1}},
    {"type": "Incremented", "payload": {"by": 1}}, {"type": "Incremented", "payload": {"by": 1}}]');
SELECT * FROM eventstore.streams_needing_snapshot();
SELECT * FROM eventstore.streams_needing_snapshot(1);
SELECT eventstore.take_snapshot('counter-1', 25, '{"total": 325}');
SELECT * FROM eventstore.streams_needing_snapshot();
-- NULL switches snapshotting off for the type.
SELECT eventstore.set_snapshot_threshold('Counter', NULL);
SELECT count(*) FROM eventstore.streams_needing_snapshot();
SELECT eventstore.set_snapshot_threshold('Counter', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.set_snapshot_threshold(NULL, 5);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.streams_needing_snapshot(-1);
\echo :LAST_ERROR_SQLSTATE
