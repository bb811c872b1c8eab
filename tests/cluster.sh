# Sourced: makes sure the cluster of PG_MAJOR runs (Debian's `15 main`, or for another major the
# cluster of its own under /var/lib/pg_eventstore, on port 5400 + major) and that this OS user has
# a superuser role in it (peer authentication on the local socket in /var/run/postgresql).
export PGHOST=/var/run/postgresql
if [ "$PG_SOURCE" = debian ]; then
    if ! pg_lsclusters -h | grep -q "^$PG_MAJOR  *main .* online"; then
        pg_lsclusters -h | grep -q "^$PG_MAJOR  *main " || pg_createcluster "$PG_MAJOR" main >/dev/null
        pg_ctlcluster "$PG_MAJOR" main start
    fi
    # A server started before apt upgraded Postgres runs the old binary but loads the new libraries
    # (plpgsql.so then fails with an undefined symbol): restart it onto the installed version.
    running="PostgreSQL $(sudo -u postgres psql -XqAt -h "$PGHOST" -p "$PGPORT" -d postgres -c "SHOW server_version")"
    installed=$("$PG_CONFIG" --version)
    if [ "$running" != "$installed" ]; then
        echo "cluster: restarting $running onto $installed"
        pg_ctlcluster "$PG_MAJOR" main restart
    fi
else
    mkdir -p /var/run/postgresql && chown postgres /var/run/postgresql
    if [ ! -f "$PG_CLUSTER_DATA/PG_VERSION" ] || [ "$(cat "$PG_CLUSTER_DATA/PG_VERSION")" != "$PG_MAJOR" ]; then
        rm -rf "$PG_CLUSTER_DATA" && mkdir -p "$PG_CLUSTER_DATA" && chown postgres "$PG_CLUSTER_DATA"
        sudo -u postgres "$PG_BIN/initdb" -D "$PG_CLUSTER_DATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
            --encoding=UTF8 --locale=C.UTF-8 >/dev/null
        printf "port = %s\nunix_socket_directories = '/var/run/postgresql'\nlisten_addresses = ''\n" "$PGPORT" \
            >>"$PG_CLUSTER_DATA/postgresql.conf"
    fi
    if ! sudo -u postgres "$PG_BIN/pg_ctl" -D "$PG_CLUSTER_DATA" status >/dev/null 2>&1; then
        sudo -u postgres "$PG_BIN/pg_ctl" -D "$PG_CLUSTER_DATA" -l "$PG_CLUSTER_DATA/server.log" -w start >/dev/null
    elif [ "PostgreSQL $(sudo -u postgres "$PG_BIN/psql" -XqAt -h "$PGHOST" -p "$PGPORT" -d postgres -c "SHOW server_version")" != "$("$PG_CONFIG" --version)" ]; then
        sudo -u postgres "$PG_BIN/pg_ctl" -D "$PG_CLUSTER_DATA" -l "$PG_CLUSTER_DATA/server.log" -w restart >/dev/null
    fi
fi
own_superuser_role sudo -u postgres "$PG_BIN/psql" -h "$PGHOST" -p "$PGPORT" -d postgres
