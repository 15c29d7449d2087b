#!/usr/bin/env bash
# A real kube-apiserver for the dev loop, in the foreground (Tilt's serve_cmd), storing in
# kv-router: Kubernetes on KubeFabric without a cluster. Built once from Go modules by
# tests/conformance/kube-apiserver/build.sh (10-15 minutes the first time on 2 cores, cached in
# ~/.cache/kubefabric-tools), with the loopback settings of DESIGN §7.
#
#   hack/kube-apiserver.sh
#   export KUBECONFIG=.cache/dev/kube/kubeconfig; kubectl get namespaces
#
# Env: KF_DEV_DIR (default <repo>/.cache/dev), KF_DEV_ROUTER_PORT (2379), KF_DEV_APISERVER_PORT
# (6443). $KF_DEV_DIR/kube/ holds the admin kubeconfig (a static DEV-ONLY token), the
# service-account key pair and the self-signed serving certificate.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="${KF_DEV_DIR:-$repo/.cache/dev}/kube"
port="${KF_DEV_APISERVER_PORT:-6443}"
binary="$(bash "$repo/tests/conformance/kube-apiserver/build.sh" | tail -n1)"
"$repo/hack/kubeconfig.sh" >/dev/null
exec "$binary" --etcd-servers="http://127.0.0.1:${KF_DEV_ROUTER_PORT:-2379}" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$port" \
  --cert-dir="$dir/certs" --endpoint-reconciler-type=none \
  --token-auth-file="$dir/tokens.csv" --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$dir/sa.pub" --service-account-signing-key-file="$dir/sa.key" \
  --service-cluster-ip-range=10.96.0.0/16 --enable-aggregator-routing=true --v=1
