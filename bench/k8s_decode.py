#!/usr/bin/env python3
"""What kubefabric.k8s costs per object: decode() and the index's cheap path summarize().

    uv run python bench/k8s_decode.py [--iterations 2000] [--json FILE]

Starts `kubefabric serve` and a real kube-apiserver (the test harness; kube-apiserver is built
once by tests/conformance/kube-apiserver/build.sh), creates typical objects with kubectl — a
Deployment's Pod (protobuf), a ConfigMap of about 1 KiB (protobuf), a custom resource of about
1 KiB (JSON) — reads their stored values through the etcd API, and times, per object (best of 5
rounds of --iterations calls, CPU time of this process): decode(), summarize() with labels, name, namespace and
one field path, and the floor under each: json.loads of the value, or protobuf parsing of the
envelope and the object without rendering it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from harness.kubeapiserver import on_kubefabric
from kubefabric.k8s import decode, gojson, object_key, summarize
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.k8s.apimachinery.pkg.runtime.generated_pb2 import Unknown

GROUP = "bench.kubefabric.io"
NS = "bench"
CONTAINER = {"name": "app", "image": "registry.example/team/app:1.4.2",
             "args": ["--listen=:8080", "--log-format=json"],
             "ports": [{"name": "http", "containerPort": 8080}],
             "env": [{"name": "MODE", "value": "production"},
                     {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
             "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
             "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5},
             "livenessProbe": {"httpGet": {"path": "/live", "port": "http"}},
             "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}]}
OBJECTS = [
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": NS}},
    {"apiVersion": "v1", "kind": "Pod",
     "metadata": {"name": "app-7d9f8b6c5d-x2x7q", "namespace": NS,
                  "labels": {"app": "app", "pod-template-hash": "7d9f8b6c5d", "tier": "backend"},
                  "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-02T03:04:05Z"}},
     "spec": {"containers": [CONTAINER], "nodeName": "node-1",
              "volumes": [{"name": "config", "configMap": {"name": "app-config"}}]}},
    {"apiVersion": "v1", "kind": "ConfigMap",
     "metadata": {"name": "app-config", "namespace": NS, "labels": {"app": "app"}},
     "data": {f"key-{i}": "v" * 80 for i in range(10)}},
    {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
     "metadata": {"name": f"widgets.{GROUP}"},
     "spec": {"group": GROUP, "scope": "Namespaced",
              "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
              "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                  "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}},
]
CR = {"apiVersion": f"{GROUP}/v1", "kind": "Widget",
      "metadata": {"name": "w-1", "namespace": NS, "labels": {"app": "app", "customer": "acme"}},
      "spec": {"customer": "acme", "size": 3, "zones": ["a", "b", "c"],
               "settings": {f"s{i}": "x" * 60 for i in range(10)}},
      "status": {"phase": "Ready"}}
CASES = [("Pod (protobuf)", "", "pods", "app-7d9f8b6c5d-x2x7q", "spec.nodeName"),
         ("ConfigMap 1 KiB (protobuf)", "", "configmaps", "app-config", "metadata.name"),
         ("custom resource 1 KiB (JSON)", GROUP, "widgets", "w-1", "spec.customer")]


def per_call_us(fn, iterations: int) -> float:
    """CPU time per call (process time: on a shared machine wall time counts the others' work)."""
    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(iterations):
            fn()
        best = min(best, time.process_time() - t0)
    return best / iterations * 1e6


def parse_only(value: bytes):
    if not value.startswith(b"k8s\x00"):
        return json.loads(value)
    u = Unknown()
    u.ParseFromString(value[4:])
    msg = gojson.message_class(gojson.kind_message(u.typeMeta.apiVersion, u.typeMeta.kind))()
    msg.ParseFromString(u.raw)
    return msg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--dump", help="also write each stored value (key, mod_revision, value) to "
                                   "this folder, for profiling without a kube-apiserver")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kf-bench-k8s-"))
    with on_kubefabric(work, NS, OBJECTS, f"/apis/{GROUP}/v1/namespaces/{NS}/widgets") as (api, client):
        api.apply(CR)
        results = []
        print(f"{'object':<30} {'bytes':>6} {'decode':>9} {'summarize':>10} {'parse only':>11}   (µs per object)")
        for label, group, resource, name, path in CASES:
            key = object_key(group, resource, NS, name)
            kv = client.kv.Range(pb.RangeRequest(key=key), timeout=10).kvs[0]
            value, rev = kv.value, kv.mod_revision
            if args.dump:
                Path(args.dump).mkdir(parents=True, exist_ok=True)
                (Path(args.dump) / f"{resource}.json").write_text(json.dumps(
                    {"key": key.decode(), "mod_revision": rev, "value": value.hex()}))
            decode(key, value, rev)           # compile the renderers first
            row = {"object": label, "bytes": len(value),
                   "decode_us": per_call_us(lambda: decode(key, value, rev), args.iterations),
                   "summarize_us": per_call_us(lambda: summarize(key, value, (path,)), args.iterations),
                   "parse_only_us": per_call_us(lambda: parse_only(value), args.iterations)}
            results.append(row)
            print(f"{label:<30} {row['bytes']:>6} {row['decode_us']:>9.1f} {row['summarize_us']:>10.1f} "
                  f"{row['parse_only_us']:>11.1f}")
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, {platform.python_version()}")
        if args.json:
            Path(args.json).write_text(json.dumps({"results": results, "loadavg": os.getloadavg()[0]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
