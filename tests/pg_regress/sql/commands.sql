-- eventstore.record_command(command_type, payload, stream_id, user_id, caused_by_stream_id,
--     caused_by_sequence, command_id) records a command and returns its id; events name the command
-- that caused them (command_id), and a command may name the event that caused it (caused_by_*).
-- eventstore.causation_chain(stream_id, sequence) walks from an event back to the root command.
\set SHOW_CONTEXT never

SELECT eventstore.record_command('OpenAccount', '{"owner": "ann"}', 'acc-1', 'user-7',
                                 command_id => '00000000-0000-4000-8000-00000000c001');
SELECT eventstore.append_event('acc-1', 'Account', 'Opened', '{"owner": "ann"}',
                               command_id => '00000000-0000-4000-8000-00000000c001');

-- A process manager reacts to acc-1#1 with a command of its own, which causes an event.
SELECT eventstore.record_command('SendWelcomeMail', '{"to": "ann"}', 'mail-1',
                                 caused_by_stream_id => 'acc-1', caused_by_sequence => 1,
                                 command_id => '00000000-0000-4000-8000-00000000c002');
SELECT eventstore.append_event('mail-1', 'Mailing', 'WelcomeMailSent', '{}',
                               command_id => '00000000-0000-4000-8000-00000000c002');

SELECT * FROM eventstore.causation_chain('mail-1', 1);
SELECT * FROM eventstore.causation_chain('acc-1', 1);
-- An event with no command is a chain of one; an unknown event has no chain.
SELECT eventstore.append_event('acc-1', 'Account', 'Audited', '{}');
SELECT * FROM eventstore.causation_chain('acc-1', 2);
SELECT count(*) FROM eventstore.causation_chain('acc-1', 99);

-- correlation_id is derived: the root command's id, inherited through the causing event.
SELECT command_id, command_type, correlation_id FROM eventstore.commands ORDER BY created_at, command_type;

-- A retry with the same id and content returns the id; other content under that id is rejected.
SELECT eventstore.record_command('OpenAccount', '{"owner": "ann"}', 'acc-1', 'user-7',
                                 command_id => '00000000-0000-4000-8000-00000000c001');
SELECT eventstore.record_command('OpenAccount', '{"owner": "bob"}', 'acc-1', 'user-7',
                                 command_id => '00000000-0000-4000-8000-00000000c001');
\echo :LAST_ERROR_SQLSTATE
-- Without command_id a new id is generated.
SELECT eventstore.record_command('Ping', '{}') IS NOT NULL AS generated;

SELECT eventstore.record_command(NULL, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.record_command('', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.record_command('Ping', '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.record_command('Ping', '{}', caused_by_stream_id => 'acc-1');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.record_command('Ping', '{}', caused_by_stream_id => 'acc-1', caused_by_sequence => 42);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.causation_chain(NULL, 1);
\echo :LAST_ERROR_SQLSTATE

-- A command and the event it caused, in one statement (Sequent's command loop). The event's
-- foreign key to its command is checked as the table's constraint would check it.
SELECT eventstore.append_event('acc-9', 'Account', 'Opened', '{}',
                               command_id => eventstore.record_command('OpenAccount', '{"owner": "cy"}', 'acc-9'));
SELECT count(*) AS linked FROM eventstore.events e JOIN eventstore.commands c USING (command_id)
WHERE e.stream_id = 'acc-9' AND c.command_type = 'OpenAccount';
SELECT eventstore.append_event('acc-9', 'Account', 'Renamed', '{}', command_id => '00000000-0000-4000-8000-0000000000ff');
\echo :LAST_ERROR_SQLSTATE
-- A command recorded in a savepoint that was rolled back is gone with it.
BEGIN;
SAVEPOINT s;
SELECT eventstore.record_command('Rename', '{}', 'acc-9', command_id => '00000000-0000-4000-8000-0000000000c9');
ROLLBACK TO s;
SELECT eventstore.append_event('acc-9', 'Account', 'Renamed', '{}', command_id => '00000000-0000-4000-8000-0000000000c9');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- Written directly, the commands table keeps the same rules (23514 for a broken row).
INSERT INTO eventstore.commands (command_type, payload) VALUES ('', '{}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO eventstore.commands (command_type, payload) VALUES ('Ping', '[]');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO eventstore.commands (command_type, payload, stream_id) VALUES ('Ping', '{}', '');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO eventstore.commands (command_type, payload, caused_by_sequence) VALUES ('Ping', '{}', 1);
\echo :LAST_ERROR_SQLSTATE
