# Sourced: makes sure the Debian Postgres cluster is running and that this OS user has a superuser
# role in it (peer authentication on the local socket).
if ! pg_lsclusters -h | grep -q "^$PG_MAJOR  *main .* online"; then
    pg_lsclusters -h | grep -q "^$PG_MAJOR  *main " || pg_createcluster "$PG_MAJOR" main >/dev/null
    pg_ctlcluster "$PG_MAJOR" main start
fi
# A server started before apt upgraded Postgres runs the old binary but loads the new libraries
# (plpgsql.so then fails with an undefined symbol): restart it onto the installed version.
running="PostgreSQL $(sudo -u postgres psql -XqAt -d postgres -c "SHOW server_version")"
installed=$("$PG_CONFIG" --version)
if [ "$running" != "$installed" ]; then
    echo "cluster: restarting $running onto $installed"
    pg_ctlcluster "$PG_MAJOR" main restart
fi
own_superuser_role sudo -u postgres psql -d postgres
export PGHOST=/var/run/postgresql
