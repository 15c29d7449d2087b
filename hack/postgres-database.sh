#!/usr/bin/env bash
# Creates a database owned by the dev role in the dev PostgreSQL (hack/postgres.sh) if it is
# missing; idempotent. The example's Orders shard (shard shop-orders) keeps its log in its own
# database beside pg-a's.
#
#   hack/postgres-database.sh shop_orders
#
# Env: KF_DEV_DIR (default <repo>/.cache/dev), KF_DEV_POSTGRES_PORT (15432),
# KUBEFABRIC_TEST_PG_BIN (/usr/lib/postgresql/15/bin).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
name="${1:?usage: hack/postgres-database.sh NAME}"
[[ "$name" =~ ^[a-z_][a-z0-9_]*$ ]] || { echo "hack/postgres-database.sh: $name: lowercase letters, digits and _ only" >&2; exit 2; }
root="${KF_DEV_DIR:-$repo/.cache/dev}/postgres"
port="${KF_DEV_POSTGRES_PORT:-15432}"
bin="${KUBEFABRIC_TEST_PG_BIN:-/usr/lib/postgresql/15/bin}"
as=()
[ "$(id -u)" = 0 ] && as=(setpriv --reuid=postgres --regid=postgres --init-groups --)
# where hack/postgres.sh put the socket: the data may live elsewhere (a link, when the postgres OS
# user cannot enter the checkout), and a deep path puts the socket in /tmp
[ -L "$root" ] && root="$(readlink -f "$root")"
sockets="$root"
[ $(( ${#root} + ${#port} + 10 )) -gt 100 ] && sockets=/tmp
cd /   # psql, as the postgres OS user, may not be able to stay in a private checkout
psql=("${as[@]}" "$bin/psql" -h "$sockets" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA)
if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$name'")" != 1 ]; then
  "${psql[@]}" -c "CREATE DATABASE $name OWNER kubefabric"
  echo "hack/postgres-database.sh: created database $name"
else
  echo "hack/postgres-database.sh: database $name exists"
fi
