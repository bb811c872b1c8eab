-- Runs once, right after the regression database is created.
CREATE EXTENSION pg_eventstore;
