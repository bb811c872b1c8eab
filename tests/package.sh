#!/usr/bin/env bash
# The package test: builds the PostgreSQL 15 .deb and tarball (packaging/build.sh), installs the
# .deb with dpkg -i into Debian's PostgreSQL 15, and in a fresh cluster with nothing but the
# package's files and a plain environment (no cargo, no Rust on PATH) creates the extension and
# runs the demo. Then removes the package; whatever was installed before is put back.
set -euo pipefail
cd "$(dirname "$0")/.."
export PG_MAJOR=15
. pgrx-config/env.sh
bash packaging/build.sh 15
. tests/keep-installed.sh
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
deb=dist/postgresql-15-pg-eventstore_$version-1_amd64.deb
tarball=dist/pg_eventstore-$version-pg15-linux-x86_64.tar.gz
work=$(mktemp -d /tmp/pg_eventstore_package.XXXXXX)
chown postgres "$work"
at_exit "dpkg -r postgresql-15-pg-eventstore >/dev/null 2>&1 || true; sudo -u postgres $PG_BIN/pg_ctl -D $work/data -m immediate stop >/dev/null 2>&1 || true; rm -rf $work"

passed=0 failed=0
check() {
    local name=$1; shift
    if "$@"; then echo "test package $name ... ok"; passed=$((passed + 1)); else echo "test package $name ... FAILED"; failed=$((failed + 1)); fi
}
# What a package must hold: the library, the control file, this version's install script and
# every upgrade script, and nothing of the build machine.
contents() {
    local listing
    listing=$(dpkg-deb -c "$deb" | awk '{print $6}')
    grep -qx './usr/lib/postgresql/15/lib/pg_eventstore.so' <<<"$listing" &&
        grep -qx './usr/share/postgresql/15/extension/pg_eventstore.control' <<<"$listing" &&
        grep -qx "./usr/share/postgresql/15/extension/pg_eventstore--$version.sql" <<<"$listing" &&
        [ "$(grep -c 'extension/pg_eventstore--.*--.*\.sql$' <<<"$listing")" = "$(ls sql/pg_eventstore--*--*.sql | wc -l)" ] &&
        ! grep -q '/target/\|/root/\|/work/' <<<"$listing" &&
        dpkg-deb -f "$deb" Depends | grep -q 'postgresql-15'
}
# Installed with dpkg, the library is the package's (not a test build), and dpkg knows its files.
installs() {
    dpkg -i "$deb" >/dev/null &&
        dpkg -s postgresql-15-pg-eventstore | grep -q '^Status: install ok installed' &&
        cmp -s "$($PG_CONFIG --pkglibdir)/pg_eventstore.so" <(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/lib/postgresql/15/lib/pg_eventstore.so)
}
# A fresh cluster, a database, CREATE EXTENSION and the demo, with a minimal environment.
demo() {
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp bash -c '
        set -euo pipefail
        ! command -v cargo >/dev/null
        cd "$1"
        sudo -u postgres '"$PG_BIN"'/initdb -D "$1/data" -U postgres --auth=trust >/dev/null
        sudo -u postgres '"$PG_BIN"'/pg_ctl -D "$1/data" -o "-p 54350 -k $1 -c listen_addresses=" -l "$1/log" -w start >/dev/null
        psql="'"$PG_BIN"'/psql -X -v ON_ERROR_STOP=1 -h $1 -p 54350 -U postgres"
        $psql -q -d postgres -c "CREATE DATABASE demo"
        $psql -q -d demo -c "CREATE EXTENSION pg_eventstore"
        $psql -qAt -d demo -c "SELECT extversion FROM pg_extension WHERE extname = '\''pg_eventstore'\''" | grep -qx "$2"
        $psql -d demo -f "$3" >"$1/demo.out"
        grep -q "AccountOpened" "$1/demo.out"
        $psql -qAt -d demo -c "SELECT count(*) FROM eventstore.verify()" | grep -qx 0
        $psql -qAt -d demo -c "SELECT count(*) > 0 FROM eventstore.read_all()" | grep -qx t
    ' demo "$work" "$version" "$PWD/examples/demo.sql"
}
# The tarball's install.sh refuses another major's pg_config and installs into its own.
tarball() {
    tar -xzf "$tarball" -C "$work" &&
        ! "$work/pg_eventstore-$version-pg15-linux-x86_64/install.sh" /bin/false 2>/dev/null &&
        [ -x "$work/pg_eventstore-$version-pg15-linux-x86_64/install.sh" ] &&
        [ -f "$work/pg_eventstore-$version-pg15-linux-x86_64/lib/pg_eventstore.so" ] &&
        [ "$(cat "$work/pg_eventstore-$version-pg15-linux-x86_64/PG_MAJOR")" = 15 ]
}
# dpkg -r takes every file of the package away again.
removes() {
    dpkg -r postgresql-15-pg-eventstore >/dev/null && [ ! -e "$($PG_CONFIG --pkglibdir)/pg_eventstore.so" ] &&
        [ ! -e "$($PG_CONFIG --sharedir)/extension/pg_eventstore.control" ]
}
check contents contents
check installs installs
check demo demo
check tarball tarball
sudo -u postgres "$PG_BIN/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
check removes removes
echo "package tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
