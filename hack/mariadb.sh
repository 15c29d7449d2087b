#!/usr/bin/env bash
# A dev MariaDB on loopback, in the foreground (Tilt's serve_cmd; Ctrl-C or SIGTERM stops it).
# The same Debian mariadb-server binaries the tests use (tests/harness/mariadb.py).
#
#   hack/mariadb.sh             # 127.0.0.1:13306, data in .cache/dev/mariadb (kept across runs)
#
# Env: KF_DEV_DIR (data root, default <repo>/.cache/dev), KF_DEV_MARIADB_PORT (13306).
# Every start makes sure the database and user backend-mysql uses exist, with a DEV-ONLY password:
#   mysql://kubefabric:dev-only-insecure-password@127.0.0.1:13306/kubefabric
# As root, mariadbd runs as root (--user=root), as in the test harness.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${KF_DEV_DIR:-$repo/.cache/dev}/mariadb"
port="${KF_DEV_MARIADB_PORT:-13306}"
password=dev-only-insecure-password
hint="apt-get install mariadb-server (it provides mariadbd and mariadb-install-db)"

mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)
install_db=$(command -v mariadb-install-db || echo /usr/bin/mariadb-install-db)
for b in "$mariadbd" "$install_db"; do
  [ -x "$b" ] || { echo "hack/mariadb.sh: $(basename "$b") is missing: $hint" >&2; exit 1; }
done
user=$(id -un)
mkdir -p "$root"
# A unix socket path holds at most 107 bytes: from a deep checkout, the socket goes to /tmp (one
# per port, and only one server can have the port).
socket="$root/mariadb.sock"
if [ "${#socket}" -gt 100 ]; then
  socket="/tmp/kubefabric-dev-mariadb-$port.sock"
  echo "hack/mariadb.sh: $root is too deep for a unix socket path: the socket is $socket"
fi

if [ ! -d "$root/data/mysql" ]; then
  echo "hack/mariadb.sh: initialising $root/data"
  "$install_db" --no-defaults --user="$user" --datadir="$root/data" \
    --auth-root-authentication-method=normal --skip-test-db --tmpdir="$root" >"$root/install.log" 2>&1 ||
    { cat "$root/install.log" >&2; exit 1; }
fi
# Runs at every start, before the server accepts connections.
cat >"$root/init.sql" <<SQL
CREATE DATABASE IF NOT EXISTS kubefabric;
CREATE USER IF NOT EXISTS 'kubefabric'@'127.0.0.1' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON kubefabric.* TO 'kubefabric'@'127.0.0.1';
SQL

echo "hack/mariadb.sh: MariaDB on 127.0.0.1:$port (data $root/data)"
exec "$mariadbd" --no-defaults --user="$user" --datadir="$root/data" --socket="$socket" \
  --port="$port" --bind-address=127.0.0.1 --pid-file="$root/mariadb.pid" --tmpdir="$root" \
  --skip-name-resolve --skip-log-bin --character-set-server=utf8mb4 --max-allowed-packet=64M \
  --innodb-buffer-pool-size=128M --init-file="$root/init.sql"
