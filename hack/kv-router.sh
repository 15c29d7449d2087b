#!/usr/bin/env bash
# kv-router for the dev loop, in the foreground (Tilt's serve_cmd): the etcd API on the demo
# topology (hack/dev-topology.sh writes it for the current ports), Watch streams served by the
# watch-hub.
#
#   hack/kv-router.sh
#
# Env: KF_DEV_DIR (default <repo>/.cache/dev), KF_DEV_ROUTER_PORT (2379), KF_DEV_PG_SHARD_PORT
# (2391), KF_DEV_MYSQL_SHARD_PORT (2392), KF_DEV_HUB_PORT (2480), KF_DEV_ROUTER_METRICS_PORT
# (2381, /metrics).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="${KF_DEV_DIR:-$repo/.cache/dev}"
topology="$("$repo/hack/dev-topology.sh")"
cd "$repo"
exec uv run --frozen --no-sync kubefabric serve --topology "$topology" \
  --listen-client-urls "http://127.0.0.1:${KF_DEV_ROUTER_PORT:-2379}" --data-dir "$dir/router" \
  --watch-hub "grpc://127.0.0.1:${KF_DEV_HUB_PORT:-2480}" \
  --metrics-address "127.0.0.1:${KF_DEV_ROUTER_METRICS_PORT:-2381}"
