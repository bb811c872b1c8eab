//! eventstore.verify(): every invariant of the store, checked over all of it in one read. The
//! triggers keep these true for every write; verify() is for what the triggers cannot see — a
//! restore with triggers disabled, a superuser's session_replication_role = replica, disk damage.

use crate::fcall::Args;
use crate::spi::{return_rows, Stmt};
use pgrx::pg_sys::Datum;

static VERIFY: Stmt = Stmt {
    sql: "WITH per_stream AS ( \
              SELECT stream_id, count(*) AS n, min(sequence) AS lo, max(sequence) AS hi \
              FROM eventstore.events GROUP BY stream_id), \
          per_archived AS ( \
              SELECT stream_id, count(*) AS n, min(sequence) AS lo, max(sequence) AS hi \
              FROM eventstore.archived_events GROUP BY stream_id) \
          SELECT 'stream_version'::text, s.stream_id, NULL::bigint, \
                 format('%s stream at version %s (truncated before %s), but %s events with sequences %s..%s%s', \
                        s.state, s.version, s.truncate_before, COALESCE(e.n, 0), COALESCE(e.lo, 0), COALESCE(e.hi, 0), \
                        CASE WHEN a.n IS NOT NULL THEN format(' and %s archived events %s..%s', a.n, a.lo, a.hi) ELSE '' END) \
          FROM eventstore.streams s \
          LEFT JOIN per_stream e ON e.stream_id = s.stream_id \
          LEFT JOIN per_archived a ON a.stream_id = s.stream_id \
          WHERE CASE s.state \
                  WHEN 'tombstone' THEN e.n IS NOT NULL OR a.n IS NOT NULL \
                  WHEN 'archived' THEN e.n IS NOT NULL OR (a.n IS NULL) <> (s.version < GREATEST(s.truncate_before, 1)) \
                       OR a.n <> a.hi - a.lo + 1 OR a.hi <> s.version OR a.lo > GREATEST(s.truncate_before, 1) \
                  ELSE a.n IS NOT NULL OR (e.n IS NULL AND s.version >= GREATEST(s.truncate_before, 1) AND s.state = 'live') \
                       OR e.n <> e.hi - e.lo + 1 OR e.hi <> s.version \
                       OR (s.state = 'live' AND e.lo > GREATEST(s.truncate_before, 1)) \
                END \
          UNION ALL \
          SELECT 'stream_row', s.stream_id, NULL, \
                 concat_ws('; ', CASE WHEN s.stream_id = '' THEN 'empty stream_id' END, \
                                 CASE WHEN s.stream_type = '' THEN 'empty stream_type' END, \
                                 CASE WHEN s.snapshot_threshold < 1 THEN 'snapshot_threshold below 1' END, \
                                 CASE WHEN s.state NOT IN ('live', 'deleted', 'tombstone', 'archived') THEN 'unknown state ' || s.state END, \
                                 CASE WHEN s.truncate_before NOT BETWEEN 0 AND s.version + 1 THEN 'truncate_before out of range' END) \
          FROM eventstore.streams s \
          WHERE s.stream_id = '' OR s.stream_type = '' OR s.snapshot_threshold < 1 \
             OR s.state NOT IN ('live', 'deleted', 'tombstone', 'archived') OR s.truncate_before NOT BETWEEN 0 AND s.version + 1 \
          UNION ALL \
          SELECT 'event_without_stream', e.stream_id, e.hi, format('%s events of a stream that does not exist', e.n) \
          FROM (SELECT * FROM per_stream UNION ALL SELECT * FROM per_archived) e \
          WHERE NOT EXISTS (SELECT FROM eventstore.streams s WHERE s.stream_id = e.stream_id) \
          UNION ALL \
          SELECT 'event_stream_type', ev.stream_id, ev.sequence, \
                 format('the event says stream type %s, the stream says %s', ev.stream_type, s.stream_type) \
          FROM eventstore.events ev JOIN eventstore.streams s ON s.stream_id = ev.stream_id \
          WHERE ev.stream_type <> s.stream_type \
          UNION ALL \
          SELECT 'event_row', ev.stream_id, ev.sequence, \
                 concat_ws('; ', CASE WHEN ev.event_type = '' THEN 'empty event_type' END, \
                                 CASE WHEN ev.event_version < 1 THEN 'event_version below 1' END, \
                                 CASE WHEN jsonb_typeof(ev.payload) <> 'object' THEN 'payload is not an object' END, \
                                 CASE WHEN jsonb_typeof(ev.metadata) <> 'object' THEN 'metadata is not an object' END, \
                                 CASE WHEN ev.global_position < 1 THEN 'global_position below 1' END) \
          FROM eventstore.events ev \
          WHERE ev.event_type = '' OR ev.event_version < 1 OR jsonb_typeof(ev.payload) <> 'object' \
             OR jsonb_typeof(ev.metadata) <> 'object' OR ev.global_position < 1 \
          UNION ALL \
          SELECT 'event_position_order', o.stream_id, o.sequence, \
                 format('global_position %s is not above the previous event''s %s', o.global_position, o.prev) \
          FROM (SELECT ev.stream_id, ev.sequence, ev.global_position, \
                       lag(ev.global_position) OVER (PARTITION BY ev.stream_id ORDER BY ev.sequence) AS prev \
                FROM eventstore.events ev) o \
          WHERE o.global_position <= o.prev \
          UNION ALL \
          SELECT 'event_command', ev.stream_id, ev.sequence, format('command %s does not exist', ev.command_id) \
          FROM eventstore.events ev \
          WHERE ev.command_id IS NOT NULL \
            AND NOT EXISTS (SELECT FROM eventstore.commands c WHERE c.command_id = ev.command_id) \
          UNION ALL \
          SELECT 'command_cause', c.caused_by_stream_id, c.caused_by_sequence, \
                 format('command %s names a causing event that does not exist', c.command_id) \
          FROM eventstore.commands c \
          LEFT JOIN eventstore.streams s ON s.stream_id = c.caused_by_stream_id \
          WHERE c.caused_by_stream_id IS NOT NULL \
            AND NOT EXISTS (SELECT FROM eventstore.events e \
                            WHERE e.stream_id = c.caused_by_stream_id AND e.sequence = c.caused_by_sequence) \
            AND NOT EXISTS (SELECT FROM eventstore.archived_events e \
                            WHERE e.stream_id = c.caused_by_stream_id AND e.sequence = c.caused_by_sequence) \
            AND NOT (s.state = 'tombstone' OR c.caused_by_sequence < s.truncate_before) \
            AND NOT (s.stream_id IS NULL AND EXISTS (SELECT FROM eventstore.audit_log l \
                     WHERE l.action = 'delete_stream' AND l.stream_id = c.caused_by_stream_id)) \
          UNION ALL \
          SELECT 'command_correlation', c.stream_id, NULL, \
                 format('command %s has correlation_id %s, its causation chain says %s', c.command_id, \
                        c.correlation_id, COALESCE(p.correlation_id, c.command_id)) \
          FROM eventstore.commands c \
          LEFT JOIN eventstore.events e ON e.stream_id = c.caused_by_stream_id AND e.sequence = c.caused_by_sequence \
          LEFT JOIN eventstore.commands p ON p.command_id = e.command_id \
          WHERE c.correlation_id IS DISTINCT FROM COALESCE(p.correlation_id, c.command_id) \
            AND (c.caused_by_stream_id IS NULL OR e.stream_id IS NOT NULL) \
          UNION ALL \
          SELECT 'snapshot_range', sn.stream_id, sn.sequence, \
                 format('snapshot at sequence %s, stream version %s', sn.sequence, COALESCE(s.version::text, 'none')) \
          FROM eventstore.snapshots sn LEFT JOIN eventstore.streams s ON s.stream_id = sn.stream_id \
          WHERE s.version IS NULL OR s.state <> 'live' OR sn.sequence < 1 OR sn.sequence > s.version \
          UNION ALL \
          SELECT 'position_sequence', NULL, m.hi, \
                 format('eventstore.global_position_seq would hand out %s again, but the highest position is %s', \
                        q.next, m.hi) \
          FROM (SELECT max(hi) AS hi FROM (SELECT max(global_position) AS hi FROM eventstore.events \
                UNION ALL SELECT max(global_position) FROM eventstore.archived_events) p) m, \
               (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END AS next \
                FROM eventstore.global_position_seq) q \
          WHERE q.next <= m.hi \
          ORDER BY 1, 2, 3",
    args: &[],
};

/// verify() of a schema older than 0.5.0 (no lifecycle).
static VERIFY_PRE_05: Stmt = Stmt {
    sql: "WITH per_stream AS ( \
              SELECT stream_id, count(*) AS n, min(sequence) AS lo, max(sequence) AS hi \
              FROM eventstore.events GROUP BY stream_id) \
          SELECT 'stream_version'::text, s.stream_id, NULL::bigint, \
                 format('version %s, but %s events with sequences %s..%s', s.version, COALESCE(e.n, 0), \
                        COALESCE(e.lo, 0), COALESCE(e.hi, 0)) \
          FROM eventstore.streams s LEFT JOIN per_stream e ON e.stream_id = s.stream_id \
          WHERE s.version <> COALESCE(e.n, 0) OR s.version <> COALESCE(e.hi, 0) OR COALESCE(e.lo, 1) <> 1 \
          UNION ALL \
          SELECT 'stream_row', s.stream_id, NULL, \
                 concat_ws('; ', CASE WHEN s.stream_id = '' THEN 'empty stream_id' END, \
                                 CASE WHEN s.stream_type = '' THEN 'empty stream_type' END, \
                                 CASE WHEN s.snapshot_threshold < 1 THEN 'snapshot_threshold below 1' END) \
          FROM eventstore.streams s \
          WHERE s.stream_id = '' OR s.stream_type = '' OR s.snapshot_threshold < 1 \
          UNION ALL \
          SELECT 'event_without_stream', e.stream_id, e.hi, format('%s events of a stream that does not exist', e.n) \
          FROM per_stream e \
          WHERE NOT EXISTS (SELECT FROM eventstore.streams s WHERE s.stream_id = e.stream_id) \
          UNION ALL \
          SELECT 'event_stream_type', ev.stream_id, ev.sequence, \
                 format('the event says stream type %s, the stream says %s', ev.stream_type, s.stream_type) \
          FROM eventstore.events ev JOIN eventstore.streams s ON s.stream_id = ev.stream_id \
          WHERE ev.stream_type <> s.stream_type \
          UNION ALL \
          SELECT 'event_row', ev.stream_id, ev.sequence, \
                 concat_ws('; ', CASE WHEN ev.event_type = '' THEN 'empty event_type' END, \
                                 CASE WHEN ev.event_version < 1 THEN 'event_version below 1' END, \
                                 CASE WHEN jsonb_typeof(ev.payload) <> 'object' THEN 'payload is not an object' END, \
                                 CASE WHEN jsonb_typeof(ev.metadata) <> 'object' THEN 'metadata is not an object' END, \
                                 CASE WHEN ev.global_position < 1 THEN 'global_position below 1' END) \
          FROM eventstore.events ev \
          WHERE ev.event_type = '' OR ev.event_version < 1 OR jsonb_typeof(ev.payload) <> 'object' \
             OR jsonb_typeof(ev.metadata) <> 'object' OR ev.global_position < 1 \
          UNION ALL \
          SELECT 'event_position_order', o.stream_id, o.sequence, \
                 format('global_position %s is not above the previous event''s %s', o.global_position, o.prev) \
          FROM (SELECT ev.stream_id, ev.sequence, ev.global_position, \
                       lag(ev.global_position) OVER (PARTITION BY ev.stream_id ORDER BY ev.sequence) AS prev \
                FROM eventstore.events ev) o \
          WHERE o.global_position <= o.prev \
          UNION ALL \
          SELECT 'event_command', ev.stream_id, ev.sequence, format('command %s does not exist', ev.command_id) \
          FROM eventstore.events ev \
          WHERE ev.command_id IS NOT NULL \
            AND NOT EXISTS (SELECT FROM eventstore.commands c WHERE c.command_id = ev.command_id) \
          UNION ALL \
          SELECT 'command_cause', c.caused_by_stream_id, c.caused_by_sequence, \
                 format('command %s names a causing event that does not exist', c.command_id) \
          FROM eventstore.commands c \
          WHERE c.caused_by_stream_id IS NOT NULL \
            AND NOT EXISTS (SELECT FROM eventstore.events e \
                            WHERE e.stream_id = c.caused_by_stream_id AND e.sequence = c.caused_by_sequence) \
          UNION ALL \
          SELECT 'command_correlation', c.stream_id, NULL, \
                 format('command %s has correlation_id %s, its causation chain says %s', c.command_id, \
                        c.correlation_id, COALESCE(p.correlation_id, c.command_id)) \
          FROM eventstore.commands c \
          LEFT JOIN eventstore.events e ON e.stream_id = c.caused_by_stream_id AND e.sequence = c.caused_by_sequence \
          LEFT JOIN eventstore.commands p ON p.command_id = e.command_id \
          WHERE c.correlation_id IS DISTINCT FROM COALESCE(p.correlation_id, c.command_id) \
          UNION ALL \
          SELECT 'snapshot_range', sn.stream_id, sn.sequence, \
                 format('snapshot at sequence %s, stream version %s', sn.sequence, COALESCE(s.version::text, 'none')) \
          FROM eventstore.snapshots sn LEFT JOIN eventstore.streams s ON s.stream_id = sn.stream_id \
          WHERE s.version IS NULL OR sn.sequence < 1 OR sn.sequence > s.version \
          UNION ALL \
          SELECT 'position_sequence', NULL, m.hi, \
                 format('eventstore.global_position_seq would hand out %s again, but the highest position is %s', \
                        q.next, m.hi) \
          FROM (SELECT max(global_position) AS hi FROM eventstore.events) m, \
               (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END AS next \
                FROM eventstore.global_position_seq) q \
          WHERE q.next <= m.hi \
          ORDER BY 1, 2, 3",
    args: &[],
};

sql_function!(es_verify, pg_finfo_es_verify, verify);

static VERIFY_DISTRIBUTED: Stmt = Stmt { sql: include_str!("../sql/verify_distributed.sql"), args: &[] };

fn verify(args: Args) -> Datum {
    if crate::distributed::distributed() {
        return return_rows(args.0, &VERIFY_DISTRIBUTED, &[]);
    }
    return_rows(args.0, crate::integrity::for_schema(&VERIFY, &VERIFY_PRE_05), &[])
}
