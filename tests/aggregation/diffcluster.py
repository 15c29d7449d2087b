"""The differential setup: one kube-apiserver on KubeFabric serving the same resource twice,

  crd: widgets.crd.kubefabric.io, installed as a CustomResourceDefinition (kube-apiserver
       serves it itself, from its watch cache);
  agg: widgets.agg.kubefabric.io, the same manifest with another group, served by
       `kubefabric aggregation` behind an APIService (kube-apiserver only proxies),

so one test body runs against both through the same kube-apiserver, with kubectl and raw HTTP,
and the recorded answers must match once normalised: the group name, uid, timestamps,
resourceVersions, generated names, continue tokens and ages differ by nature.

The aggregated server is reached on loopback: an ExternalName Service ("localhost") and the
APIService's port (kube-apiserver resolves ExternalName services itself when aggregator
routing is off), so no traffic leaves 127.0.0.1.
"""
from __future__ import annotations

import contextlib
import copy
import json
import re
from pathlib import Path

import yaml

from harness.aggregation import CRDS, start_aggregation
from harness.kubeapiserver import KubeAPIServer
from harness.servers import start_kubefabric

GROUPS = {"crd": "crd.kubefabric.io", "agg": "agg.kubefabric.io"}
_MANIFEST = yaml.safe_load((CRDS / "widgets.yaml").read_text())


def manifest(side: str) -> dict:
    m = copy.deepcopy(_MANIFEST)
    group = GROUPS[side]
    m["metadata"]["name"] = f"widgets.{group}"
    m["spec"]["group"] = group
    return m


@contextlib.contextmanager
def aggregated_cluster(work: Path, tokens: tuple[str, ...] = (), prepare=None):
    """KubeFabric, kube-apiserver v1.37 on it with the aggregation layer (static `tokens`: lines
    of its tokens.csv; `prepare(api)` runs once it is up) and `kubefabric aggregation` serving
    agg.kubefabric.io with delegated authentication, registered as an APIService: (api, agg)."""
    kf = start_kubefabric(work)
    api = KubeAPIServer(work / "api", kf.url, aggregation=True,
                        extra=["--enable-aggregator-routing=false"])
    with (api.workdir / "tokens.csv").open("a") as f:
        f.writelines(f"{line}\n" for line in tokens)
    agg = None
    try:
        api.start(timeout=300)  # a loaded machine takes minutes to bootstrap RBAC
        if prepare is not None:
            prepare(api)
        agg = start_aggregation(work, kf.url, crd_dir=write_crd_dir(work / "crds"), extra=[
            "--auth", "delegated", "--kubeconfig", str(api.kubeconfig),
            "--requestheader-client-ca-file", str(api.front_proxy_ca.cert_file),
            "--requestheader-allowed-names", "front-proxy-client"])
        register(api, agg.port)
        yield api, agg
    finally:
        if agg is not None:
            agg.stop()
        api.stop()
        kf.stop()


def write_crd_dir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "widgets.yaml").write_text(yaml.safe_dump(manifest("agg"), sort_keys=False))
    return folder


def register(api, port: int, namespace: str = "default") -> None:
    """The APIService of agg.kubefabric.io/v1 on https://localhost:<port>."""
    group = GROUPS["agg"]
    api.apply(
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kubefabric-aggregation", "namespace": namespace},
         "spec": {"type": "ExternalName", "externalName": "localhost",
                  "ports": [{"name": "https", "port": port}]}},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
         "metadata": {"name": f"v1.{group}"},
         "spec": {"group": group, "version": "v1", "groupPriorityMinimum": 1000,
                  "versionPriority": 15, "insecureSkipTLSVerify": True,
                  "service": {"namespace": namespace, "name": "kubefabric-aggregation",
                              "port": port}}})

    def available():
        s = api.kubectl_json("get", "apiservice", f"v1.{group}")
        return any(c["type"] == "Available" and c["status"] == "True"
                   for c in s.get("status", {}).get("conditions", []))
    api.wait_for(available, 90, f"APIService v1.{group} Available", 0.5)


# ---- normalisation ----

_VOLATILE_META = ("uid", "creationTimestamp", "resourceVersion", "deletionTimestamp", "selfLink")
_RV_TEXT = re.compile(r"\b(resource ?version|ResourceVersion)(:? |=)\d+", re.I)
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


class Normaliser:
    """Makes one side's answer comparable with the other's."""

    def __init__(self, side: str):
        self.side = side
        self.group = GROUPS[side]
        self.names: dict[str, str] = {}

    def text(self, s: str) -> str:
        s = _UUID.sub("UUID", s)
        s = s.replace(self.group, "GROUP")
        s = s.replace(".".join(reversed(self.group.split("."))), "REVERSED-GROUP")
        for real, alias in self.names.items():
            s = s.replace(real, alias)
        return s

    def generated(self, name: str) -> None:
        """A generateName result: the same on both sides once normalised."""
        self.names[name] = f"{name[:-5]}XXXXX"

    def value(self, v, key: str = ""):
        if isinstance(v, dict):
            return self.object(v)
        if isinstance(v, (list, tuple)):
            return [self.value(x) for x in v]
        if isinstance(v, str):
            if v.lstrip().startswith(("{", "[")):
                try:
                    return self.value(json.loads(v))
                except ValueError:
                    pass
            return self.text(v)
        return v

    def object(self, obj: dict) -> dict:
        if obj.get("kind") == "Status":
            obj = _ordered_causes(obj)
        out = {}
        for k, v in obj.items():
            if k == "metadata" and isinstance(v, dict):
                out[k] = self.meta(v)
            elif k in ("continue",) and isinstance(v, str) and v:
                out[k] = "TOKEN"
            elif k == "time" and isinstance(v, str):
                out[k] = "TIME"
            elif k == "resourceVersion" and isinstance(v, str):
                out[k] = "RV"
            else:
                out[k] = self.value(v, k)
        return out

    def meta(self, m: dict) -> dict:
        out = {}
        for k, v in m.items():
            if k in _VOLATILE_META:
                out[k] = k.upper() if v is not None else None
            elif k == "continue":
                out[k] = "TOKEN" if v else v
            elif k == "managedFields":
                out[k] = [{**self.object(e), "time": "TIME"} for e in v]
            else:
                out[k] = self.value(v, k)
        return out

    def status(self, st: dict) -> dict:
        out = self.object(st)
        if "message" in out:
            out["message"] = _RV_TEXT.sub(r"\1\2N", out["message"])
        return out

    def table(self, t: dict) -> dict:
        out = self.object(t)
        ages = [i for i, c in enumerate(t.get("columnDefinitions") or []) if c["type"] == "date"]
        for row in out.get("rows") or []:
            for i in ages:
                row["cells"][i] = "AGE"
        return out

    def kubectl_text(self, s: str) -> str:
        lines = []
        for line in self.text(s).splitlines():
            lines.append(re.sub(r"\b\d+(s|m|h|d)(\d+(s|m|h))?\b", "AGE", line))
        return "\n".join(lines)


def _ordered_causes(st: dict) -> dict:
    """Validation errors come in Go map order: sort the causes and the message's list."""
    causes = (st.get("details") or {}).get("causes")
    if not causes:
        return st
    st = copy.deepcopy(st)
    st["details"]["causes"] = sorted(causes, key=lambda c: json.dumps(c, sort_keys=True))
    message = st.get("message", "")
    head, sep, _ = message.partition(" is invalid: [")
    if sep and message.endswith("]"):
        parts = sorted(f"{c.get('field')}: {c.get('message')}" for c in causes)
        st["message"] = f"{head}{sep}{', '.join(parts)}]"
    return st


def dumps(v) -> str:
    return json.dumps(v, indent=1, sort_keys=True)
