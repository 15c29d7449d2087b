#!/usr/bin/env bash
# A real kube-apiserver (built from Go modules, see kube-apiserver/build.sh) on kubefabric or on
# etcd, driven with kubectl; every step timed. See apiserver_scenario.py for the steps.
#
#   tests/conformance/apiserver_scenario.sh [kubefabric|etcd] [--keep] [--compaction-interval N]
#
# Builds kube-apiserver once (~/.cache/kubefabric-tools/kube-apiserver-<version>), starts the
# storage server and kube-apiserver on free loopback ports with fresh data, generates the
# service-account keys and an admin token per run, and exits non-zero on any failed step.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
server=kubefabric
args=()
for a in "$@"; do
    case "$a" in
        kubefabric|etcd) server=$a ;;
        *) args+=("$a") ;;
    esac
done
command -v kubectl >/dev/null || { echo "kubectl is not installed (apt-get install kubectl)" >&2; exit 2; }
kas=$(bash "$here/kube-apiserver/build.sh" | tail -n1)
extra=()
if [ "$server" = etcd ]; then
    if [ -n "${KUBEFABRIC_TEST_ETCD:-}" ]; then etcd_bin=$KUBEFABRIC_TEST_ETCD
    else etcd_bin="$(bash "$repo/../shared/tools/etcd/build.sh" | tail -n1)/etcd"; fi
    extra=(--etcd "$etcd_bin")
fi
(cd "$repo" && uv sync --frozen --quiet) >&2
echo "kube-apiserver: $("$kas" --version)   storage: $server" >&2
cd "$repo"
exec uv run --frozen --no-sync python "$here/apiserver_scenario.py" \
    --server "$server" --kube-apiserver "$kas" "${extra[@]}" "${args[@]}"
