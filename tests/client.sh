#!/usr/bin/env bash
# Client-level tests: installs the extension into PG_MAJOR's cluster, creates a fresh
# database with it, and runs tests/client (a Rust crate using the `postgres` client) against it.
set -euo pipefail
cd "$(dirname "$0")/.."
. pgrx-config/env.sh
. tests/cluster.sh
. tests/keep-installed.sh

bash tests/install.sh
export PG_BINDIR="$PG_BIN"
db=pg_eventstore_client_tests
psql -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
psql -q -d "$db" -c "CREATE EXTENSION pg_eventstore"
export PG_EVENTSTORE_TEST_URL="host=/var/run/postgresql port=$PGPORT dbname=$db"
# One test at a time: the tests make their own concurrency, and the feed tests watch the whole
# store's horizon and notifications, which other tests' open transactions would disturb.
cargo test --no-fail-fast --manifest-path tests/client/Cargo.toml "$@" -- --test-threads=1
