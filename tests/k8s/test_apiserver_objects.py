"""decode() against a real kube-apiserver v1.37 on `kubefabric serve`: objects created with kubectl
(built-ins stored as protobuf, a CRD, custom resources stored as JSON), read raw through the etcd
API, must decode to exactly what the API serves (`kubectl get -o json --show-managed-fields`, or a
GET at the stored version); every object kube-apiserver writes on its own decodes too.

One kube-apiserver for the module (starting one takes seconds; the objects are independent)."""
from __future__ import annotations

import base64
import json

import pytest

from harness.client import Client
from harness.kubeapiserver import KubeAPIServer, on_kubefabric
from kubefabric.k8s import DecodeError, decode, object_key, parse_key, summarize
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

from harness.k8s_objects import CR_KIND, CRD, CRD2, GROUP, NS, objects

BINARY = bytes(range(256))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with on_kubefabric(tmp_path_factory.mktemp("k8s-decode"), NS, [CRD, CRD2],
                       f"/apis/{GROUP}/v1/namespaces/{NS}/widgets") as (api, client):
        api.kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                          "items": objects(BINARY)}))
        yield api, client


def raw_kv(client: Client, key: bytes):
    resp = client.kv.Range(pb.RangeRequest(key=key), timeout=10)
    assert resp.kvs, f"{key!r} is not stored"
    return resp.kvs[0]


def api_path(api_version: str, resource: str, namespace: str, name: str) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    ns = f"/namespaces/{namespace}" if namespace else ""
    return f"{base}{ns}/{resource}/{name}"


def served_and_decoded(api: KubeAPIServer, client: Client, key: bytes, path_for) -> tuple[dict, dict]:
    """(the object as served, decode() of the raw value) at the same resourceVersion (objects
    kube-apiserver itself renews, like leases, may move between the two reads: read again)."""
    for _ in range(10):
        kv = raw_kv(client, key)
        got = decode(key, kv.value, kv.mod_revision)
        code, body = api.raw(path_for(got))
        assert code == 200, f"GET {path_for(got)}: HTTP {code}: {body[:300]}"
        served = json.loads(body)
        if served["metadata"]["resourceVersion"] == got["metadata"]["resourceVersion"]:
            return served, got
    raise AssertionError(f"{key!r} kept changing")


# (kind, apiVersion, name, namespaced) of every object objects() creates
CREATED = [(o["kind"], o["apiVersion"], o["metadata"]["name"], "namespace" in o["metadata"])
           for o in objects(BINARY)]


@pytest.mark.parametrize("kind,api_version,name,namespaced", CREATED,
                         ids=[f"{k}/{n}" for k, _, n, _ in CREATED])
def test_created_object_decodes_as_kubectl_shows_it(cluster, kind, api_version, name, namespaced):
    api, client = cluster
    group = api_version.rpartition("/")[0]
    namespace = NS if namespaced else ""
    key = object_key(group, plural(api, group, kind), namespace, name)
    kv = raw_kv(client, key)
    if kind != CR_KIND:
        assert kv.value.startswith(b"k8s\x00"), f"{kind} is not stored as protobuf"
    got, shown = decoded_and_shown(api, client, key, namespace, name)
    assert got == shown, diff(shown, got)
    s = summarize(key, kv.value, ("metadata.name", "metadata.namespace", "spec.nodeName",
                                  "status.phase", "type", "spec.replicas"))
    assert (s.name, s.namespace, s.labels) == (name, namespace, shown["metadata"].get("labels", {}))
    assert s.fields["metadata.name"] == name
    assert s.fields["metadata.namespace"] == (namespace or None)
    for path in ("spec.nodeName", "status.phase", "type", "spec.replicas"):
        value = shown
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        want = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        assert s.fields[path] == (want if isinstance(want, str) else None), path


def decoded_and_shown(api: KubeAPIServer, client: Client, key: bytes, namespace: str, name: str):
    """decode() of the stored value and `kubectl get -o json` of the object at its decoded
    apiVersion, at one resourceVersion."""
    for _ in range(10):
        kv = raw_kv(client, key)
        got = decode(key, kv.value, kv.mod_revision)
        group, _, version = got["apiVersion"].rpartition("/")
        resource = plural(api, group, got["kind"])
        target = f"{resource}.{version}.{group}" if group else resource
        shown = api.kubectl_json("get", target, name, "--show-managed-fields",
                                 *(["-n", namespace] if namespace else []))
        if shown["metadata"]["resourceVersion"] == got["metadata"]["resourceVersion"]:
            return got, shown
    raise AssertionError(f"{key!r} kept changing")


@pytest.mark.parametrize("crd", [CRD, CRD2], ids=lambda c: c["metadata"]["name"])
def test_crd_decodes_as_served_v1(cluster, crd):
    """CRDs are stored as apiextensions.k8s.io/v1beta1, which is no longer served."""
    api, client = cluster
    key = object_key("apiextensions.k8s.io", "customresourcedefinitions", "", crd["metadata"]["name"])
    got, shown = decoded_and_shown(api, client, key, "", crd["metadata"]["name"])
    assert shown["apiVersion"] == "apiextensions.k8s.io/v1"
    assert got == shown, diff(shown, got)


def test_secret_binary_data(cluster):
    api, client = cluster
    key = object_key("", "secrets", NS, "binary")
    kv = raw_kv(client, key)
    got = decode(key, kv.value, kv.mod_revision)
    assert base64.b64decode(got["data"]["blob"]) == BINARY
    assert got["data"]["empty"] == ""


def test_every_stored_object_decodes_and_equals_what_is_served(cluster):
    """Everything under /registry/ (what kube-apiserver wrote on its own, and ours): the key
    parses, the value decodes, name and namespace match the key, and the object equals a GET of
    it at its stored version wherever kube-apiserver serves that version."""
    api, client = cluster
    resp = client.kv.Range(pb.RangeRequest(key=b"/registry/", range_end=b"/registry0"), timeout=30)
    assert len(resp.kvs) > 100
    compared, kinds, mismatches = 0, set(), []
    for kv in resp.kvs:
        where = parse_key(kv.key)
        assert where is not None, kv.key
        obj = decode(kv.key, kv.value, kv.mod_revision)
        kinds.add(f"{obj['apiVersion']}/{obj['kind']}")
        if where.resource in ("rangeallocations", "peerserverleases"):   # internal state, no API objects
            continue
        meta = obj["metadata"]
        assert (meta.get("namespace", ""), meta.get("name")) == (where.namespace, where.name), kv.key
        if where.resource == "masterleases":
            continue
        path = lambda o, w=where: api_path(o["apiVersion"], w.resource, w.namespace, w.name)  # noqa: E731
        code, _ = api.raw(path(obj))
        if code == 404:   # stored version not served (CRDs are stored as v1beta1)
            continue
        served, got = served_and_decoded(api, client, kv.key, path)
        if got != served:
            mismatches.append(f"{kv.key.decode()}\n{diff(served, got)}")
        compared += 1
    assert not mismatches, "\n".join(mismatches)
    assert compared > 100
    for kind in ("v1/Namespace", "v1/Service", "rbac.authorization.k8s.io/v1/ClusterRole",
                 "apiregistration.k8s.io/v1/APIService", "coordination.k8s.io/v1/Lease",
                 "flowcontrol.apiserver.k8s.io/v1/FlowSchema", "scheduling.k8s.io/v1/PriorityClass",
                 "apiextensions.k8s.io/v1/CustomResourceDefinition", f"{GROUP}/v1/{CR_KIND}"):
        assert kind in kinds, sorted(kinds)


def test_truncated_protobuf_is_one_error(cluster):
    api, client = cluster
    key = object_key("apps", "deployments", NS, "web")
    kv = raw_kv(client, key)
    for value in (kv.value[:40], kv.value[:-7], b"k8s\x00\xff\xff"):
        with pytest.raises(DecodeError) as err:
            decode(key, value, 1)
        assert "\n" not in str(err.value)


_PLURALS: dict = {}


def plural(api: KubeAPIServer, group: str, kind: str) -> str:
    if not _PLURALS:
        for group_list in (api.rawj("/api"), api.rawj("/apis")):
            for v in group_list.get("versions", []):
                _collect(api, f"/api/{v}", "")
            for g in group_list.get("groups", []):
                _collect(api, f"/apis/{g['preferredVersion']['groupVersion']}", g["name"])
    return _PLURALS[(group, kind)]


def _collect(api: KubeAPIServer, path: str, group: str) -> None:
    for r in api.rawj(path)["resources"]:
        if "/" not in r["name"]:
            _PLURALS[(group, r["kind"])] = r["name"]


def diff(want: dict, got: dict, path: str = "") -> str:
    """The first differences between two JSON values, one per line."""
    out = []
    if isinstance(want, dict) and isinstance(got, dict):
        for k in sorted(set(want) | set(got)):
            if k not in got:
                out.append(f"{path}.{k}: missing (want {json.dumps(want[k])[:200]})")
            elif k not in want:
                out.append(f"{path}.{k}: extra {json.dumps(got[k])[:200]}")
            elif want[k] != got[k]:
                out.append(diff(want[k], got[k], f"{path}.{k}"))
    elif isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        for i, (a, b) in enumerate(zip(want, got)):
            if a != b:
                out.append(diff(a, b, f"{path}[{i}]"))
    else:
        out.append(f"{path}: want {json.dumps(want)[:200]}, got {json.dumps(got)[:200]}")
    return "\n".join(out[:20])
