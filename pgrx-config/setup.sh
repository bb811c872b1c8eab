#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian machine, as root, and is quick
# when it is all there already: Postgres 15 with its server headers, sudo (pgrx runs test clusters
# as the postgres user through it), cargo-pgrx at the pinned version, and `cargo pgrx init`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"

need_pkgs=()
for p in postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-contrib sudo procps; do
    dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "setup: installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
    echo "setup: installing cargo-pgrx $PGRX_VERSION (a few minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --quiet
fi

# PGRX_HOME holds pgrx's config.toml, its regress cluster (owned by postgres) and the bin/ wrappers.
mkdir -p "$PGRX_HOME/bin"
chmod 755 "$(dirname "$PGRX_HOME")"
chown postgres "$PGRX_HOME"
for real in "$PG_BIN"/*; do
    name=$(basename "$real")
    case "$name" in
        pg_ctl|initdb)
            printf '#!/bin/sh\nif [ "$(id -u)" = 0 ]; then exec sudo -u postgres %s "$@"; fi\nexec %s "$@"\n' \
                "$real" "$real" >"$PGRX_HOME/bin/$name"
            chmod 755 "$PGRX_HOME/bin/$name" ;;
        *) ln -sf "$real" "$PGRX_HOME/bin/$name" ;;
    esac
done
wrapper="$here/pg_config"
if ! grep -q "pg$PG_MAJOR = \"$wrapper\"" "$PGRX_HOME/config.toml" 2>/dev/null; then
    cargo pgrx init --pg$PG_MAJOR "$wrapper" >/dev/null
fi
echo "setup: ok ($(cargo pgrx --version), $("$PG_CONFIG" --version))"
