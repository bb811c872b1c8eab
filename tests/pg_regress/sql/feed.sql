-- eventstore.read_all(after_position DEFAULT 0, max_count DEFAULT 1000, stream_types DEFAULT NULL,
--     event_types DEFAULT NULL, consumer_group_member DEFAULT NULL, consumer_group_size DEFAULT NULL)
-- returns events with global_position > after_position in global_position order. A reader that calls
-- it again with the last position it saw receives every committed event exactly once: read_all stops
-- before any position that a still-running transaction could yet fill (see README, "The global feed").
\set SHOW_CONTEXT never

-- Positions are relative to this file's first event, so the output does not depend on other files.
SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS base FROM eventstore.global_position_seq \gset
SELECT eventstore.append_events('feed-acct-1', 'FeedAccount', '[{"type": "Opened", "payload": {}}, {"type": "Deposited", "payload": {"amount": 5}}]');
SELECT eventstore.append_event('feed-cart-1', 'FeedCart', 'Created', '{}');
SELECT eventstore.append_event('feed-acct-2', 'FeedAccount', 'Opened', '{}');
SELECT eventstore.append_event('feed-cart-1', 'FeedCart', 'ItemAdded', '{"sku": "A"}');

SELECT global_position - :base AS pos, stream_id, stream_type, sequence, event_type, payload
FROM eventstore.read_all(:base);
-- Paging: pass the last position seen.
SELECT global_position - :base AS pos, stream_id FROM eventstore.read_all(:base, 2);
SELECT global_position - :base AS pos, stream_id FROM eventstore.read_all(:base + 2, 2);
SELECT count(*) FROM eventstore.read_all(:base + 5);

-- Categories (stream types) and event types.
SELECT global_position - :base AS pos, stream_id, event_type FROM eventstore.read_all(:base, 100, ARRAY['FeedAccount']);
SELECT global_position - :base AS pos, stream_id, event_type FROM eventstore.read_all(:base, 100, NULL, ARRAY['Opened', 'Created']);
SELECT global_position - :base AS pos, stream_id, event_type FROM eventstore.read_all(:base, 100, ARRAY['FeedAccount', 'FeedCart'], ARRAY['Opened']);

-- Consumer groups: member k of n gets the streams that hash to k; together they get everything once.
SELECT m AS member, string_agg(DISTINCT r.stream_id, ', ' ORDER BY r.stream_id) AS streams, count(*) AS events
FROM generate_series(0, 1) AS m,
     LATERAL eventstore.read_all(:base, 100, ARRAY['FeedAccount', 'FeedCart'], NULL, m, 2) AS r
GROUP BY m ORDER BY m;

-- Backward reads for UIs and projections: a stream's or a category's newest events.
SELECT sequence, event_type FROM eventstore.read_stream_backward('feed-acct-1');
SELECT sequence, event_type FROM eventstore.read_stream_backward('feed-acct-1', 1);
SELECT sequence, event_type, payload FROM eventstore.last_event('feed-cart-1');
SELECT count(*) FROM eventstore.last_event('feed-unknown');
SELECT global_position - :base AS pos, stream_id, event_type FROM eventstore.read_category_backward('FeedAccount');
SELECT global_position - :base AS pos, stream_id, event_type FROM eventstore.read_category_backward('FeedAccount', 1, :base + 4);

-- The safe horizon: with no transaction open, a reader at the head has nothing left to wait for.
SELECT head_position - :base AS head, safe_position - :base AS safe, lagging_events, blocking_pid
FROM eventstore.feed_status();

-- Bad input.
SELECT * FROM eventstore.read_all(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.read_all(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.read_all(0, -1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.read_all(0, 10, ARRAY[]::text[]);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.read_all(0, 10, ARRAY['FeedCart', NULL]);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.read_all(0, 10, NULL, NULL, 0, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.read_all(0, 10, NULL, NULL, 2, 2);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.read_all(0, 10, NULL, NULL, 0, 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.read_stream_backward('feed-acct-1', NULL, -1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.read_category_backward(NULL);
\echo :LAST_ERROR_SQLSTATE

-- Push: each committed transaction that appended is announced once on "eventstore" and on
-- "eventstore.<stream_type>", with its highest position as payload, as soon as read_all can return
-- its events. The pattern: LISTEN eventstore; then read_all from your checkpoint; on each
-- notification, read_all again. The notifier background worker of the database sends them
-- (pg_stat_activity shows it as backend_type 'pg_eventstore notifier'); with
-- pg_eventstore.notifier = off, a session's transactions send their own NOTIFY at commit instead.
-- pg_eventstore.notify = off: the session sends none and does not wake the notifier (a running
-- notifier still announces its events when it announces others').
SHOW pg_eventstore.notify;
SHOW pg_eventstore.notifier;
SHOW pg_eventstore.notifier_idle_timeout;
