#!/usr/bin/env bash
# Installs the extension for the tests and puts back what was installed before them.
#
#   install.sh                 the debug build, into PG_MAJOR's installation, with the install
#                              scripts of earlier releases (for the upgrade test; cargo pgrx install
#                              copies only the current one and the upgrade scripts)
#   install.sh --save PID      copies the pg_eventstore files installed now aside, for the script
#                              PID to restore; prints where
#   install.sh --restore DIR   puts them back exactly (or removes the test build if there were none)
#
# Tests must not change what a machine's users run: in Debian's PostgreSQL a test build would
# replace the release build `make demo` installed. Every script that installs a build for testing
# sources tests/keep-installed.sh, which saves first and restores when the script exits. (The other
# majors are installations of the project's own, under /var/lib/pg_eventstore.)
set -euo pipefail
cd "$(dirname "$0")/.."
. pgrx-config/env.sh
lib=$("$PG_CONFIG" --pkglibdir)
ext="$("$PG_CONFIG" --sharedir)/extension"
saves=/var/lib/pg_eventstore

installed() { ls "$lib"/pg_eventstore.so "$ext"/pg_eventstore.control "$ext"/pg_eventstore--*.sql 2>/dev/null || true; }

restore() {
    local dir=$1
    # A new file renamed into place: running backends keep the library they mapped.
    for f in $(installed); do rm -f "$f"; done
    if [ -f "$dir/pg_eventstore.so" ]; then
        cp "$dir/pg_eventstore.so" "$lib/.pg_eventstore.so.restoring" && mv "$lib/.pg_eventstore.so.restoring" "$lib/pg_eventstore.so"
        cp "$dir"/pg_eventstore.control "$dir"/pg_eventstore--*.sql "$ext/" 2>/dev/null || true
        echo "install: put back the pg_eventstore $(sed -n "s/^default_version = '\(.*\)'/\1/p" "$dir/pg_eventstore.control") that was installed before the tests ($(du -h "$dir/pg_eventstore.so" | cut -f1) library, built $(date -r "$dir/pg_eventstore.so" '+%Y-%m-%d %H:%M'))"
    else
        echo "install: removed the test build from $PG_HOME (no pg_eventstore was installed there before the tests)"
    fi
    rm -rf "$dir"
}

case "${1:-}" in
--save)
    # a run that was killed before it could restore: restore its save first
    for old in "$saves"/saved-install.*; do
        [ -d "$old" ] || continue
        kill -0 "${old##*.}" 2>/dev/null || restore "$old" >&2
    done
    dir="$saves/saved-install.${2:?the pid of the script that restores}"
    mkdir -p "$dir"
    for f in $(installed); do cp -p "$f" "$dir/"; done
    echo "$dir" ;;
--restore)
    restore "$2" ;;
"")
    cargo pgrx install --pg-config "$PG_CONFIG" >/dev/null
    cp sql/pg_eventstore--[0-9]*.[0-9]*.[0-9]*.sql "$ext/" ;;
*)
    echo "usage: install.sh [--save | --restore DIR]" >&2; exit 2 ;;
esac
