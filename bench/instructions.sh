#!/usr/bin/env bash
# Instructions per append (see bench/instructions.py): callgrind counts in a single-user backend, a
# noise-free companion to bench/run.sh's throughput. Installs the extension (release build; --smoke:
# debug) and valgrind first. Results: bench/results/<date>-<time>-instructions.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash pgrx-config/setup.sh >/dev/null
. pgrx-config/env.sh
. tests/keep-installed.sh
command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
if [ "${1:-}" = "--smoke" ]; then
    cargo pgrx install --pg-config "$PG_CONFIG" >/dev/null
else
    cargo pgrx install --release --pg-config "$PG_CONFIG" >/dev/null
fi
cd bench && PG_BIN="$PG_BIN" python3 instructions.py "$@"
