#!/usr/bin/env bash
# Shows that following the global feed costs O(batch), not O(store size): loads a store of N events
# (default 1,000,000) in a scratch database, prints the plans read_all's statements use (through
# auto_explain, since read_all runs them from inside the extension), and times read_all near the head
# with pgbench at 10,000 events and at N events. Writes bench/results/feed_scale.md.
#   bash bench/feed_scale.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
. pgrx-config/env.sh
. tests/cluster.sh
. tests/keep-installed.sh
N=${1:-1000000}
db=pg_eventstore_feed_scale
out=bench/results/feed_scale.md
PGBENCH="$PG_BIN/pgbench"

cargo pgrx install --release --pg-config "$PG_CONFIG" >/dev/null
psql -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
psql -q -d "$db" -c "CREATE EXTENSION pg_eventstore"

# load: streams of 100 events in 10 stream types plus a rare one ('Audit', 1% of the streams),
# appended in batches of 100 through append_events
load_to() {
    local target=$1
    psql -q -d "$db" -v target="$target" <<'SQL'
SELECT COALESCE(max(global_position), 0) / 100 AS have FROM eventstore.events \gset
SELECT count(*) FROM (
  SELECT eventstore.append_events('s-' || i, CASE WHEN i % 100 = 0 THEN 'Audit' ELSE 'Type' || (i % 10) END,
           (SELECT jsonb_agg(jsonb_build_object('type', CASE WHEN k % 10 = 0 THEN 'Rare' ELSE 'Common' END,
                                                'payload', jsonb_build_object('i', i, 'k', k)))
            FROM generate_series(1, 100) AS k))
  FROM generate_series(:have + 1, :target / 100) AS i) AS loaded;
VACUUM ANALYZE eventstore.events;
SQL
}

measure() {
    local label=$1 head
    head=$(psql -qAt -d "$db" -c "SELECT max(global_position) FROM eventstore.events")
    local after=$((head - 1000))
    local -a lines=()
    for q in "SELECT count(*) FROM eventstore.read_all($after, 1000)" \
             "SELECT count(*) FROM eventstore.read_all($after, 1000, ARRAY['Type3'])" \
             "SELECT count(*) FROM eventstore.read_all($after, 1000, NULL, ARRAY['Rare'])" \
             "SELECT count(*) FROM eventstore.read_all($after, 1000, ARRAY['Type3', 'Type4'], NULL, 0, 2)" \
             "SELECT count(*) FROM eventstore.read_all(0, 1000)" \
             "SELECT count(*) FROM eventstore.read_all(0, 1000, ARRAY['Audit'])"; do
        echo "$q;" > /tmp/feed_scale_q.sql
        local lat
        lat=$("$PGBENCH" -n -c 1 -T 5 -f /tmp/feed_scale_q.sql "$db" 2>/dev/null | sed -n 's/^latency average = \(.*\) ms$/\1/p')
        lines+=("| $label | \`${q/$after/head-1000}\` | $lat |")
    done
    printf '%s\n' "${lines[@]}"
}

plans() {
    local head
    head=$(psql -qAt -d "$db" -c "SELECT max(global_position) FROM eventstore.events")
    psql -q -d "$db" 2>&1 <<SQL | sed -n '/Query Text/,/^$/p' | grep -v '^\s*$' | sed 's/^/    /'
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_analyze = on;
SET auto_explain.log_timing = off;
SET auto_explain.log_level = notice;
SET client_min_messages = notice;
SELECT count(*) FROM eventstore.read_all($((head - 1000)), 1000);
SELECT count(*) FROM eventstore.read_all($((head - 1000)), 1000, ARRAY['Type3']);
SELECT count(*) FROM eventstore.read_all($((head - 1000)), 1000, NULL, ARRAY['Rare']);
SELECT count(*) FROM eventstore.read_all(0, 1000, ARRAY['Audit']);
SQL
}

small=$(( N < 10000 ? N : 10000 ))
load_to "$small"
small_rows=$(measure "$small events")
started=$(date +%s)
load_to "$N"
loaded=$(( $(date +%s) - started ))
big_rows=$(measure "$N events")
plan_text=$(plans)
if grep -q "Seq Scan on events" <<<"$plan_text"; then
    echo "feed_scale: read_all scanned the events table sequentially" >&2
    exit 1
fi

{
    echo "# Following the feed at 10,000 and at $N events"
    echo
    echo "Run: \`bash bench/feed_scale.sh $N\` on $(date -u +%Y-%m-%d), $(nproc) cores, $("$PG_CONFIG" --version),"
    echo "release build. Loading the events from $small to $N (append_events, batches of 100, one session) took ${loaded}s."
    echo "Each row: pgbench, 1 client, 5 s, average latency of one read_all call of up to 1,000 events"
    echo "starting 1,000 events before the head (what a reader that keeps up does), except the last two"
    echo "rows of each block, which read the first 1,000 events of the store and of a rare category."
    echo
    echo "| store | query | latency ms |"
    echo "|---|---|---|"
    echo "$small_rows"
    echo "$big_rows"
    echo
    echo "Plans of the statements read_all runs (auto_explain, nested statements, at $N events):"
    echo
    echo "$plan_text"
} > "$out"
cat "$out"
