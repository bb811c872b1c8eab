#!/usr/bin/env bash
# Everything CI runs (`make test-all`, called by .ci/run): Citus built for the citus tier, the
# whole suite on Debian's PostgreSQL 15 (`make test`, the README's test command), every test tier
# on the newest major (the benchmark smoke runs only on 15), pg_regress and the client tests on the
# other majors, pg_upgrade from 15 to 17, and the packages. Prints each part's time and the total
# of tests passed and failed.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp -d)
times=() status=0 passed=0 failed=0
part() {
    local name=$1; shift
    echo "##### $name"
    local started=$SECONDS
    "$@" 2>&1 | tee "$log/$name.out"
    local rc=${PIPESTATUS[0]}
    times+=("$name $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s")
    [ "$rc" -eq 0 ] || { echo "##### $name FAILED (exit $rc)"; status=1; }
    local p q
    # run-all's closing line, cargo test's summaries, or the package test's
    read -r p q < <(sed -e 's/\x1b\[[0-9;]*m//g' "$log/$name.out" | sed -n \
        -e 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' \
        -e 's/^package tests: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' \
        -e 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' | tail -1)
    passed=$((passed + ${p:-0})); failed=$((failed + ${q:-0}))
    if [ "$rc" -ne 0 ] && [ "${q:-0}" -eq 0 ]; then failed=$((failed + 1)); fi
}
# Citus for the citus tier of `make test`, built from ../shared/vendor/citus when missing
part citus-build bash tests/citus/cluster.sh install
part pg15-full make test
part pg18-full env PG_MAJOR=18 TIERS="pg_test regress isolation client clients" bash tests/run-all.sh
for m in 14 16 17; do
    part "pg$m-regress-client" env PG_MAJOR=$m TIERS="regress client" bash tests/run-all.sh
done
part pg_upgrade-15-to-17 bash tests/pg_upgrade.sh 15 17
part package bash tests/package.sh
rm -rf "$log"
echo
echo "time per part: $(IFS=,; echo "${times[*]}" | sed 's/,/, /g')"
echo "pg_eventstore CI: $passed passed, $failed failed"
exit $status
