#!/usr/bin/env bash
# The example app's Kubernetes objects for the dev loop (Tilt's shop-setup), against the dev
# kube-apiserver (hack/kube-apiserver.sh); idempotent:
#   - the Order CRD and the HTTPTrigger CRD, waited for until Established;
#   - namespace shop-demo and the HTTPTrigger price-orders: each Order ADDED (any namespace) to
#     the pricing function at http://127.0.0.1:$KF_DEV_SHOP_FUNCTION_PORT/ (the static-URL form of
#     examples/shop/deploy/app/trigger.yaml, which names the in-cluster Service);
#   - the REST layer's APIService v1alpha1.reports.shop.example.com, through a Service and an
#     EndpointSlice at this machine's first non-loopback IPv4 address (kube-apiserver refuses
#     loopback endpoints) on $KF_DEV_SHOP_REPORTS_PORT, where `kubefabric aggregation` serves
#     examples/shop/reports;
#   - then waits until the trigger (`kubefabric trigger --cluster-triggers`) reports the
#     HTTPTrigger Ready.
#
#   hack/shop-setup.sh
#
# Env: KF_DEV_DIR (default <repo>/.cache/dev; kube/kubeconfig), KF_DEV_SHOP_FUNCTION_PORT (8080),
# KF_DEV_SHOP_REPORTS_PORT (8444).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
export KUBECONFIG="${KF_DEV_DIR:-$repo/.cache/dev}/kube/kubeconfig"
function_port="${KF_DEV_SHOP_FUNCTION_PORT:-8080}"
reports_port="${KF_DEV_SHOP_REPORTS_PORT:-8444}"
cd "$repo"

kubectl apply -f examples/shop/crd/order.yaml -f deploy/crds/httptriggers.triggers.kubefabric.io.yaml
for crd in orders.shop.example.com httptriggers.triggers.kubefabric.io; do
  # not `kubectl wait`: it fails on a CRD whose status has no conditions yet
  for _ in $(seq 1 120); do
    [ "$(kubectl get crd "$crd" -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}')" = True ] && break
    sleep 0.5
  done
  [ "$(kubectl get crd "$crd" -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}')" = True ] \
    || { echo "hack/shop-setup.sh: CRD $crd not Established after 60s" >&2; exit 1; }
done

ip="$(ip -4 -o addr show scope global | awk '{split($4, a, "/"); print a[1]; exit}')"
[ -n "$ip" ] || { echo "hack/shop-setup.sh: this machine has no non-loopback IPv4 address for the APIService" >&2; exit 1; }
kubectl apply -f - <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: shop-demo}
---
apiVersion: triggers.kubefabric.io/v1
kind: HTTPTrigger
metadata: {name: price-orders, namespace: shop-demo}
spec:
  resource: {apiVersion: shop.example.com/v1, kind: Order}
  eventTypes: [ADDED]
  concurrency: 8
  url: {static: "http://127.0.0.1:${function_port}/"}
---
apiVersion: v1
kind: Service
metadata: {name: shop-reports, namespace: default}
spec:
  ports: [{name: https, port: 443, targetPort: ${reports_port}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: shop-reports
  namespace: default
  labels: {kubernetes.io/service-name: shop-reports}
addressType: IPv4
endpoints: [{addresses: ["${ip}"], conditions: {ready: true}}]
ports: [{name: https, port: ${reports_port}, protocol: TCP}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1alpha1.reports.shop.example.com}
spec:
  group: reports.shop.example.com
  version: v1alpha1
  groupPriorityMinimum: 1000
  versionPriority: 15
  insecureSkipTLSVerify: true   # the dev aggregation server's self-signed certificate
  service: {namespace: default, name: shop-reports, port: 443}
YAML
# the trigger (a Tilt dependency) starts watching Orders when it picks the HTTPTrigger up: orders
# created before that would not be delivered (no sendInitialEvents), so wait for Ready
ready='{.status.conditions[?(@.type=="Ready")].status}'
for _ in $(seq 1 120); do
  [ "$(kubectl get httptrigger price-orders -n shop-demo -o "jsonpath=$ready")" = True ] && break
  sleep 0.5
done
[ "$(kubectl get httptrigger price-orders -n shop-demo -o "jsonpath=$ready")" = True ] \
  || { echo "hack/shop-setup.sh: HTTPTrigger shop-demo/price-orders not Ready after 60s: is kubefabric trigger running?" >&2; exit 1; }
echo "hack/shop-setup.sh: the shop's CRDs, HTTPTrigger price-orders and APIService v1alpha1.reports.shop.example.com (https://${ip}:${reports_port}) are in place"
