# The entry points; README.md describes them. Each installs what it needs first.
# PG_MAJOR=14|15|16|17|18 picks the PostgreSQL major (default 15, Debian's; see pgrx-config/env.sh).
.PHONY: demo test test-all package
demo:
	bash examples/demo.sh
test:
	bash tests/run-all.sh
# What CI runs: every major, the upgrade across majors, the packages (tests/ci-all.sh)
test-all:
	bash tests/ci-all.sh
package:
	bash packaging/build.sh
