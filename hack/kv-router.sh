#!/usr/bin/env bash
# kv-router for the dev loop, in the foreground (Tilt's serve_cmd): writes the demo topology
# (two shard services, DESIGN §4) for the current ports, then serves the etcd API with it.
#
#   hack/kv-router.sh
#
# Env: KF_DEV_DIR (default <repo>/.cache/dev), KF_DEV_ROUTER_PORT (2379), KF_DEV_PG_SHARD_PORT
# (2391), KF_DEV_MYSQL_SHARD_PORT (2392), KF_DEV_ROUTER_METRICS_PORT (2381, /metrics). Routing, checked by hack/smoke.sh:
#   /registry/events/... and /kubefabric-smoke/mysql/...  -> shard mysql-b (backend-mysql)
#   everything else                                       -> shard pg-a (backend-pg, the default)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="${KF_DEV_DIR:-$repo/.cache/dev}"
topology="$dir/topology.yaml"
mkdir -p "$dir"
cat >"$topology.new" <<YAML
# Written by hack/kv-router.sh for the dev loop (docs/topology.md).
default: pg-a
shards:
  - name: pg-a
    endpoint: grpc://127.0.0.1:${KF_DEV_PG_SHARD_PORT:-2391}
  - name: mysql-b
    endpoint: grpc://127.0.0.1:${KF_DEV_MYSQL_SHARD_PORT:-2392}
rules:
  - prefix: /registry/events/
    shard: mysql-b
  - prefix: /kubefabric-smoke/mysql/
    shard: mysql-b
YAML
mv "$topology.new" "$topology"
cd "$repo"
exec uv run --frozen --no-sync kubefabric serve --topology "$topology" \
  --listen-client-urls "http://127.0.0.1:${KF_DEV_ROUTER_PORT:-2379}" --data-dir "$dir/router" \
  --metrics-address "127.0.0.1:${KF_DEV_ROUTER_METRICS_PORT:-2381}"
