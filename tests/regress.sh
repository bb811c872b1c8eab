#!/usr/bin/env bash
# Runs the pg_regress cases in tests/pg_regress with `cargo pgrx regress` (pgrx starts its own
# cluster as the postgres user through the wrappers set up by pgrx-config/setup.sh). Extra arguments
# go to cargo pgrx regress, e.g. a test name, or --auto to accept new output.
set -euo pipefail
cd "$(dirname "$0")/.."
. pgrx-config/env.sh
cargo pgrx regress "pg$PG_MAJOR" --runas postgres --resetdb "$@"
