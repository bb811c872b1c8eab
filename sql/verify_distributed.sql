-- verify() of a store distributed over Citus (eventstore.distribute()): the same invariants as the
-- single-node statement in src/verify.rs, written as joins Citus can push down to each shard group
-- (no correlated subqueries over subqueries), and the position sequence checked per node: each node
-- hands out positions from its own range, group id times 2^48 onwards.
SELECT 'stream_version'::text, s.stream_id, NULL::bigint,
       format('%s stream at version %s (truncated before %s), but %s events with sequences %s..%s%s',
              s.state, s.version, s.truncate_before, COALESCE(e.n, 0), COALESCE(e.lo, 0), COALESCE(e.hi, 0),
              CASE WHEN a.n IS NOT NULL THEN format(' and %s archived events %s..%s', a.n, a.lo, a.hi) ELSE '' END)
FROM eventstore.streams s
LEFT JOIN (SELECT stream_id, count(*) AS n, min(sequence) AS lo, max(sequence) AS hi
           FROM eventstore.events GROUP BY stream_id) e ON e.stream_id = s.stream_id
LEFT JOIN (SELECT stream_id, count(*) AS n, min(sequence) AS lo, max(sequence) AS hi
           FROM eventstore.archived_events GROUP BY stream_id) a ON a.stream_id = s.stream_id
WHERE CASE s.state
        WHEN 'tombstone' THEN e.n IS NOT NULL OR a.n IS NOT NULL
        WHEN 'archived' THEN e.n IS NOT NULL OR (a.n IS NULL) <> (s.version < GREATEST(s.truncate_before, 1))
             OR a.n <> a.hi - a.lo + 1 OR a.hi <> s.version OR a.lo > GREATEST(s.truncate_before, 1)
        ELSE a.n IS NOT NULL OR (e.n IS NULL AND s.version >= GREATEST(s.truncate_before, 1) AND s.state = 'live')
             OR e.n <> e.hi - e.lo + 1 OR e.hi <> s.version
             OR (s.state = 'live' AND e.lo > GREATEST(s.truncate_before, 1))
      END
UNION ALL
SELECT 'stream_row', s.stream_id, NULL,
       concat_ws('; ', CASE WHEN s.stream_id = '' THEN 'empty stream_id' END,
                       CASE WHEN s.stream_type = '' THEN 'empty stream_type' END,
                       CASE WHEN s.snapshot_threshold < 1 THEN 'snapshot_threshold below 1' END,
                       CASE WHEN s.state NOT IN ('live', 'deleted', 'tombstone', 'archived') THEN 'unknown state ' || s.state END,
                       CASE WHEN s.truncate_before NOT BETWEEN 0 AND s.version + 1 THEN 'truncate_before out of range' END)
FROM eventstore.streams s
WHERE s.stream_id = '' OR s.stream_type = '' OR s.snapshot_threshold < 1
   OR s.state NOT IN ('live', 'deleted', 'tombstone', 'archived') OR s.truncate_before NOT BETWEEN 0 AND s.version + 1
UNION ALL
SELECT 'event_without_stream', e.stream_id, e.hi, format('%s events of a stream that does not exist', e.n)
FROM (SELECT stream_id, count(*) AS n, max(sequence) AS hi FROM eventstore.events GROUP BY stream_id) e
LEFT JOIN eventstore.streams s ON s.stream_id = e.stream_id WHERE s.stream_id IS NULL
UNION ALL
SELECT 'event_without_stream', e.stream_id, e.hi, format('%s events of a stream that does not exist', e.n)
FROM (SELECT stream_id, count(*) AS n, max(sequence) AS hi FROM eventstore.archived_events GROUP BY stream_id) e
LEFT JOIN eventstore.streams s ON s.stream_id = e.stream_id WHERE s.stream_id IS NULL
UNION ALL
SELECT 'event_stream_type', ev.stream_id, ev.sequence,
       format('the event says stream type %s, the stream says %s', ev.stream_type, s.stream_type)
FROM eventstore.events ev JOIN eventstore.streams s ON s.stream_id = ev.stream_id
WHERE ev.stream_type <> s.stream_type
UNION ALL
SELECT 'event_row', ev.stream_id, ev.sequence,
       concat_ws('; ', CASE WHEN ev.event_type = '' THEN 'empty event_type' END,
                       CASE WHEN ev.event_version < 1 THEN 'event_version below 1' END,
                       CASE WHEN jsonb_typeof(ev.payload) <> 'object' THEN 'payload is not an object' END,
                       CASE WHEN jsonb_typeof(ev.metadata) <> 'object' THEN 'metadata is not an object' END,
                       CASE WHEN ev.global_position < 1 THEN 'global_position below 1' END)
FROM eventstore.events ev
WHERE ev.event_type = '' OR ev.event_version < 1 OR jsonb_typeof(ev.payload) <> 'object'
   OR jsonb_typeof(ev.metadata) <> 'object' OR ev.global_position < 1
UNION ALL
SELECT 'event_position_order', o.stream_id, o.sequence,
       format('global_position %s is not above the previous event''s %s', o.global_position, o.prev)
-- within a stream, among the events one node gave positions to (a shard moved to another node
-- carries on with that node's positions)
FROM (SELECT ev.stream_id, ev.sequence, ev.global_position,
             lag(ev.global_position) OVER (PARTITION BY ev.stream_id, ev.global_position >> 48
                                           ORDER BY ev.sequence) AS prev
      FROM eventstore.events ev) o
WHERE o.global_position <= o.prev
UNION ALL
SELECT 'event_command', ev.stream_id, ev.sequence, format('command %s does not exist', ev.command_id)
FROM eventstore.events ev LEFT JOIN eventstore.commands c ON c.command_id = ev.command_id
WHERE ev.command_id IS NOT NULL AND c.command_id IS NULL
UNION ALL
SELECT 'command_cause', c.caused_by_stream_id, c.caused_by_sequence,
       format('command %s names a causing event that does not exist', c.command_id)
FROM eventstore.commands c
LEFT JOIN eventstore.streams s ON s.stream_id = c.caused_by_stream_id
LEFT JOIN eventstore.events e ON e.stream_id = c.caused_by_stream_id AND e.sequence = c.caused_by_sequence
LEFT JOIN eventstore.archived_events ae ON ae.stream_id = c.caused_by_stream_id AND ae.sequence = c.caused_by_sequence
WHERE c.caused_by_stream_id IS NOT NULL AND e.stream_id IS NULL AND ae.stream_id IS NULL
  AND NOT (s.state = 'tombstone' OR c.caused_by_sequence < s.truncate_before)
UNION ALL
SELECT 'command_correlation', c.stream_id, NULL,
       format('command %s has correlation_id %s, its causation chain says %s', c.command_id,
              c.correlation_id, COALESCE(p.correlation_id, c.command_id))
FROM eventstore.commands c
LEFT JOIN eventstore.events e ON e.stream_id = c.caused_by_stream_id AND e.sequence = c.caused_by_sequence
LEFT JOIN eventstore.commands p ON p.command_id = e.command_id
WHERE c.correlation_id IS DISTINCT FROM COALESCE(p.correlation_id, c.command_id)
  AND (c.caused_by_stream_id IS NULL OR e.stream_id IS NOT NULL)
UNION ALL
SELECT 'snapshot_range', sn.stream_id, sn.sequence,
       format('snapshot at sequence %s, stream version %s', sn.sequence, COALESCE(s.version::text, 'none'))
FROM eventstore.snapshots sn LEFT JOIN eventstore.streams s ON s.stream_id = sn.stream_id
WHERE s.version IS NULL OR s.state <> 'live' OR sn.sequence < 1 OR sn.sequence > s.version
UNION ALL
SELECT 'position_sequence', NULL, m.hi,
       format('node group %s: eventstore.global_position_seq would hand out %s again, but the highest position from its range is %s',
              m.g, q.next, m.hi)
FROM (SELECT global_position >> 48 AS g, max(global_position) AS hi
      FROM (SELECT global_position FROM eventstore.events
            UNION ALL SELECT global_position FROM eventstore.archived_events) p GROUP BY 1) m
JOIN (SELECT split_part(result, ' ', 1)::bigint AS g, split_part(result, ' ', 2)::bigint AS next
      FROM pg_catalog.run_command_on_all_nodes(
               'SELECT (SELECT groupid FROM pg_dist_local_group) || '' '' || (SELECT CASE WHEN is_called '
               'THEN last_value + 1 ELSE last_value END FROM eventstore.global_position_seq)')
      WHERE success) q ON q.g = m.g
WHERE q.next <= m.hi
UNION ALL
-- event ids are unique per stream by constraint; across streams (on other nodes) appends look them
-- up, which two appends racing with one new id can both pass (README, "Running on Citus")
SELECT 'event_id_reused', min(i.stream_id), NULL,
       format('event id %s is in %s streams: %s', i.event_id, count(*), string_agg(i.stream_id, ', ' ORDER BY i.stream_id))
FROM (SELECT event_id, stream_id FROM eventstore.events
      UNION ALL SELECT event_id, stream_id FROM eventstore.archived_events) i
GROUP BY i.event_id HAVING count(*) > 1
UNION ALL
SELECT 'node', NULL, NULL, format('node %s could not be checked: %s', r.nodeid, r.result)
FROM pg_catalog.run_command_on_all_nodes('SELECT 1 FROM eventstore.global_position_seq') r WHERE NOT r.success
ORDER BY 1, 2, 3
