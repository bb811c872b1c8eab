-- A short tour of pg_eventstore: append, load, snapshot, trace causation.
\set ON_ERROR_STOP on
\echo '--- a command opens an account; its events name the command'
SELECT eventstore.record_command('OpenAccount', '{"owner": "ann"}', 'account-42', 'user-1',
                                 command_id => '6f1d3c3e-0000-4000-8000-000000000001') AS command_id;
SELECT eventstore.append_event('account-42', 'Account', 'AccountOpened', '{"owner": "ann"}',
                               expected_version => 0,
                               command_id => '6f1d3c3e-0000-4000-8000-000000000001') AS sequence;
\echo '--- another command: two events, appended atomically with optimistic concurrency'
SELECT eventstore.record_command('DepositThenWithdraw', '{"in": 100, "out": 30}', 'account-42', 'user-1',
                                 command_id => '6f1d3c3e-0000-4000-8000-000000000002') AS command_id;
SELECT eventstore.append_events('account-42', 'Account', '[
  {"type": "MoneyDeposited", "payload": {"amount": 100}},
  {"type": "MoneyWithdrawn", "payload": {"amount": 30}, "metadata": {"atm": "A-7"}}
]', expected_version => 1, command_id => '6f1d3c3e-0000-4000-8000-000000000002') AS last_sequence;
\echo '--- a stale writer is told so (SQLSTATE 40001) and nothing is written'
\set ON_ERROR_STOP off
SELECT eventstore.append_event('account-42', 'Account', 'MoneyDeposited', '{"amount": 5}', expected_version => 1);
\set ON_ERROR_STOP on
\echo '--- load the stream'
SELECT sequence, event_type, payload, metadata FROM eventstore.load_stream('account-42');
\echo '--- snapshot at sequence 3, then load the aggregate as snapshot + newer events'
SELECT eventstore.take_snapshot('account-42', 3, '{"owner": "ann", "balance": 70}');
SELECT eventstore.append_event('account-42', 'Account', 'MoneyDeposited', '{"amount": 5}');
SELECT s.sequence AS snapshot_at, s.payload AS state, e.sequence, e.event_type, e.payload
FROM eventstore.load_snapshot('account-42') s
LEFT JOIN LATERAL eventstore.load_stream('account-42', s.sequence + 1) e ON true;
\echo '--- a workflow reacts to the deposit with a command of its own'
SELECT eventstore.record_command('NotifyOwner', '{"text": "deposit received"}', 'mailbox-ann',
                                 caused_by_stream_id => 'account-42', caused_by_sequence => 2,
                                 command_id => '6f1d3c3e-0000-4000-8000-000000000003') AS command_id;
SELECT eventstore.append_event('mailbox-ann', 'Mailbox', 'NotificationSent', '{"text": "deposit received"}',
                               command_id => '6f1d3c3e-0000-4000-8000-000000000003') AS sequence;
\echo '--- trace the notification back to the command that started it all'
SELECT * FROM eventstore.causation_chain('mailbox-ann', 1);
SELECT command_type, caused_by_stream_id, caused_by_sequence, correlation_id FROM eventstore.commands ORDER BY created_at;
