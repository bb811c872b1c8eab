#!/usr/bin/env bash
# `make package`: for each supported PostgreSQL major (or those named: `packaging/build.sh 15 17`),
# a release build of the extension, packed two ways into dist/:
#
#   postgresql-<major>-pg-eventstore_<version>-1_amd64.deb
#       installs into the directories Debian's and the PostgreSQL project's (PGDG) packages of that
#       major use: /usr/lib/postgresql/<major>/lib and /usr/share/postgresql/<major>/extension
#   pg_eventstore-<version>-pg<major>-linux-x86_64.tar.gz
#       lib/ and extension/, and an install.sh that copies them where a given pg_config says
#
# Built against each major's server headers (Debian's for 15, the pinned wheels for the others,
# pgrx-config/postgresql-wheels.txt) for x86_64 glibc Linux; they need no Rust where they are
# installed. Only the current version's install script and the upgrade scripts go in.
set -euo pipefail
cd "$(dirname "$0")/.."
majors=${*:-14 15 16 17 18}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
mkdir -p dist
for major in $majors; do
    PG_MAJOR=$major bash pgrx-config/setup.sh >/dev/null
    (
        export PG_MAJOR=$major
        . pgrx-config/env.sh
        staged=target/package/pg$major
        rm -rf "$staged"
        cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$staged/pgrx" >/dev/null
        so=$(find "$staged/pgrx" -name pg_eventstore.so)
        extdir=$(dirname "$(find "$staged/pgrx" -name pg_eventstore.control)")
        files() { # $1: lib dir, $2: extension dir
            mkdir -p "$1" "$2"
            install -m 755 "$so" "$1/"
            install -m 644 "$extdir/pg_eventstore.control" "$extdir/pg_eventstore--$version.sql" "$2/"
            install -m 644 sql/pg_eventstore--*--*.sql "$2/"
        }

        deb=postgresql-$major-pg-eventstore
        root=$staged/deb
        files "$root/usr/lib/postgresql/$major/lib" "$root/usr/share/postgresql/$major/extension"
        mkdir -p "$root/DEBIAN" "$root/usr/share/doc/$deb"
        install -m 644 README.md "$root/usr/share/doc/$deb/README.md"
        cat >"$root/DEBIAN/control" <<CONTROL
Package: $deb
Version: $version-1
Architecture: amd64
Maintainer: pg_eventstore developers <maintainers@pg-eventstore.invalid>
Depends: postgresql-$major, libc6 (>= 2.36)
Section: database
Priority: optional
Installed-Size: $(du -sk "$root/usr" | cut -f1)
Description: event store inside PostgreSQL $major (CREATE EXTENSION pg_eventstore)
 Streams with gapless per-stream sequences and optimistic concurrency,
 commands with their causation links, snapshots, and a gap-safe global feed
 with durable subscriptions, as SQL functions in schema eventstore.
CONTROL
        dpkg-deb --root-owner-group -Zxz --build "$root" "dist/${deb}_$version-1_amd64.deb" >/dev/null

        name=pg_eventstore-$version-pg$major-linux-x86_64
        tree=$staged/tar/$name
        files "$tree/lib" "$tree/extension"
        install -m 644 README.md "$tree/README.md"
        cat >"$tree/install.sh" <<'INSTALL'
#!/bin/sh
# Installs pg_eventstore into the PostgreSQL whose pg_config is given (default: the first on PATH),
# which must be of the major this archive was built for. Then, in a database:
#   CREATE EXTENSION pg_eventstore;
set -eu
here=$(cd "$(dirname "$0")" && pwd)
pg_config=${1:-pg_config}
want=$(cat "$here/PG_MAJOR")
have=$("$pg_config" --version | sed 's/^PostgreSQL \([0-9]*\).*/\1/')
[ "$have" = "$want" ] || { echo "this archive is for PostgreSQL $want; $pg_config is $have" >&2; exit 1; }
install -m 755 "$here"/lib/pg_eventstore.so "$("$pg_config" --pkglibdir)/"
install -m 644 "$here"/extension/* "$("$pg_config" --sharedir)/extension/"
echo "installed pg_eventstore into $("$pg_config" --pkglibdir) and $("$pg_config" --sharedir)/extension"
INSTALL
        chmod 755 "$tree/install.sh"
        echo "$major" >"$tree/PG_MAJOR"
        tar -C "$staged/tar" --owner=0 --group=0 -czf "dist/$name.tar.gz" "$name"
        echo "package: dist/${deb}_$version-1_amd64.deb, dist/$name.tar.gz ($("$PG_CONFIG" --version))"
    )
done
