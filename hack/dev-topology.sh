#!/usr/bin/env bash
# Writes the dev loop's demo topology (two shard services, DESIGN §4) for the current ports and
# prints its path. kv-router and watch-hub both read this one file (hack/kv-router.sh,
# hack/watch-hub.sh); the write is atomic, so either may run it while the other reads.
#
#   hack/dev-topology.sh    # -> $KF_DEV_DIR/topology.yaml
#
# Env: KF_DEV_DIR (default <repo>/.cache/dev), KF_DEV_PG_SHARD_PORT (2391),
# KF_DEV_MYSQL_SHARD_PORT (2392), KF_DEV_SHOP_SHARD_PORT (2393). Routing, checked by hack/smoke.sh
# (and the example's rule by its end-to-end test, tests/example_shop):
#   /registry/events/... and /kubefabric-smoke/mysql/...  -> shard mysql-b (backend-mysql)
#   /registry/shop.example.com/orders/... (the example's Orders, examples/shop/topology.yaml)
#                                                         -> shard shop-orders (backend-pg, own database)
#   everything else                                       -> shard pg-a (backend-pg, the default)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="${KF_DEV_DIR:-$repo/.cache/dev}"
topology="$dir/topology.yaml"
mkdir -p "$dir"
tmp="$(mktemp "$topology.XXXXXX")"
cat >"$tmp" <<YAML
# Written by hack/dev-topology.sh for the dev loop (docs/topology.md).
default: pg-a
shards:
  - name: pg-a
    endpoint: grpc://127.0.0.1:${KF_DEV_PG_SHARD_PORT:-2391}
  - name: mysql-b
    endpoint: grpc://127.0.0.1:${KF_DEV_MYSQL_SHARD_PORT:-2392}
  - name: shop-orders
    endpoint: grpc://127.0.0.1:${KF_DEV_SHOP_SHARD_PORT:-2393}
rules:
  - prefix: /registry/events/
    shard: mysql-b
  - prefix: /kubefabric-smoke/mysql/
    shard: mysql-b
  - customresource: {group: shop.example.com, resource: orders}
    shard: shop-orders
YAML
chmod 644 "$tmp"
# Same content: leave the file (and its mtime) alone, so a running reader sees no change.
if cmp -s "$tmp" "$topology"; then rm -f "$tmp"; else mv "$tmp" "$topology"; fi
echo "$topology"
