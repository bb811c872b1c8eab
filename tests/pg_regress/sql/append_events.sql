-- eventstore.append_events(stream_id, stream_type, events jsonb, expected_version DEFAULT NULL,
--     command_id DEFAULT NULL) appends a JSON array of events atomically and returns the last sequence.
-- Each element: {"type": text, "payload": object, "metadata"?: object, "id"?: uuid, "version"?: integer}.
\set SHOW_CONTEXT never

SELECT eventstore.append_events('cart-1', 'Cart', '[
  {"type": "Created",   "payload": {"customer": "c-7"}},
  {"type": "ItemAdded", "payload": {"sku": "A", "qty": 2}, "metadata": {"by": "web"}},
  {"type": "ItemAdded", "payload": {"sku": "B", "qty": 1}, "version": 2}
]');
SELECT sequence, event_type, event_version, payload, metadata FROM eventstore.load_stream('cart-1');

-- expected_version applies to the version before the batch.
SELECT eventstore.append_events('cart-1', 'Cart', '[{"type": "CheckedOut", "payload": {}}]', expected_version => 3);
SELECT eventstore.append_events('cart-1', 'Cart', '[{"type": "CheckedOut", "payload": {}}]', expected_version => 3);
\echo :LAST_ERROR_SQLSTATE

-- A retried batch (same ids) is idempotent: it returns the sequence of its last event.
SELECT eventstore.append_events('cart-2', 'Cart', '[
  {"type": "Created",   "payload": {}, "id": "00000000-0000-4000-8000-0000000000a1"},
  {"type": "ItemAdded", "payload": {}, "id": "00000000-0000-4000-8000-0000000000a2"}
]');
SELECT eventstore.append_events('cart-2', 'Cart', '[
  {"type": "Created",   "payload": {}, "id": "00000000-0000-4000-8000-0000000000a1"},
  {"type": "ItemAdded", "payload": {}, "id": "00000000-0000-4000-8000-0000000000a2"}
]');
SELECT eventstore.stream_version('cart-2');
-- Only part of a batch already stored is not a retry.
SELECT eventstore.append_events('cart-2', 'Cart', '[
  {"type": "ItemAdded", "payload": {}, "id": "00000000-0000-4000-8000-0000000000a2"},
  {"type": "ItemAdded", "payload": {}, "id": "00000000-0000-4000-8000-0000000000a3"}
]');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_events('cart-3', 'Cart', '[
  {"type": "A", "payload": {}, "id": "00000000-0000-4000-8000-0000000000b1"},
  {"type": "B", "payload": {}, "id": "00000000-0000-4000-8000-0000000000b1"}
]');
\echo :LAST_ERROR_SQLSTATE

-- All or nothing: one bad element rejects the whole batch before anything is written.
SELECT eventstore.append_events('cart-4', 'Cart', '[{"type": "A", "payload": {}}, {"type": "B", "payload": 7}]');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS events_in_cart_4 FROM eventstore.events WHERE stream_id = 'cart-4';

-- Malformed batches.
SELECT eventstore.append_events('cart-4', 'Cart', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_events('cart-4', 'Cart', '{"type": "A", "payload": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_events('cart-4', 'Cart', '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_events('cart-4', 'Cart', '[1]');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_events('cart-4', 'Cart', '[{"payload": {}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_events('cart-4', 'Cart', '[{"type": "", "payload": {}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_events('cart-4', 'Cart', '[{"type": 5, "payload": {}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_events('cart-4', 'Cart', '[{"type": "A"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_events('cart-4', 'Cart', '[{"type": "A", "payload": {}, "metadata": []}]');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_events('cart-4', 'Cart', '[{"type": "A", "payload": {}, "id": "not-a-uuid"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_events('cart-4', 'Cart', '[{"type": "A", "payload": {}, "version": 1.5}]');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_events('cart-4', 'Cart', '[{"type": "A", "payload": {}, "version": 0}]');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.append_events('cart-4', 'Cart', '[{"type": "A", "payload": {}, "paylaod": {}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS streams_named_cart_4 FROM eventstore.streams WHERE stream_id = 'cart-4';
