#!/usr/bin/env bash
# A Citus cluster on this machine for the citus tier: a coordinator and two workers on 127.0.0.1
# (ports 5511, 5512, 5513), data under /var/lib/pg_eventstore/citus, on Debian's PostgreSQL 15.
#   bash tests/citus/cluster.sh available   exit 0 if Citus is installed, else say why and exit 1
#   bash tests/citus/cluster.sh install     build and install Citus from the vendored source if missing
#   bash tests/citus/cluster.sh start       (re)create the three nodes and form the cluster
#   bash tests/citus/cluster.sh stop        (every node under the data directory)
#   bash tests/citus/cluster.sh node NAME PORT   one more node with Citus, not added to the cluster
# The vendored source is ../shared/vendor/citus beside the repository (CITUS_VENDOR overrides).
set -euo pipefail
cd "$(dirname "$0")/../.."
PG_MAJOR=15 . pgrx-config/env.sh
root=/var/lib/pg_eventstore/citus
vendor=${CITUS_VENDOR:-$(cd .. && pwd)/shared/vendor/citus}
nodes="c:5511 w1:5512 w2:5513"
pkglib=$("$PG_CONFIG" --pkglibdir)

available() { [ -f "$pkglib/citus.so" ]; }

install_citus() {
    available && return 0
    local tarball
    tarball=$(ls "$vendor"/citus-*.tar.gz 2>/dev/null | head -1)
    [ -n "$tarball" ] || { echo "citus: no source in $vendor" >&2; exit 1; }
    echo "citus: building $(basename "$tarball") for $("$PG_CONFIG" --version) (about 5 minutes)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev >/dev/null
    local build
    build=$(mktemp -d)
    tar xzf "$tarball" -C "$build"
    local src
    src=$(ls -d "$build"/citus-*/ | head -1)
    for p in "$vendor"/*.patch; do [ -f "$p" ] && (cd "$src" && patch -s -p1 <"$p"); done
    (cd "$src" && ./configure -q PG_CONFIG="$PG_CONFIG" >/dev/null && make -s -j"$(nproc)" >/dev/null 2>&1 && make -s install >/dev/null)
    rm -rf "$build"
    available
}

pg() { sudo -u postgres "$PG_BIN/$@"; }
q() { local port=$1; shift; psql -XqAt -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"; }

stop() {
    for dir in "$root"/*/; do
        [ -f "$dir/PG_VERSION" ] && pg pg_ctl -D "$dir" -m immediate stop >/dev/null 2>&1 || true
    done
}

# A PostgreSQL with Citus loaded, started on 127.0.0.1:port, not yet part of any cluster.
node() {
    local name=$1 port=$2 dir=$root/$1
    pg initdb -D "$dir" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    cat >>"$dir/postgresql.conf" <<EOF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
shared_preload_libraries = 'citus'
wal_level = logical
max_connections = 200
max_worker_processes = 32
EOF
    pg pg_ctl -D "$dir" -l "$root/$name.log" -w start >/dev/null
    q "$port" -c "CREATE EXTENSION citus"
}

start() {
    available || { echo "citus: not installed" >&2; exit 1; }
    stop
    rm -rf "$root" && mkdir -p "$root" && chown postgres "$root"
    mkdir -p /var/run/postgresql && chown postgres /var/run/postgresql
    for n in $nodes; do
        node "${n%%:*}" "${n##*:}"
    done
    q 5511 -c "SELECT citus_set_coordinator_host('127.0.0.1', 5511)" \
        -c "SELECT citus_add_node('127.0.0.1', 5512)" -c "SELECT citus_add_node('127.0.0.1', 5513)" >/dev/null
    echo "citus: coordinator 127.0.0.1:5511, workers :5512 and :5513 ($(q 5511 -c "SELECT extversion FROM pg_extension WHERE extname = 'citus'"))"
}

case "${1:-}" in
    available) available || { echo "citus: not installed in $pkglib"; exit 1; } ;;
    install) install_citus ;;
    start) start ;;
    stop) stop ;;
    node) node "$2" "$3" ;;   # node NAME PORT: one more, for a test to add to the cluster
    *) echo "usage: $0 available|install|start|stop|node NAME PORT" >&2; exit 2 ;;
esac
