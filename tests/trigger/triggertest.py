"""Helpers of the trigger tests: HTTPTrigger and object builders, the CLI, records in the store."""
from __future__ import annotations

import json
import subprocess
import sys

from harness.waiting import wait_for


def http_trigger(name: str, url: str, namespace: str = "default", **spec) -> dict:
    """An HTTPTrigger on example.com/v1 Widgets (a custom resource: JSON values) calling `url`."""
    body = {"resource": {"apiVersion": "example.com/v1", "kind": "Widget"},
            "url": {"static": url}, **spec}
    return {"apiVersion": "triggers.kubefabric.io/v1", "kind": "HTTPTrigger",
            "metadata": {"name": name, "namespace": namespace}, "spec": body}


def widget(name: str, namespace: str = "default", **fields) -> tuple[bytes, bytes]:
    """The key and JSON value kube-apiserver would store for a Widget."""
    obj = {"apiVersion": "example.com/v1", "kind": "Widget",
           "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                        "generation": 1, "labels": fields.pop("labels", {})}, **fields}
    return f"/registry/example.com/widgets/{namespace}/{name}".encode(), json.dumps(obj).encode()


def secret(name: str, data: dict, namespace: str = "default") -> tuple[bytes, bytes]:
    """A Secret as JSON (kube-apiserver stores built-ins as protobuf; the decoder reads both)."""
    import base64
    obj = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": name, "namespace": namespace, "uid": f"uid-secret-{name}"},
           "data": {k: base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode()
                    for k, v in data.items()}}
    return f"/registry/secrets/{namespace}/{name}".encode(), json.dumps(obj).encode()


def service(name: str, ports: list[dict], namespace: str = "default") -> tuple[bytes, bytes]:
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
           "spec": {"ports": ports}}
    return f"/registry/services/specs/{namespace}/{name}".encode(), json.dumps(obj).encode()


def deployment(name: str, namespace: str = "default", labels=None, available: int = 0) -> tuple[bytes, bytes]:
    obj = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "generation": 1,
                        "labels": labels or {}},
           "spec": {"replicas": 3}, "status": {"availableReplicas": available}}
    return f"/registry/deployments/{namespace}/{name}".encode(), json.dumps(obj).encode()


def run_cli(endpoint: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "kubefabric.cli", "trigger", *args,
                          "--endpoints", f"http://{endpoint}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def records(c, prefix: bytes) -> list[dict]:
    """The JSON records under a /kubefabric/trigger/ prefix (read directly: quicker than the CLI)."""
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    return [json.loads(kv.value) for kv in c.get(prefix, range_end=end).kvs]


def statuses(c) -> dict:
    return {r["trigger"]: r["status"] for r in records(c, b"/kubefabric/trigger/status/")}


def wait_until(fn, timeout: float = 60.0, what: str = "a condition"):
    return wait_for(fn, timeout, what, interval=0.3)
