#!/usr/bin/env bash
# Installs the extension (debug build) for the tests that run against a real server, with the
# install scripts of earlier releases (for the upgrade test; cargo pgrx install copies only the
# current one and the upgrade scripts).
set -euo pipefail
cd "$(dirname "$0")/.."
. pgrx-config/env.sh
cargo pgrx install --pg-config "$PG_CONFIG" >/dev/null
cp sql/pg_eventstore--[0-9]*.[0-9]*.[0-9]*.sql "$("$PG_CONFIG" --sharedir)/extension/"
