-- Durable named subscriptions: create_subscription(name, stream_types DEFAULT NULL, event_types DEFAULT NULL,
-- start_from DEFAULT 0); poll(name, max_count DEFAULT 100) returns the next events after the checkpoint to
-- the session holding the subscription's lease (taking it if free); ack(name, position) moves the
-- checkpoint; the view eventstore.subscriptions shows checkpoints and lag.
\set SHOW_CONTEXT never

SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS base FROM eventstore.global_position_seq \gset
SELECT eventstore.append_events('sub-order-1', 'SubOrder', '[{"type": "Placed", "payload": {}}, {"type": "Paid", "payload": {}}]');
SELECT eventstore.append_event('sub-user-1', 'SubUser', 'Registered', '{}');
SELECT eventstore.append_event('sub-order-2', 'SubOrder', 'Placed', '{}');

SELECT eventstore.create_subscription('order-projection', ARRAY['SubOrder'], start_from => :base);
SELECT eventstore.create_subscription('placed-mailer', NULL, ARRAY['Placed'], :base);

SELECT global_position - :base AS pos, stream_id, event_type FROM eventstore.poll('order-projection', 2);
-- Polling again before acking delivers the same events (at-least-once).
SELECT global_position - :base AS pos, stream_id, event_type FROM eventstore.poll('order-projection', 2);
SELECT eventstore.ack('order-projection', :base + 2);
SELECT global_position - :base AS pos, stream_id, event_type FROM eventstore.poll('order-projection');
SELECT eventstore.ack('order-projection', :base + 4);
SELECT count(*) FROM eventstore.poll('order-projection');

SELECT global_position - :base AS pos, stream_id, event_type FROM eventstore.poll('placed-mailer');

SELECT name, stream_types, event_types, checkpoint - :base AS checkpoint, delivered_up_to - :base AS delivered,
       lease_pid = pg_backend_pid() AS leased_here, lag_events
FROM eventstore.subscriptions WHERE name IN ('order-projection', 'placed-mailer') ORDER BY name;

-- ack never moves backwards and never past what was delivered. (The messages name the absolute
-- positions, e.g. 'ack would move subscription "order-projection" backwards: checkpoint is 60, not 57'
-- and 'position 156 was not delivered by subscription "placed-mailer" (delivered up to 60)', which
-- depend on what ran before this file, so only the SQLSTATE is shown here.)
\set VERBOSITY sqlstate
SELECT eventstore.ack('order-projection', :base + 1);
SELECT eventstore.ack('placed-mailer', :base + 100);
\set VERBOSITY default
-- Errors for names.
SELECT eventstore.create_subscription('order-projection');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.poll('no-such-subscription');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.ack('no-such-subscription', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_subscription('');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_subscription('x', start_from => -1);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_subscription('x', ARRAY[]::text[]);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.ack('order-projection', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.delete_subscription('placed-mailer');
SELECT eventstore.delete_subscription('placed-mailer');
\echo :LAST_ERROR_SQLSTATE
