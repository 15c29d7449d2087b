#!/usr/bin/env bash
# A dev NATS server with JetStream on loopback, in the foreground (Tilt's serve_cmd).
# The event bus of DESIGN §1/§5: the shard leaders publish their committed txns to it (stream
# KF_<shard>), the watch-hub reads them.
#
#   hack/nats.sh                # client 127.0.0.1:14222, monitoring http://127.0.0.1:18222
#
# Env: KF_DEV_DIR (data root, default <repo>/.cache/dev), KF_DEV_NATS_PORT (14222),
# KF_DEV_NATS_HTTP_PORT (18222).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${KF_DEV_DIR:-$repo/.cache/dev}/nats"
port="${KF_DEV_NATS_PORT:-14222}"
http_port="${KF_DEV_NATS_HTTP_PORT:-18222}"
command -v nats-server >/dev/null || { echo "hack/nats.sh: nats-server is missing: apt-get install nats-server" >&2; exit 1; }
mkdir -p "$root"
exec nats-server --jetstream --store_dir "$root" --addr 127.0.0.1 --port "$port" \
  --http_port "$http_port" --server_name kubefabric-dev
