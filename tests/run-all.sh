#!/usr/bin/env bash
# The whole test suite (`make test`): set-up, then the three levels of tests — #[pg_test]s inside
# Postgres, pg_regress cases, and client tests over real connections — and a closing line that
# counts every test. PG_MAJOR picks the PostgreSQL major (pgrx-config/env.sh); TIERS="regress
# client" runs only those tiers (tests/ci-all.sh does for some majors).
set -uo pipefail
cd "$(dirname "$0")/.."
bash pgrx-config/setup.sh || exit 1
. pgrx-config/env.sh
. tests/keep-installed.sh
echo "PostgreSQL $PG_MAJOR ($PG_SOURCE): $("$PG_CONFIG" --version)"

log=$(mktemp -d)
status=0
times=()
run() {
    local name=$1; shift
    case " ${TIERS:-$name} " in *" $name "*) ;; *) return 0 ;; esac
    echo "=== $name"
    local started=$SECONDS
    "$@" 2>&1 | tee "$log/$name.out"
    local rc=${PIPESTATUS[0]}
    times+=("$name $((SECONDS - started)) s")
    [ "$rc" -eq 0 ] || { echo "=== $name FAILED (exit $rc)"; status=1; }
}
run pg_test bash tests/pgtest.sh
run regress bash tests/regress.sh
run isolation bash tests/isolation.sh
run client bash tests/client.sh
run clients bash tests/clients.sh
# The store distributed over a Citus cluster of three nodes on this machine, when Citus is installed
# for Debian's PostgreSQL 15 (`bash tests/citus/cluster.sh install` builds it from the vendored
# source; `make test-all` does that first).
citus_note=
case " ${TIERS:-citus} " in
    *" citus "*)
        if [ "$PG_MAJOR" != 15 ]; then
            citus_note="citus skipped: the Citus tier runs on PostgreSQL 15"
        elif ! citus_why=$(bash tests/citus/cluster.sh available 2>&1); then
            citus_note="citus skipped: $citus_why; bash tests/citus/cluster.sh install builds it"
        else
            run citus bash tests/citus.sh
        fi
        [ -n "$citus_note" ] && echo "=== $citus_note" ;;
esac
rm -f bench/results/smoke.md bench/results/instructions-smoke.md bench/results/adapter-smoke.md
# The benchmark suite in smoke mode: a few seconds per workload, to show it runs (with its diagnostics:
# wait events, WAL). No timing is checked.
run bench_smoke bash bench/run.sh --smoke --waits --wal
# The instruction counts (callgrind) in smoke mode: a few calls per workload, to show the harness runs.
run instructions_smoke bash bench/instructions.sh --smoke
# The cqrs-es adapter's overhead in smoke mode.
run adapter_smoke bash bench/adapter.sh --smoke

strip() { sed -e 's/\x1b\[[0-9;]*m//g' "$@"; }
passed=0; failed=0
touch "$log"/{pg_test,regress,isolation,client,clients}.out
touch "$log/citus.out"
for f in "$log"/pg_test.out "$log"/client.out "$log"/clients.out "$log"/citus.out; do
    while read -r p q; do passed=$((passed + p)); failed=$((failed + q)); done < <(
        strip "$f" | sed -n 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p')
done
read -r p q < <(strip "$log/regress.out" | sed -n 's/^passed=\([0-9]*\) failed=\([0-9]*\).*/\1 \2/p' | tail -1)
passed=$((passed + ${p:-0})); failed=$((failed + ${q:-0}))
# pg_isolation_regress' lines: "test x ... ok" up to 15, TAP ("ok 1 - x", "not ok 1 - x") from 16 on
passed=$((passed + $(grep -cE '^test .* \.\.\. ok|^ok [0-9]+ ' "$log/isolation.out")))
failed=$((failed + $(grep -cE '^test .* \.\.\. FAILED|^not ok [0-9]+ ' "$log/isolation.out")))
passed=$((passed + $(grep -c '^example .* \.\.\. ok' "$log/clients.out")))
failed=$((failed + $(grep -c '^example .* \.\.\. FAILED' "$log/clients.out")))
rm -rf "$log"

echo
smoke() { [ -f "bench/results/$1" ] && echo ok || echo missing; }
echo "time per tier: $(IFS=,; echo "${times[*]}" | sed 's/,/, /g')"
echo "pg_eventstore tests on PostgreSQL $PG_MAJOR: ${TIERS:-pg_test regress isolation client clients citus bench_smoke instructions_smoke adapter_smoke} (benchmark smoke runs: pgbench $(smoke smoke.md), callgrind $(smoke instructions-smoke.md), adapter $(smoke adapter-smoke.md))"
[ -n "$citus_note" ] && echo "$citus_note"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
exit $status
