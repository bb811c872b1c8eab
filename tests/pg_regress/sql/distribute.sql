-- eventstore.distribute() makes the store a distributed one on a Citus coordinator (README
-- "Running on Citus"; tests/citus.sh runs it on a cluster of three nodes). On a PostgreSQL
-- without Citus it refuses, and changes nothing.
\set SHOW_CONTEXT never
\set VERBOSITY sqlstate
SELECT eventstore.distribute();
SELECT eventstore.distribute(0);
SELECT eventstore.distribute(NULL);
SELECT eventstore.prepare_nodes();
\set VERBOSITY default
SELECT eventstore.distribute();
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
 WHERE conrelid = 'eventstore.events'::regclass AND contype IN ('u', 'f') ORDER BY conname;
-- It is for the store's owner (a superuser, as Citus's functions need), not for its roles.
SELECT has_function_privilege('eventstore_admin', 'eventstore.distribute(integer)', 'EXECUTE'),
       has_function_privilege('eventstore_admin', 'eventstore.prepare_nodes()', 'EXECUTE');
-- read_all_nodes is the feed of a distributed store; on one node the feed is read_all.
\set VERBOSITY sqlstate
SELECT * FROM eventstore.read_all_nodes();
SELECT * FROM eventstore.read_all_nodes('[]');
SELECT * FROM eventstore.read_all_nodes('{"1": -5}');
SELECT * FROM eventstore.read_all_nodes(up_to => '{"1": "x"}');
\set VERBOSITY default
SELECT * FROM eventstore.read_all_nodes();
