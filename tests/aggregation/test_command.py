"""`kubefabric aggregation`: --help, KUBEFABRIC_* settings, one-line start-up errors (exit 2),
and `kubefabric aggregation manifests` (valid Kubernetes 1.37 objects that register the server)."""
from __future__ import annotations

import os
import subprocess
import sys

import yaml

from harness.aggregation import CRDS


def kubefabric(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubefabric.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_help_names_every_flag_and_its_variable():
    out = kubefabric("aggregation", "--help").stdout
    for flag in ("--crd-dir", "--kv-router", "--watch-hub", "--listen-address", "--auth",
                 "--requestheader-client-ca-file", "--metrics-address"):
        assert flag in out
    assert "KUBEFABRIC_CRD_DIR" in out and "manifests" in out


def test_startup_errors_are_one_line(tmp_path):
    done = kubefabric("aggregation")
    assert done.returncode == 2
    assert done.stderr.strip().endswith("--crd-dir (or KUBEFABRIC_CRD_DIR) is required: the "
                                        "directory of CustomResourceDefinition manifests to serve")
    (tmp_path / "bad.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    done = kubefabric("aggregation", env={"KUBEFABRIC_CRD_DIR": str(tmp_path)})
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "expected apiVersion apiextensions.k8s.io/v1, kind CustomResourceDefinition" in done.stderr
    done = kubefabric("aggregation", "--crd-dir", str(CRDS), "--tls-cert-file", "/nonexistent")
    assert done.returncode == 2 and "--tls-cert-file and --tls-private-key-file go together" in done.stderr


def test_manifests_register_the_server():
    import kubernetes_validate
    done = kubefabric("aggregation", "manifests", "--crd-dir", str(CRDS), "--namespace", "platform",
                      "--image", "registry.example/kubefabric:1.0", "--kv-router", "http://kv-router:2379")
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("APIService", "v1.example.kubefabric.io") in kinds
    assert {"Deployment", "Service", "ServiceAccount", "ConfigMap", "ClusterRoleBinding",
            "RoleBinding"} <= {k for k, _ in kinds}
    for d in docs:
        kubernetes_validate.validate(d, "1.37.0", strict=True)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/kubefabric:1.0"
    assert container["args"][:3] == ["aggregation", "--crd-dir", "/etc/kubefabric/crds"]
    assert "http://kv-router:2379" in container["args"]
    crds = next(d for d in docs if d["kind"] == "ConfigMap")
    assert "widgets.yaml" in crds["data"]
    delegator = next(d for d in docs if d["kind"] == "ClusterRoleBinding")
    assert delegator["roleRef"]["name"] == "system:auth-delegator"
    done = kubefabric("aggregation", "manifests")
    assert done.returncode == 2 and "--crd-dir" in done.stderr
