# Sourced: makes sure the Debian Postgres cluster is running and that this OS user has a superuser
# role in it (peer authentication on the local socket).
if ! pg_lsclusters -h | grep -q "^$PG_MAJOR  *main .* online"; then
    pg_lsclusters -h | grep -q "^$PG_MAJOR  *main " || pg_createcluster "$PG_MAJOR" main >/dev/null
    pg_ctlcluster "$PG_MAJOR" main start
fi
# A server started before apt upgraded Postgres runs the old binary but loads the new libraries
# (plpgsql.so then fails with an undefined symbol): restart it onto the installed version.
running=$(sudo -u postgres psql -XqAt -d postgres -c "SHOW server_version")
if [ "PostgreSQL $running" != "$("$PG_CONFIG" --version)" ]; then
    echo "cluster: restarting Postgres $running onto $("$PG_CONFIG" --version)"
    pg_ctlcluster "$PG_MAJOR" main restart
fi
me=$(id -un)
sudo -u postgres psql -qAt -d postgres -c \
    "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$me') THEN
        CREATE ROLE \"$me\" SUPERUSER LOGIN; END IF; END\$\$"
export PGHOST=/var/run/postgresql
