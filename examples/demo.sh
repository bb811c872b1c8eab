#!/usr/bin/env bash
# Builds and installs pg_eventstore (release build) into the machine's PostgreSQL (Debian's 15; PG_MAJOR
# picks another, see pgrx-config/env.sh), creates a fresh database
# `pg_eventstore_demo` with the extension, and runs examples/demo.sql in it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash pgrx-config/setup.sh
. pgrx-config/env.sh
. tests/cluster.sh
cargo pgrx install --release --pg-config "$PG_CONFIG"
psql -q -d postgres -c "DROP DATABASE IF EXISTS pg_eventstore_demo" -c "CREATE DATABASE pg_eventstore_demo"
psql -q -d pg_eventstore_demo -c "CREATE EXTENSION pg_eventstore"
psql -d pg_eventstore_demo -f examples/demo.sql
