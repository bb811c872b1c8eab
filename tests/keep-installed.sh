# Sourced (after pgrx-config/env.sh) by every script that installs a build for testing into
# Debian's PostgreSQL: saves the pg_eventstore files installed there and puts them back when the
# script exits (tests/install.sh). Scripts it calls see the save and leave it to this one.
# `at_exit CMD` adds to what runs on exit.
_at_exit=()
at_exit() {
    _at_exit+=("$1")
    trap 'for _c in "${_at_exit[@]}"; do eval "$_c"; done' EXIT
}
if [ "$PG_SOURCE" = debian ] && [ -z "${PG_EVENTSTORE_SAVED:-}" ]; then
    # an absolute path: the script may have changed directory by the time it exits
    _install_sh=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/install.sh
    PG_EVENTSTORE_SAVED=$(bash "$_install_sh" --save $$)
    export PG_EVENTSTORE_SAVED
    at_exit 'bash "$_install_sh" --restore "$PG_EVENTSTORE_SAVED"'
fi
