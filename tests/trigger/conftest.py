"""Trigger test fixtures: a recording receiver and `kubefabric trigger` processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from harness.servers import Server, die_with_parent, free_port
from receiver import Receiver


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def wait_http(url: str, proc, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"trigger exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"trigger not ready after {timeout}s:\n{log.read_text()}")


@pytest.fixture
def start_trigger(tmp_path):
    started: list[Server] = []

    def start(endpoint: str, triggers=None, name: str = "r0", extra=(), cluster: bool = False,
              wait: bool = True) -> Server:
        """`kubefabric trigger` against `endpoint` with `triggers` (HTTPTrigger dicts, written to
        a file) as replica `name`; waits for /readyz."""
        d = tmp_path / f"trigger-{name}-{len(started)}"
        d.mkdir()
        argv = [sys.executable, "-m", "kubefabric.cli", "trigger", "--endpoints", f"http://{endpoint}",
                "--replica-name", name, "--listen-address", f"127.0.0.1:{free_port()}",
                "--checkpoint-interval", "200ms", "--lease-ttl", "3",
                "--cluster-triggers", "true" if cluster else "false", *extra]
        if triggers:
            f = d / "triggers.yaml"
            f.write_text(yaml.safe_dump_all(triggers))
            argv += ["--triggers", str(f)]
        log = d / "trigger.log"
        proc = subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=d,
                                preexec_fn=die_with_parent)
        s = Server("trigger", argv[argv.index("--listen-address") + 1], proc, d, log, argv)
        started.append(s)
        if wait:
            wait_http(f"http://{s.endpoint}/readyz", proc, log)
        return s

    yield start
    for s in started:
        s.stop()
        if s.proc.returncode not in (0, -9, None) or os.environ.get("KF_TRIGGER_LOGS"):
            print(f"trigger exited {s.proc.returncode}:\n{s.log()[-4000:]}")


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
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)
