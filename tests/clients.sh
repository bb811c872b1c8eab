#!/usr/bin/env bash
# The clients and examples against the real server: the Rust crates under clients/rust (the typed
# client and the cqrs-es repository, their tests), and the example programs under examples/ in
# Rust, Python (psycopg 3), Node (node-postgres) and Ruby (ruby-pg). Installs what they need first.
set -euo pipefail
cd "$(dirname "$0")/.."
. pgrx-config/env.sh
. tests/cluster.sh
. tests/keep-installed.sh

# what the examples need
need=()
for p in ruby ruby-pg nodejs; do dpkg -s "$p" >/dev/null 2>&1 || command -v "${p%-pg}" >/dev/null 2>&1 || need+=("$p"); done
if ! ruby -e 'require "pg"' 2>/dev/null; then need+=(ruby ruby-pg); fi
if [ ${#need[@]} -gt 0 ]; then
    echo "clients: installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -c 'import psycopg' 2>/dev/null || python3 -m pip install -q 'psycopg[binary]==3.2.*'
(cd examples/node && npm ci --no-audit --no-fund --silent)

bash tests/install.sh
db=pg_eventstore_clients
psql -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
psql -q -d "$db" -c "CREATE EXTENSION pg_eventstore"
export PG_EVENTSTORE_CLIENTS_URL="postgres:///$db?host=/var/run/postgresql&port=$PGPORT"
libpq="dbname=$db host=/var/run/postgresql port=$PGPORT"

status=0
# One test at a time: tests that read the global feed want it not held back by another test.
cargo test --no-fail-fast --manifest-path clients/rust/Cargo.toml --workspace -- --test-threads=1 || status=1

example() {
    local name=$1; shift
    echo "--- example $name"
    if "$@"; then echo "example $name ... ok"; else echo "example $name ... FAILED"; status=1; fi
}
example rust cargo run -q --manifest-path clients/rust/Cargo.toml -p pg-eventstore-bank-example -- "$PG_EVENTSTORE_CLIENTS_URL"
example python python3 examples/python/bank.py "$libpq"
example node node examples/node/bank.js "postgresql://$(id -un)@/$db?host=/var/run/postgresql&port=$PGPORT"
example ruby ruby examples/ruby/bank.rb "$libpq"
exit $status
