-- eventstore.load_stream(stream_id, from_sequence DEFAULT 1, max_count DEFAULT NULL) returns a stream's
-- events in sequence order; eventstore.stream_version(stream_id) its version (0 when unknown).
\set SHOW_CONTEXT never

SELECT eventstore.append_events('order-1', 'Order', '[
  {"type": "Placed",  "payload": {"n": 1}},
  {"type": "Paid",    "payload": {"n": 2}},
  {"type": "Packed",  "payload": {"n": 3}},
  {"type": "Shipped", "payload": {"n": 4}}
]');

SELECT sequence, event_type, payload FROM eventstore.load_stream('order-1');
SELECT sequence, event_type FROM eventstore.load_stream('order-1', 3);
SELECT sequence, event_type FROM eventstore.load_stream('order-1', 2, 2);
SELECT sequence, event_type FROM eventstore.load_stream('order-1', 0, 0);
-- Every event carries its id and its place in the global order.
SELECT bool_and(event_id IS NOT NULL) AS ids, bool_and(global_position > 0) AS positions,
       count(DISTINCT global_position) AS distinct_positions
FROM eventstore.load_stream('order-1');

-- An unknown stream has no events and version 0.
SELECT count(*) FROM eventstore.load_stream('order-unknown');
SELECT eventstore.stream_version('order-1'), eventstore.stream_version('order-unknown');

SELECT * FROM eventstore.load_stream(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.load_stream('order-1', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.load_stream('order-1', 1, -5);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.stream_version(NULL);
\echo :LAST_ERROR_SQLSTATE

-- Stream ids use COLLATE "C", so finding streams by an id prefix is a range scan of the primary key
-- (shown with sequential scans off, since this table is tiny).
SELECT eventstore.append_event('order-2', 'Order', 'Placed', '{}');
SELECT eventstore.append_event('ordering-1', 'Ordering', 'Opened', '{}');
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT stream_id, version FROM eventstore.streams WHERE stream_id LIKE 'order-%';
RESET enable_seqscan;
SELECT stream_id, version FROM eventstore.streams WHERE stream_id LIKE 'order-%' ORDER BY stream_id;
