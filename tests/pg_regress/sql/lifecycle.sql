-- Stream lifecycle and data protection, for the role eventstore_admin: deleting streams softly or
-- for good, truncating them, retention per stream type, archiving and restoring, erasing and
-- redacting personal data. Direct UPDATE, DELETE and TRUNCATE stay refused for everyone; every
-- removal of data is written to eventstore.audit_log (never the values).
\set SHOW_CONTEXT never
SET TIME ZONE 'UTC';

-- ---- Soft delete: the stream reads as not found, its events stay in the store and the feed.
SELECT eventstore.append_events('life-1', 'Life', '[{"type": "Opened", "payload": {"n": 1}}, {"type": "Changed", "payload": {"n": 2}}]');
SELECT eventstore.take_snapshot('life-1', 2, '{"n": 2}');
SELECT eventstore.delete_stream('life-1', expected_version => 2);  -- how many events it hides
SELECT count(*) AS visible FROM eventstore.load_stream('life-1');
SELECT eventstore.stream_version('life-1');
SELECT count(*) AS snapshots FROM eventstore.load_snapshot('life-1');
SELECT count(*) AS in_feed FROM eventstore.read_all(0, 1000) WHERE stream_id = 'life-1';
-- Appending again reopens it where its sequences left off (KurrentDB's semantics): it has no
-- events to expected_version, so 0 (or NULL) is right and a version is a conflict.
SELECT eventstore.append_event('life-1', 'Life', 'Reopened', '{}', expected_version => 2);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_event('life-1', 'Life', 'Reopened', '{}', expected_version => 0);
SELECT sequence, event_type FROM eventstore.load_stream('life-1');
SELECT eventstore.stream_version('life-1');

-- ---- Hard delete: events and snapshots go, a tombstone keeps the id taken. A reason is required.
SELECT eventstore.append_event('life-2', 'Life', 'Opened', '{"email": "ann@example.com"}');
SELECT eventstore.record_command('Welcome', '{}', 'mail-2', caused_by_stream_id => 'life-2', caused_by_sequence => 1,
                                 command_id => '00000000-0000-4000-8000-00000000f001');
SELECT eventstore.append_event('mail-2', 'Mail', 'Sent', '{}', command_id => '00000000-0000-4000-8000-00000000f001');
SELECT eventstore.delete_stream('life-2', hard => true);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.delete_stream('life-2', hard => true, reason => 'customer closed the account');
SELECT stream_id, version, state FROM eventstore.streams WHERE stream_id = 'life-2';
SELECT eventstore.append_event('life-2', 'Life', 'Opened', '{}');
\echo :LAST_ERROR_SQLSTATE
-- The command it caused stays explainable: the chain ends at the removed event's tombstone.
SELECT depth, kind, stream_id, sequence, type FROM eventstore.causation_chain('mail-2', 1);
-- allow_reuse takes the tombstone away: the id starts afresh.
SELECT eventstore.delete_stream('life-2', hard => true, allow_reuse => true, reason => 'id reused for a new customer');
SELECT eventstore.append_event('life-2', 'Life', 'Opened', '{}');

-- ---- Truncation: events before a sequence go, sequences stay as they were.
SELECT eventstore.append_events('life-3', 'Life', '[{"type": "A", "payload": {}}, {"type": "B", "payload": {}}, {"type": "C", "payload": {}}, {"type": "D", "payload": {}}]');
SELECT eventstore.take_snapshot('life-3', 2, '{"folded": 2}');
SELECT eventstore.truncate_stream('life-3', 3, 'kept after the snapshot');
SELECT sequence, event_type FROM eventstore.load_stream('life-3');
SELECT sequence FROM eventstore.load_snapshot('life-3');
SELECT eventstore.truncate_stream('life-3', 9, 'too far');
\echo :LAST_ERROR_SQLSTATE

-- ---- Retention per stream type, enforced by apply_retention() (call it from a scheduler).
SELECT eventstore.set_retention('Ticker', max_count => 2);
SELECT eventstore.append_events('tick-' || i, 'Ticker', '[{"type": "T", "payload": {}}, {"type": "T", "payload": {}}, {"type": "T", "payload": {}}]')
FROM generate_series(1, 2) i;
SELECT * FROM eventstore.apply_retention();
SELECT stream_id, sequence FROM eventstore.read_all(0, 1000, ARRAY['Ticker']);
SELECT * FROM eventstore.apply_retention();  -- nothing more to do
SELECT eventstore.set_retention('Ticker', max_count => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.set_retention('Ticker', max_age => interval '-1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT stream_type, max_age, max_count, keep_after_snapshot FROM eventstore.stream_types WHERE stream_type = 'Ticker';

-- ---- Archive: a finished stream's events leave the hot tables; loadable and restorable.
SELECT eventstore.append_events('life-4', 'Life', '[{"type": "A", "payload": {"n": 1}}, {"type": "B", "payload": {"n": 2}}]');
SELECT eventstore.archive_stream('life-4', expected_version => 2);
SELECT count(*) AS hot FROM eventstore.load_stream('life-4');
SELECT sequence, event_type, payload FROM eventstore.load_archived_stream('life-4');
SELECT eventstore.append_event('life-4', 'Life', 'C', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.restore_stream('life-4');
SELECT sequence, event_type FROM eventstore.load_stream('life-4');
SELECT eventstore.restore_stream('life-4');
\echo :LAST_ERROR_SQLSTATE

-- ---- Erasure: the events stay (position, type, sequence), the personal data goes.
SELECT eventstore.append_event('person-1', 'Person', 'Registered',
    '{"name": "Ann", "email": "ann@example.com", "addresses": [{"city": "Ghent", "street": "Veldstraat 1"}]}',
    '{"ip": "192.0.2.7", "trace": "t-1"}');
SELECT eventstore.record_command('Register', '{"email": "ann@example.com"}', 'person-1', command_id => '00000000-0000-4000-8000-00000000f002');
-- Redaction sets chosen JSON paths to null (`*` is every key or element at its level).
SELECT eventstore.redact_events('person-1', NULL, ARRAY['payload.email', 'payload.addresses.*.street', 'metadata.ip'], 'request #17');
SELECT payload, metadata FROM eventstore.load_stream('person-1');
SELECT eventstore.redact_command('00000000-0000-4000-8000-00000000f002', ARRAY['payload.email'], 'request #17');
SELECT payload FROM eventstore.commands WHERE command_id = '00000000-0000-4000-8000-00000000f002';
-- erase_stream empties every event's payload and metadata, and the stream's commands' payloads.
SELECT eventstore.erase_stream('person-1', 'request #18: erase everything');
SELECT sequence, event_type, payload, metadata FROM eventstore.load_stream('person-1');
SELECT eventstore.redact_events('person-1', NULL, ARRAY['email'], 'bad path');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.redact_events('person-1', '{}', ARRAY['payload.email'], 'no events');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.erase_stream('nobody', 'unknown stream');
\echo :LAST_ERROR_SQLSTATE

-- ---- Commands that caused no event (Sequent's permanently_delete_commands_without_events).
SELECT eventstore.record_command('Noop', '{}', 'life-5') IS NOT NULL AS recorded;
SELECT eventstore.delete_commands_without_events('life-5', reason => 'nothing came of them');

-- ---- The audit log: what, which stream, which events and paths, why, by whom; never the values.
SELECT action, stream_id, first_sequence, last_sequence, paths, rows, reason, done_by = session_user AS by_me
FROM eventstore.audit_log ORDER BY entry_id;

-- ---- Nothing changes rows directly, not even the owner.
DELETE FROM eventstore.events WHERE stream_id = 'life-3';
\echo :LAST_ERROR_SQLSTATE
UPDATE eventstore.events SET payload = '{}' WHERE stream_id = 'life-3';
\echo :LAST_ERROR_SQLSTATE
UPDATE eventstore.streams SET truncate_before = 0 WHERE stream_id = 'life-3';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM eventstore.audit_log;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO eventstore.archived_events SELECT *, now() FROM eventstore.events LIMIT 1;
\echo :LAST_ERROR_SQLSTATE

SELECT * FROM eventstore.verify();
