#!/usr/bin/env bash
# A dev PostgreSQL 15 on loopback, in the foreground (Tilt's serve_cmd; Ctrl-C or SIGTERM stops it).
# The same Debian postgresql-15 binaries the tests use (tests/harness/postgres.py).
#
#   hack/postgres.sh            # 127.0.0.1:15432, data in .cache/dev/postgres (kept across runs)
#
# Env: KF_DEV_DIR (data root, default <repo>/.cache/dev), KF_DEV_POSTGRES_PORT (15432),
# KUBEFABRIC_TEST_PG_BIN (/usr/lib/postgresql/15/bin).
# The first start creates the role and database backend-pg uses, with a DEV-ONLY password:
#   postgres://kubefabric:dev-only-insecure-password@127.0.0.1:15432/kubefabric
# PostgreSQL refuses to run as root: as root, it runs as the `postgres` OS user (the Debian
# package creates it), like the test harness. That user must be able to reach the data: when the
# checkout (or KF_DEV_DIR) sits in a directory it may not enter (a 0700 home, a `mktemp -d`
# folder), the data goes to a directory of its own under /var/tmp instead, and
# .cache/dev/postgres becomes a symbolic link to it (so `ls -l .cache/dev` shows where it is;
# deleting .cache/dev starts afresh, leaving the old data in /var/tmp to its cleaner).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${KF_DEV_DIR:-$repo/.cache/dev}/postgres"
port="${KF_DEV_POSTGRES_PORT:-15432}"
bin="${KUBEFABRIC_TEST_PG_BIN:-/usr/lib/postgresql/15/bin}"
password=dev-only-insecure-password

for b in initdb postgres; do
  [ -x "$bin/$b" ] || { echo "hack/postgres.sh: $bin/$b is missing: apt-get install postgresql-15" >&2; exit 1; }
done
as=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || { echo "hack/postgres.sh: no postgres OS user to run as (apt-get install postgresql-15)" >&2; exit 1; }
  as=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  mkdir -p "$(dirname "$root")"
  if [ ! -L "$root" ] && ! "${as[@]}" test -x "$(dirname "$root")"; then
    if [ -f "$root/data/PG_VERSION" ]; then
      echo "hack/postgres.sh: the postgres OS user cannot enter $(dirname "$root"), where this checkout's PostgreSQL data is: let it (chmod o+x on the private directory above) or delete $root" >&2
      exit 1
    fi
    rm -rf "$root"  # a start that failed there before: nothing in it
    elsewhere=$(mktemp -d /var/tmp/kubefabric-dev-postgres.XXXXXXXX)
    ln -s "$elsewhere" "$root"
    echo "hack/postgres.sh: the postgres OS user cannot enter $(dirname "$root") (a directory above it is private): PostgreSQL's data goes to $elsewhere, linked from $root"
  fi
  root=$(readlink -f "$root")
  mkdir -p "$root"
  chown postgres:postgres "$root"
fi
mkdir -p "$root"
chmod 0700 "$root"

if [ ! -f "$root/data/PG_VERSION" ]; then
  echo "hack/postgres.sh: initialising $root/data"
  "${as[@]}" "$bin/initdb" -D "$root/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C --no-sync --no-instructions >"$root/initdb.log" 2>&1 ||
    { cat "$root/initdb.log" >&2; exit 1; }
  # Single-user mode: no server, no port; one statement per line.
  printf '%s\n' "CREATE ROLE kubefabric LOGIN PASSWORD '$password'" \
    "CREATE DATABASE kubefabric OWNER kubefabric" |
    "${as[@]}" "$bin/postgres" --single -D "$root/data" postgres >"$root/bootstrap.log" 2>&1 ||
    { cat "$root/bootstrap.log" >&2; exit 1; }
fi

# A unix socket path holds at most 107 bytes: from a deep checkout, the socket goes to /tmp
# (.s.PGSQL.<port>: one per port, and only one server can have the port).
sockets="$root"
if [ $(( ${#root} + ${#port} + 10 )) -gt 100 ]; then
  sockets=/tmp
  echo "hack/postgres.sh: $root is too deep for a unix socket path: the socket is /tmp/.s.PGSQL.$port"
fi
echo "hack/postgres.sh: PostgreSQL on 127.0.0.1:$port (data $root/data)"
exec "${as[@]}" "$bin/postgres" -D "$root/data" -p "$port" -k "$sockets" \
  -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=64MB \
  -c log_min_messages=warning -c log_line_prefix='%m [%p] %d '
