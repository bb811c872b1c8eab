#!/usr/bin/env bash
# The Citus tier: a coordinator and two workers on this machine (tests/citus/cluster.sh), the
# extension installed on Debian's PostgreSQL 15, and tests/client/tests/citus.rs against them.
# Needs Citus installed; `bash tests/citus/cluster.sh install` builds it from the vendored source.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_MAJOR=15 . pgrx-config/env.sh
. tests/keep-installed.sh

bash tests/citus/cluster.sh available
bash tests/install.sh
bash tests/citus/cluster.sh start
at_exit 'bash tests/citus/cluster.sh stop'
psql -XqAt -h 127.0.0.1 -p 5511 -U postgres -d postgres -c "CREATE EXTENSION pg_eventstore"
export PG_EVENTSTORE_CITUS="host=127.0.0.1 user=postgres dbname=postgres" PG_EVENTSTORE_CITUS_PORTS="5511 5512 5513"
export PG_EVENTSTORE_CITUS_DATA=/var/lib/pg_eventstore/citus PG_BINDIR="$PG_BIN"
cargo test --no-fail-fast --manifest-path tests/client/Cargo.toml --test citus "$@" -- --ignored --test-threads=1
