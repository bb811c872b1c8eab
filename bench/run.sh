#!/usr/bin/env bash
# The benchmark suite (see bench/run.py): installs the extension into PG_MAJOR's PostgreSQL (a
# release build; --smoke uses the debug build, it only checks that every workload runs), runs every
# workload against its baselines, and puts back what was installed before. Results: bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash pgrx-config/setup.sh >/dev/null
. pgrx-config/env.sh
. tests/cluster.sh
. tests/keep-installed.sh
if [ "${1:-}" = "--smoke" ]; then
    cargo pgrx install --pg-config "$PG_CONFIG" >/dev/null
else
    cargo pgrx install --release --pg-config "$PG_CONFIG" >/dev/null
fi
PG_BIN="$PG_BIN" python3 bench/run.py "$@"
