-- eventstore.append_event(stream_id, stream_type, event_type, payload, metadata DEFAULT '{}',
--     expected_version DEFAULT NULL, event_id DEFAULT NULL, command_id DEFAULT NULL, event_version DEFAULT 1)
-- appends one event and returns its sequence, which is the stream's new version.
\set SHOW_CONTEXT never

-- The first event creates the stream.
SELECT eventstore.append_event('account-1', 'Account', 'Opened', '{"owner": "ann"}');
SELECT stream_id, stream_type, version FROM eventstore.streams WHERE stream_id = 'account-1';

-- expected_version NULL appends whatever the version is.
SELECT eventstore.append_event('account-1', 'Account', 'Deposited', '{"amount": 10}', '{"ip": "10.0.0.1"}');

-- expected_version N: the stream must be at exactly N.
SELECT eventstore.append_event('account-1', 'Account', 'Deposited', '{"amount": 5}', expected_version => 2);
-- A stale expected version is a concurrency conflict (40001, retryable) naming both versions.
SELECT eventstore.append_event('account-1', 'Account', 'Deposited', '{"amount": 5}', expected_version => 2);
\echo :LAST_ERROR_SQLSTATE

-- expected_version 0: the stream must have no events yet.
SELECT eventstore.append_event('account-2', 'Account', 'Opened', '{}', expected_version => 0);
SELECT eventstore.append_event('account-2', 'Account', 'Opened', '{}', expected_version => 0);
\echo :LAST_ERROR_SQLSTATE

-- expected_version -1: the stream must already exist (have events).
SELECT eventstore.append_event('account-2', 'Account', 'Closed', '{}', expected_version => -1);
SELECT eventstore.append_event('account-3', 'Account', 'Closed', '{}', expected_version => -1);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS streams_named_account_3 FROM eventstore.streams WHERE stream_id = 'account-3';

-- Idempotency: a retry with the same event_id returns the original sequence and appends nothing.
SELECT eventstore.append_event('account-1', 'Account', 'Withdrawn', '{"amount": 1}',
                               event_id => '00000000-0000-4000-8000-000000000001');
SELECT eventstore.append_event('account-1', 'Account', 'Withdrawn', '{"amount": 1}',
                               event_id => '00000000-0000-4000-8000-000000000001');
SELECT eventstore.stream_version('account-1');
-- ... even when the retry carries the expected_version of the first attempt.
SELECT eventstore.append_event('account-1', 'Account', 'Withdrawn', '{"amount": 1}', expected_version => 3,
                               event_id => '00000000-0000-4000-8000-000000000001');
-- The same event_id in another stream is a unique violation.
SELECT eventstore.append_event('account-2', 'Account', 'Withdrawn', '{"amount": 1}',
                               event_id => '00000000-0000-4000-8000-000000000001');
\echo :LAST_ERROR_SQLSTATE

-- event_version records the schema version of the payload.
SELECT eventstore.append_event('account-2', 'Account', 'Renamed', '{"name": "b"}', event_version => 3);
SELECT sequence, event_type, event_version FROM eventstore.load_stream('account-2');

-- A stream keeps its type.
SELECT eventstore.append_event('account-1', 'Customer', 'Opened', '{}');
\echo :LAST_ERROR_SQLSTATE

-- Bad input: a clear error, a standard SQLSTATE, and nothing written.
SELECT eventstore.append_event(NULL, 'Account', 'Opened', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_event('', 'Account', 'Opened', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_event('account-9', NULL, 'Opened', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_event('account-9', '', 'Opened', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_event('account-9', 'Account', NULL, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_event('account-9', 'Account', '', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_event('account-9', 'Account', 'Opened', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_event('account-9', 'Account', 'Opened', '[1, 2]');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_event('account-9', 'Account', 'Opened', '"text"');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_event('account-9', 'Account', 'Opened', '{}', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_event('account-9', 'Account', 'Opened', '{}', '42');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_event('account-9', 'Account', 'Opened', '{}', expected_version => -2);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_event('account-9', 'Account', 'Opened', '{}', event_version => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_event('account-9', 'Account', 'Opened', '{}', event_version => NULL);
\echo :LAST_ERROR_SQLSTATE
-- An unknown command_id is a foreign key violation.
SELECT eventstore.append_event('account-9', 'Account', 'Opened', '{}',
                               command_id => '00000000-0000-4000-8000-0000000000ff');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS streams_named_account_9 FROM eventstore.streams WHERE stream_id = 'account-9';

-- A failed append inside a transaction leaves the stream as it was.
BEGIN;
SAVEPOINT s;
SELECT eventstore.append_event('account-1', 'Account', 'Deposited', '{"amount": 1}', expected_version => 1);
ROLLBACK TO SAVEPOINT s;
SELECT eventstore.stream_version('account-1');
COMMIT;
