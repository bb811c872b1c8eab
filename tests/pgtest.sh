#!/usr/bin/env bash
# The #[pg_test]s in src/, inside a throw-away cluster run by the postgres user.
set -euo pipefail
cd "$(dirname "$0")/.."
. pgrx-config/env.sh
pgdata="$PGRX_HOME/pgtest-data"
rm -rf "$pgdata"
cargo pgrx test "pg$PG_MAJOR" --runas postgres --pgdata "$pgdata" "$@"
