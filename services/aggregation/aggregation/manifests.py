"""`kubefabric aggregation manifests`: the objects that register the server in a cluster, as
one YAML stream for `kubectl apply -f -`.

deploy/base/aggregation is the same set for the repository's kustomize overlays; the pod
template, ports, probes, RBAC and APIService written here must stay what it declares
(tests/platform/test_manifests.py compares the two)."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import yaml

from .crd import CRDError, load_directory
from .registry import Registry

log = logging.getLogger("kubefabric.aggregation")

CRD_MOUNT = "/etc/kubefabric/crds"
PORT, METRICS_PORT = 8443, 2680


def objects(registry: Registry, crd_files: dict[str, str], args) -> list[dict]:
    name, ns = args.name, args.namespace
    labels = {"app.kubernetes.io/name": "aggregation", "app.kubernetes.io/instance": name,
              "app.kubernetes.io/part-of": "kubefabric"}
    meta = {"name": name, "namespace": ns, "labels": labels}
    server_args = ["aggregation", "--crd-dir", CRD_MOUNT, "--kv-router", args.kv_router,
                   "--listen-address", f"0.0.0.0:{PORT}",
                   "--metrics-address", f"0.0.0.0:{METRICS_PORT}", "--log-format", "json"]
    if args.watch_hub:
        server_args += ["--watch-hub", args.watch_hub]
    out: list[dict] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {**meta, "name": f"{name}-crds"},
         "data": crd_files},
        # delegated authentication and authorization: TokenReview and SubjectAccessReview
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"{name}:system:auth-delegator", "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "system:auth-delegator"},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]},
        # the front proxy's CA and allowed names (kube-system/extension-apiserver-authentication)
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": f"{name}:auth-reader", "namespace": "kube-system", "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": "extension-apiserver-authentication-reader"},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]},
        _deployment(meta, labels, args.image, args.replicas, server_args, name),
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta,
         "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta,
         "spec": {"selector": labels, "ports": [
             {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"},
             {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}]}},
    ]
    for group in registry.groups():
        for version in registry.group_versions(group):
            out.append({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                        "metadata": {"name": f"{version}.{group}", "labels": labels},
                        "spec": {"group": group, "version": version,
                                 "service": {"namespace": ns, "name": name, "port": 443},
                                 # the server makes a self-signed certificate unless given one;
                                 # set caBundle (and drop this) when you mount a real one
                                 "insecureSkipTLSVerify": True,
                                 "groupPriorityMinimum": args.group_priority_minimum,
                                 "versionPriority": args.version_priority}})
    for role, verbs in (("edit", ["create", "delete", "deletecollection", "get", "list", "patch",
                                  "update", "watch"]),
                        ("view", ["get", "list", "watch"])):
        rules = [{"apiGroups": [r.group], "resources": [r.plural, f"{r.plural}/status"],
                  "verbs": verbs} for r in registry.resources]
        out.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                    "metadata": {"name": f"{name}:{role}", "labels": {
                        **labels, f"rbac.authorization.k8s.io/aggregate-to-{role}": "true",
                        **({"rbac.authorization.k8s.io/aggregate-to-admin": "true"}
                           if role == "edit" else {})}},
                    "rules": rules})
    return out


def _deployment(meta: dict, labels: dict, image: str, replicas: int, server_args: list[str],
                name: str) -> dict:
    def probe(path: str, period: int, failures: int, timeout: int | None = 3) -> dict:
        return {"httpGet": {"path": path, "port": "https", "scheme": "HTTPS"},
                "periodSeconds": period, **({"timeoutSeconds": timeout} if timeout else {}),
                "failureThreshold": failures}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {
            "replicas": replicas, "revisionHistoryLimit": 5, "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels, "annotations": {
                    "prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT),
                    "prometheus.io/path": "/metrics"}},
                "spec": {
                    "serviceAccountName": name,
                    # delegated auth calls kube-apiserver with this token
                    "automountServiceAccountToken": True,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                        "runAsGroup": 10001, "fsGroup": 10001,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "aggregation", "image": image, "args": server_args,
                        "ports": [{"name": "https", "containerPort": PORT, "protocol": "TCP"},
                                  {"name": "metrics", "containerPort": METRICS_PORT,
                                   "protocol": "TCP"}],
                        "startupProbe": probe("/livez", 2, 30, timeout=None),
                        "livenessProbe": probe("/livez", 10, 3),
                        "readinessProbe": probe("/readyz", 5, 2),
                        # /tmp: the self-signed certificate and the front proxy's CA are written there
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                                         {"name": "crds", "mountPath": CRD_MOUNT, "readOnly": True}],
                        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"},
                                      "limits": {"cpu": "1", "memory": "512Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": False,
                                            "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}}],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                                {"name": "crds", "configMap": {"name": f"{name}-crds"}}]}}}}


def run(args) -> int:
    if not args.crd_dir:
        print("kubefabric aggregation manifests: --crd-dir (or KUBEFABRIC_CRD_DIR) is required",
              file=sys.stderr)
        return 2
    try:
        resources = load_directory(args.crd_dir)
    except (CRDError, OSError) as err:
        print(f"kubefabric aggregation manifests: {err}", file=sys.stderr)
        return 2
    files = {p.name: p.read_text() for p in sorted(Path(args.crd_dir).iterdir())
             if p.suffix in (".yaml", ".yml", ".json", ".py")}
    docs = objects(Registry(resources), files, args)
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True))
    return 0
