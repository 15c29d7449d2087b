#!/usr/bin/env bash
# watch-hub for the dev loop, in the foreground (Tilt's serve_cmd): reads both shards' event
# streams from the dev NATS and serves the etcd Watch API to kv-router, on the same demo
# topology kv-router routes by (hack/dev-topology.sh).
#
#   hack/watch-hub.sh
#
# Env: KF_DEV_DIR (default <repo>/.cache/dev), KF_DEV_HUB_PORT (2480), KF_DEV_HUB_METRICS_PORT
# (2580, /metrics), KF_DEV_NATS_PORT (14222), KF_DEV_PG_SHARD_PORT (2391),
# KF_DEV_MYSQL_SHARD_PORT (2392).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
topology="$("$repo/hack/dev-topology.sh")"
cd "$repo"
exec uv run --frozen --no-sync kubefabric watch-hub --topology "$topology" \
  --nats-url "nats://127.0.0.1:${KF_DEV_NATS_PORT:-14222}" \
  --listen-address "127.0.0.1:${KF_DEV_HUB_PORT:-2480}" \
  --metrics-address "127.0.0.1:${KF_DEV_HUB_METRICS_PORT:-2580}"
