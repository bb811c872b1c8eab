#!/usr/bin/env bash
# Appends on one node against appends on a Citus cluster of three nodes on this same machine
# (README "Running on Citus"), and what delegating a call to the stream's node costs.
#   bash bench/citus.sh [SECONDS]      (default 10 s per run; writes bench/results/<date>-citus.md)
# Release build into Debian's PostgreSQL 15 (put back afterwards); Citus must be installed
# (bash tests/citus/cluster.sh install). Every server runs with the same settings; pgbench -M
# prepared, so the stream id reaches Citus as a parameter it can route by.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
PG_MAJOR=15 . pgrx-config/env.sh
. tests/keep-installed.sh
bash tests/citus/cluster.sh available
cargo pgrx install --release --pg-config "$PG_CONFIG" >/dev/null
bash tests/citus/cluster.sh start
at_exit 'bash tests/citus/cluster.sh stop; sudo -u postgres "$PG_BIN/pg_ctl" -D "$single" -m immediate stop >/dev/null 2>&1 || true'
q() { local port=$1; shift; psql -XqAt -h 127.0.0.1 -U postgres -d postgres -p "$port" "$@"; }

# one node: the same PostgreSQL, the same settings, no Citus
single=/var/lib/pg_eventstore/citus/single
sudo -u postgres "$PG_BIN/initdb" -D "$single" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
grep -v "^shared_preload_libraries" /var/lib/pg_eventstore/citus/c/postgresql.conf | sed 's/^port = 5511/port = 5514/' \
    >"$single/postgresql.conf.new"
mv "$single/postgresql.conf.new" "$single/postgresql.conf" && chown postgres "$single/postgresql.conf"
sudo -u postgres "$PG_BIN/pg_ctl" -D "$single" -l /var/lib/pg_eventstore/citus/single.log -w start >/dev/null
q 5514 -c "CREATE EXTENSION pg_eventstore"
q 5511 -c "CREATE EXTENSION pg_eventstore" -c "SELECT eventstore.distribute(32)" >/dev/null

work=$(mktemp -d)
at_exit "rm -rf $work"
cat >"$work/any.sql" <<'EOF'
\set sid random(1, 64)
SELECT eventstore.append_event(:sid, 'Bench', 'E', '{"amount": 1}');
EOF
# eight streams whose shard is on the first worker, one script each (pgbench picks among them)
local_ids=$(q 5511 -c "SELECT string_agg(s::text, ' ') FROM (SELECT s FROM generate_series(1000, 2000) s
    WHERE (SELECT n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
           WHERE p.shardid = get_shard_id_for_distribution_column('eventstore.streams', s::text)) = 5512
    LIMIT 8) x")
local_scripts=()
for id in $local_ids; do
    printf "SELECT eventstore.append_event('%s', 'Bench', 'E', '{\"amount\": 1}');\n" "$id" >"$work/$id.sql"
    local_scripts+=(-f "$work/$id.sql")
done

# The shapes of an append through the coordinator, one client, to the same 8 streams: on its own or
# inside a transaction block (BEGIN ... COMMIT: Citus does not delegate append_event there; the
# coordinator has the worker append, as part of the client's transaction), naming no event id or a
# new one (claimed in event_ids, on whichever node holds its shard: then the commit is two-phase).
shape_scripts() { # shape -> pgbench -f arguments
    local shape=$1 id
    for id in $local_ids; do
        {
            echo '\set a random(1, 9223372036854775806)'
            echo '\set b random(1, 9223372036854775806)'
            case $shape in block*) echo 'BEGIN;' ;; esac
            case $shape in
                *id) printf "SELECT eventstore.append_event('%s', 'Bench', 'E', '{\"amount\": 1}', event_id => (lpad(to_hex(:a::bigint), 16, '0') || lpad(to_hex(:b::bigint), 16, '0'))::uuid);\n" "$id" ;;
                *) printf "SELECT eventstore.append_event('%s', 'Bench', 'E', '{\"amount\": 1}');\n" "$id" ;;
            esac
            case $shape in block*) echo 'COMMIT;' ;; esac
        } >"$work/$shape-$id.sql"
        printf -- '-f %s ' "$work/$shape-$id.sql"
    done
}

bench() { # port clients script-args... -> "tps latency_ms"
    local port=$1 clients=$2; shift 2
    "$PG_BIN/pgbench" -h 127.0.0.1 -U postgres -p "$port" -n -M prepared -c "$clients" -j "$clients" -T "$secs" "$@" postgres 2>&1 |
        awk '/^latency average/ {l=$4} /^tps/ {t=$3} END {printf "%.0f %.2f\n", t, l}'
}
# warm up: every stream exists before the measured runs
bench 5514 4 -f "$work/any.sql" >/dev/null; bench 5511 4 -f "$work/any.sql" >/dev/null
bench 5511 1 "${local_scripts[@]}" >/dev/null

rows=()
for round in 1 2 3; do
    read -r t1 l1 < <(bench 5514 4 -f "$work/any.sql")
    read -r t3 l3 < <(bench 5511 4 -f "$work/any.sql")
    read -r _ l1 < <(bench 5514 1 -f "$work/any.sql")
    read -r tc lc < <(bench 5511 1 "${local_scripts[@]}")
    read -r tw lw < <(bench 5512 1 "${local_scripts[@]}")
    rows+=("| $round | $t1 | $t3 | $(python3 -c "print(f'{$t3/$t1:.2f}')") | $l1 | $lc | $lw | $(python3 -c "print(f'{$lc-$lw:.2f}')") |")
    echo "round $round: one node $t1 tx/s, cluster $t3 tx/s; one client: one node $l1 ms, coordinator $lc ms, worker $lw ms"
done

shape_rows=()
for round in 1 2 3; do
    row="| $round |"
    for shape in alone alone-id block block-id; do
        # shellcheck disable=SC2046
        read -r _ l < <(bench 5511 1 $(shape_scripts "$shape"))
        row+=" $l |"
    done
    shape_rows+=("$row")
    echo "round $round (ms per append, alone / alone with id / block / block with id):$row"
done

out=bench/results/$(date +%F)-citus.md
[ -e "$out" ] && out=bench/results/$(date +%F-%H%M)-citus.md
{
    echo "# Appends on one node and on a Citus cluster of three nodes, one machine ($(date +%F))"
    echo
    echo "\`bash bench/citus.sh $secs\`: $(nproc) cores, $("$PG_CONFIG" --version), Citus $(q 5511 -c "SELECT extversion FROM pg_extension WHERE extname = 'citus'"), release build."
    echo "Every server runs with the same settings (tests/citus/cluster.sh: wal_level logical, 200 connections)."
    echo "pgbench -M prepared -T $secs, single-event appends to existing streams."
    echo
    echo "- one node: a PostgreSQL without Citus, 4 clients, 64 streams"
    echo "- cluster: the coordinator of a distributed store (32 shards over 2 workers), 4 clients, 64 streams"
    echo "- one client: 1 client on the one node (64 streams), for the latency of an append without Citus"
    echo "- delegation: 1 client appending to 8 streams held by the first worker, through the coordinator and"
    echo "  directly on that worker; the difference is what the coordinator's hop (plan, route, a round trip"
    echo "  over its connection to the worker) adds to an append"
    echo
    echo "| round | one node tx/s | cluster tx/s | cluster / one node | one client: one node ms | via coordinator ms | on the worker ms | delegation ms |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "Through the coordinator, one client, the 8 streams of the first worker: ms per transaction of one"
    echo "append on its own or inside BEGIN ... COMMIT, naming no event id or a new one."
    echo
    echo "| round | on its own | on its own, with an id | in a block | in a block, with an id |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${shape_rows[@]}"
} >"$out"
echo "wrote $out"
