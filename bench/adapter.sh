#!/usr/bin/env bash
# What the cqrs-es adapter (clients/rust/pg-eventstore-cqrs) adds to a command's time over calling
# the store's SQL functions directly: clients/rust/pg-eventstore-cqrs/examples/overhead.rs, release
# builds of both the extension and the client, one client session, alternating rounds.
# Results: bench/results/<date>-adapter.md (--smoke: a few commands, to show it runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash pgrx-config/setup.sh >/dev/null
. pgrx-config/env.sh
. tests/cluster.sh
. tests/keep-installed.sh
n=2000 rounds=6 out="bench/results/$(date -u +%Y-%m-%d-%H%M)-adapter.md" profile=--release
if [ "${1:-}" = "--smoke" ]; then n=20 rounds=2 out=bench/results/adapter-smoke.md profile=; fi
if [ -z "$profile" ]; then bash tests/install.sh; else cargo pgrx install --release --pg-config "$PG_CONFIG" >/dev/null; fi
db=pg_eventstore_adapter_bench
psql -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
psql -q -d "$db" -c "CREATE EXTENSION pg_eventstore"
result=$(cargo run -q $profile --manifest-path clients/rust/Cargo.toml -p pg-eventstore-cqrs --example overhead -- \
    "postgres:///$db?host=/var/run/postgresql&port=$PGPORT" "$n" "$rounds")
echo "$result"
{
    echo "# cqrs-es adapter overhead"
    echo
    echo "Run \`bench/adapter.sh${1:+ $1}\` on $(date -u '+%Y-%m-%d %H:%M') UTC; $(nproc) cores, $("$PG_CONFIG" --version)."
    echo "One session, commands in sequence, ten commands per aggregate; each variant loads the aggregate's"
    echo "events, folds them, decides and appends one event with the expected version."
    echo
    echo '```'
    echo "$result"
    echo '```'
    echo
    echo "Target: the adapter adds at most 10% (ratio ≤ 1.10)."
} >"$out"
echo "wrote $out"
