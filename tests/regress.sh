#!/usr/bin/env bash
# Runs the pg_regress cases in tests/pg_regress with `cargo pgrx regress` (pgrx starts its own
# cluster as the postgres user through the wrappers set up by pgrx-config/setup.sh). Extra arguments
# go to cargo pgrx regress, e.g. a test name, or --auto to accept new output.
set -euo pipefail
cd "$(dirname "$0")/.."
. pgrx-config/env.sh
. tests/keep-installed.sh

# cargo pgrx regress checks whether its database exists by connecting as the OS user even with
# --runas, so on a freshly initialised cluster (superuser: postgres) a root shell fails there. Give
# this user a role first; stop the cluster again so that regress starts it with its own settings.
if [ "$(id -un)" != postgres ]; then
    cargo pgrx start "pg$PG_MAJOR" >/dev/null
    own_superuser_role "$PG_BIN/psql" -h localhost -p "$PGRX_REGRESS_PORT" -U postgres -d template1
    cargo pgrx stop "pg$PG_MAJOR" >/dev/null
fi
cargo pgrx regress "pg$PG_MAJOR" --runas postgres --resetdb "$@"
