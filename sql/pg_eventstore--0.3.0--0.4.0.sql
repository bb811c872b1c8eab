-- pg_eventstore 0.3.0 -> 0.4.0: the commands table's row rules move from CHECK constraints into
-- its trigger (as those of streams and events did in 0.2.0), and the notifier gets the table in
-- which it hands its watermark to the next notifier. Quick: no table is rewritten or scanned.
\echo Use "ALTER EXTENSION pg_eventstore UPDATE TO '0.4.0'" to load this file. \quit

ALTER TABLE eventstore.commands
    DROP CONSTRAINT commands_command_type_check,
    DROP CONSTRAINT commands_payload_check,
    DROP CONSTRAINT commands_stream_id_check,
    DROP CONSTRAINT commands_caused_by_complete;

CREATE TABLE eventstore.notifier_state (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    announced_up_to bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON eventstore.notifier_state FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('eventstore.notifier_state', '');
