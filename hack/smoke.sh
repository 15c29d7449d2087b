#!/usr/bin/env bash
# Smoke test through kv-router's etcd API with etcdctl (Debian's etcd-client), on both shards of
# the dev topology (hack/kv-router.sh; deploy/overlays/dev has the same rules):
#   /kubefabric-smoke/pg/...     -> shard pg-a    (backend-pg, the default shard)
#   /kubefabric-smoke/mysql/...  -> shard mysql-b (backend-mysql)
# put and get on each shard, one range across both, a delete spanning both refused naming both
# shards (proof that two shards serve), a watch event from each, a live watch across both (kv-router
# serves Watch from the watch-hub), per-shard deletes, endpoint status. Exits non-zero on any
# mismatch.
#
#   hack/smoke.sh [endpoint]    # default 127.0.0.1:${KF_DEV_ROUTER_PORT:-2379}
#
# KF_SMOKE_HUB_METRICS (a watch-hub's /metrics URL), when set, must show Watch streams served by
# that hub: the proof that kv-router's watches went through it.
set -euo pipefail
endpoint="${1:-127.0.0.1:${KF_DEV_ROUTER_PORT:-2379}}"
command -v etcdctl >/dev/null || { echo "smoke: etcdctl is missing: apt-get install etcd-client" >&2; exit 1; }
export ETCDCTL_API=3
ctl() { etcdctl --endpoints "$endpoint" --dial-timeout 5s --command-timeout 10s "$@"; }
fail() { echo "smoke: $*" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

value="smoke-$(date +%s)-$$"
for shard in pg mysql; do
  ctl put "/kubefabric-smoke/$shard/a" "$value-$shard" >/dev/null
  got=$(ctl get --print-value-only "/kubefabric-smoke/$shard/a")
  [ "$got" = "$value-$shard" ] || fail "get /kubefabric-smoke/$shard/a returned '$got', expected '$value-$shard'"
done
keys=$(ctl get --prefix --keys-only /kubefabric-smoke/ | grep '^/kubefabric-smoke/' | tr '\n' ' ')
[ "$keys" = "/kubefabric-smoke/mysql/a /kubefabric-smoke/pg/a " ] || fail "range across both shards returned '$keys'"
if ctl del --prefix /kubefabric-smoke/ >"$tmp/del" 2>&1; then
  fail "a delete spanning two shards was accepted: $(cat "$tmp/del")"
fi
grep -q "shards mysql-b, pg-a" "$tmp/del" || fail "cross-shard delete refused without naming both shards: $(cat "$tmp/del")"

# One watch event from each shard, through the router.
for shard in pg mysql; do
  rev=$(ctl get "/kubefabric-smoke/$shard/a" -w fields | sed -n 's/^"Revision" : //p')
  ctl put "/kubefabric-smoke/$shard/w" "$value" >/dev/null
  out="$tmp/watch-$shard"  # one file per watch: nothing of the previous one can interfere
  : >"$out"
  timeout 10 etcdctl --endpoints "$endpoint" watch --rev "$((rev + 1))" --prefix "/kubefabric-smoke/$shard/w" >>"$out" 2>&1 &
  watcher=$!
  for _ in $(seq 50); do grep -qs "^$value\$" "$out" && break; sleep 0.1; done
  kill "$watcher" 2>/dev/null || true; wait "$watcher" 2>/dev/null || true
  grep -qs "^PUT$" "$out" && grep -qs "^$value\$" "$out" ||
    fail "no watch event on shard $shard from revision $((rev + 1)) in 5 s (watch output: '$(cat "$out" 2>&1)'; $tmp: $(ls "$tmp" 2>&1))"
done

# A live watch across both shards, through kv-router and so through the watch-hub: opened
# before the puts, it must deliver both events within 5 s. --rev pins its start, so an event
# that races the watch's creation is still delivered (from history), never lost.
rev=$(ctl get --prefix /kubefabric-smoke/ -w fields | sed -n 's/^"Revision" : //p' | head -n1)
timeout 15 etcdctl --endpoints "$endpoint" watch --rev "$((rev + 1))" --prefix /kubefabric-smoke/ >"$tmp/live" &
watcher=$!
sleep 1
ctl put /kubefabric-smoke/pg/live "$value-live" >/dev/null
ctl put /kubefabric-smoke/mysql/live "$value-live" >/dev/null
for _ in $(seq 50); do [ "$(grep -cs "^$value-live\$" "$tmp/live")" = 2 ] && break; sleep 0.1; done
kill "$watcher" 2>/dev/null || true; wait "$watcher" 2>/dev/null || true
for shard in pg mysql; do
  grep -q "^/kubefabric-smoke/$shard/live\$" "$tmp/live" || fail "no live watch event from shard $shard within 5 s: $(cat "$tmp/live")"
done
if [ -n "${KF_SMOKE_HUB_METRICS:-}" ]; then
  streams=$(curl -fsS --max-time 5 "$KF_SMOKE_HUB_METRICS" | awk '/^grpc_server_started_total\{/ && /grpc_service="etcdserverpb.Watch"/ { n += $2 } END { print n + 0 }')
  [ "$streams" != 0 ] || fail "the watch-hub at $KF_SMOKE_HUB_METRICS served no Watch stream: kv-router did not use it"
fi

for shard in pg mysql; do ctl del --prefix "/kubefabric-smoke/$shard/" >/dev/null; done
left=$(ctl get --prefix --keys-only /kubefabric-smoke/ | grep -c '^/kubefabric-smoke/' || true)
[ "$left" = 0 ] || fail "$left keys left after per-shard deletes"
ctl endpoint status -w table
echo "smoke: put/get on shards pg-a and mysql-b, a range across both, a cross-shard delete refused, a watch event from each, through kv-router at $endpoint: ok"
echo "smoke: a live watch across both shards through kv-router and the watch-hub: ok"
