#!/usr/bin/env bash
# The #[pg_test]s in src/, inside a throw-away cluster run by the postgres user.
set -euo pipefail
cd "$(dirname "$0")/.."
. pgrx-config/env.sh
. tests/keep-installed.sh
pgdata="$PGRX_HOME/pgtest-data-$PG_MAJOR"
rm -rf "$pgdata"
cargo pgrx test "pg$PG_MAJOR" --runas postgres --pgdata "$pgdata" "$@"
