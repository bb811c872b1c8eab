#!/usr/bin/env bash
# Concurrency rules as isolation specs (tests/isolation/specs): sessions, steps and permutations
# run in a fixed interleaving by Postgres's own isolationtester, on a throwaway cluster of their
# own (two-phase commit needs max_prepared_transactions). Output is compared with
# tests/isolation/expected; `--accept` copies the new output there instead.
set -euo pipefail
cd "$(dirname "$0")/.."
. pgrx-config/env.sh
. tests/keep-installed.sh
accept=0
[ "${1:-}" = "--accept" ] && { accept=1; shift; }
bash tests/install.sh
regress="$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/isolation/pg_isolation_regress"
work=$(mktemp -d /tmp/pg_eventstore_isolation.XXXXXX)
at_exit 'rm -rf "$work"'
cp -r tests/isolation/specs tests/isolation/expected "$work/"
if [ "$accept" = 1 ]; then
    for s in ${*:-$(cd tests/isolation/specs && ls *.spec | sed 's/\.spec$//')}; do touch "$work/expected/$s.out"; done
fi
printf 'max_prepared_transactions = 5\nmax_worker_processes = 16\n' >"$work/temp.conf"
chown -R postgres "$work"
specs=${*:-$(cd tests/isolation/specs && ls *.spec | sed 's/\.spec$//')}
status=0
(cd "$work" && sudo -u postgres "$regress" --temp-instance="$work/instance" --temp-config="$work/temp.conf" \
    --bindir="$PG_BIN" --inputdir=. --outputdir=. $specs) || status=$?
if [ "$accept" = 1 ]; then
    for s in $specs; do cp "$work/results/$s.out" "tests/isolation/expected/$s.out"; done
fi
[ -f "$work/regression.diffs" ] && cat "$work/regression.diffs"
exit $status
