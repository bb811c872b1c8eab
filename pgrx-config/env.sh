# The project's pgrx set-up, sourced by every script: which Postgres we build and test against,
# which cargo-pgrx, and where pgrx keeps its state. Change the Postgres version here and nowhere else.
export PG_MAJOR=15
export PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
export PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
export PGRX_VERSION=0.18.1
# Outside /root so that the postgres OS user can run the test clusters pgrx starts.
export PGRX_HOME=/var/lib/pg_eventstore/pgrx
# pgrx's own test instance (cargo pgrx regress) listens on 28800 + major version.
export PGRX_REGRESS_PORT=$((28800 + PG_MAJOR))
export PATH="$HOME/.cargo/bin:$PATH"

# Gives this OS user a superuser role in a cluster (once); the arguments are a psql command that
# reaches the cluster as a superuser.
own_superuser_role() {
    local me
    me=$(id -un)
    "$@" -XqAt -c "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$me') THEN
        CREATE ROLE \"$me\" SUPERUSER LOGIN; END IF; END\$\$"
}
