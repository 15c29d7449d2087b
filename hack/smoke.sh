#!/usr/bin/env bash
# Smoke test through kv-router's etcd API with etcdctl (Debian's etcd-client): put, get, a
# prefix range and endpoint status. Exits non-zero on any mismatch.
#
#   hack/smoke.sh [endpoint]    # default 127.0.0.1:${KF_DEV_ROUTER_PORT:-2379}
set -euo pipefail
endpoint="${1:-127.0.0.1:${KF_DEV_ROUTER_PORT:-2379}}"
command -v etcdctl >/dev/null || { echo "smoke: etcdctl is missing: apt-get install etcd-client" >&2; exit 1; }
export ETCDCTL_API=3
ctl() { etcdctl --endpoints "$endpoint" --dial-timeout 5s --command-timeout 10s "$@"; }

value="smoke-$(date +%s)-$$"
ctl put /kubefabric-smoke/a "$value" >/dev/null
ctl put /kubefabric-smoke/b "$value-b" >/dev/null
got=$(ctl get --print-value-only /kubefabric-smoke/a)
[ "$got" = "$value" ] || { echo "smoke: get /kubefabric-smoke/a returned '$got', expected '$value'" >&2; exit 1; }
count=$(ctl get --prefix --keys-only /kubefabric-smoke/ | grep -c '^/kubefabric-smoke/' || true)
[ "$count" = 2 ] || { echo "smoke: prefix count $count, expected 2" >&2; exit 1; }
ctl del --prefix /kubefabric-smoke/ >/dev/null
ctl endpoint status -w table
echo "smoke: put/get/range/delete through kv-router at $endpoint: ok"
