#!/usr/bin/env bash
# The dev loop's Kubernetes credentials, created once and printed as the kubeconfig's path:
# $KF_DEV_DIR/kube/{tokens.csv,kubeconfig,sa.key,sa.pub}. The admin token is a DEV-ONLY value.
# Env: KF_DEV_DIR (default <repo>/.cache/dev), KF_DEV_APISERVER_PORT (6443).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="${KF_DEV_DIR:-$repo/.cache/dev}/kube"
port="${KF_DEV_APISERVER_PORT:-6443}"
token=dev-only-insecure-admin-token
mkdir -p "$dir"
chmod 0700 "$dir"
[ -f "$dir/tokens.csv" ] || echo "$token,admin,admin,\"system:masters\"" >"$dir/tokens.csv"
if [ ! -f "$dir/sa.key" ]; then
  openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
  openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
fi
tmp="$(mktemp "$dir/kubeconfig.XXXXXX")"
cat >"$tmp" <<YAML
apiVersion: v1
kind: Config
current-context: kubefabric-dev
clusters:
  - name: kubefabric-dev
    cluster:
      server: https://127.0.0.1:$port
      insecure-skip-tls-verify: true   # kube-apiserver's self-signed loopback certificate
users:
  - name: admin
    user:
      token: $token
contexts:
  - name: kubefabric-dev
    context: {cluster: kubefabric-dev, user: admin, namespace: default}
YAML
if cmp -s "$tmp" "$dir/kubeconfig"; then rm -f "$tmp"; else mv "$tmp" "$dir/kubeconfig"; fi
echo "$dir/kubeconfig"
