"""Bulk loading for bench/aggregation.py's checkpoints: the namespace is filled up to an object
count through the etcd API of the storage under test, with the very bytes the serving API server
would have stored, so a measured window starts from a namespace that looks as if clients had
created every object.

    raw = template(api, client, group)                 # one object created through the API
    load(client, group, raw, start=0, stop=10_000)     # b<c>-<seq> objects, Txn batches
    remove(client, group, "w1-")                       # a window's objects, after it
    wait_counted(api, group, stored(client, group), cached=True)   # the API lists what is stored

The template is created through kube-apiserver (for kf-agg: proxied to the aggregation server),
so its JSON is exactly what that server stores for a client-go create (managedFields of manager
k8sload included); it is then read back raw from the storage. Bulk objects are that JSON with the
name, uid and labels replaced (bench-client=b<c>, bench-seq=<seq>, the label keys the load
generator uses, values it never uses) under /registry/<group>/widgets/<namespace>/<name>, written
by Txns of puts: KubeFabric's put path maintains its label index for them as for any write.
"""
from __future__ import annotations

import json
import ssl
import time
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

from harness.client import Client, Failure
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

NAMESPACE = "bench"
CLIENTS = 120          # bulk objects spread over as many client label values as the load has
BATCH = 100            # puts per Txn (etcd's --max-txn-ops default is 128)
_SSL = ssl.create_default_context()
_SSL.check_hostname, _SSL.verify_mode = False, ssl.CERT_NONE


def key(group: str, name: str) -> bytes:
    return f"/registry/{group}/widgets/{NAMESPACE}/{name}".encode()


def request(api, path: str, method: str = "GET", body: dict | None = None,
            accept: str = "application/json", timeout: float = 600) -> tuple[int, bytes]:
    req = urllib.request.Request(api.url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {api.token}", "Accept": accept,
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=_SSL, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def template(api, client: Client, group: str) -> bytes:
    """Create one Widget as the load generator would (manager k8sload) and return the bytes the
    server stored for it."""
    body = {"apiVersion": f"{group}/v1", "kind": "Widget",
            "metadata": {"name": "b-template", "labels": {"bench-client": "b-template", "bench-seq": "0"}},
            "spec": {"color": "red", "replicas": 0}}
    code, out = request(api, f"/apis/{group}/v1/namespaces/{NAMESPACE}/widgets?fieldManager=k8sload",
                        "POST", body)
    if code != 201:
        raise RuntimeError(f"creating the bulk template failed: HTTP {code}: {out[:500]!r}")
    got = client.get(key(group, "b-template"))
    if isinstance(got, Failure) or not got.kvs:
        raise RuntimeError(f"the bulk template is not at {key(group, 'b-template')!r} in the storage: {got}")
    return got.kvs[0].value


def encode(obj: dict, like: bytes) -> bytes:
    """JSON as Go's encoding/json writes a map (sorted keys, compact) with `like`'s trailing newline."""
    text = json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
    return text + b"\n" if like.endswith(b"\n") else text


def check_faithful(raw: bytes) -> None:
    """encode() must reproduce the server's own bytes, else bulk objects would differ from its."""
    if encode(json.loads(raw), raw) != raw:
        raise RuntimeError(f"the stored template is not JSON encode() reproduces: {raw[:300]!r}")


def render(template_obj: dict, raw: bytes, n: int) -> tuple[str, bytes]:
    c, seq = n % CLIENTS, n // CLIENTS
    name = f"b{c}-{seq}"
    obj = json.loads(json.dumps(template_obj))
    meta = obj["metadata"]
    meta["name"], meta["uid"] = name, str(uuid.uuid4())
    meta["labels"] = {"bench-client": f"b{c}", "bench-seq": str(seq)}
    obj["spec"]["replicas"] = seq % 10
    return name, encode(obj, raw)


def load(client: Client, group: str, raw: bytes, start: int, stop: int, threads: int = 4) -> float:
    """Write bulk objects start..stop-1 (Txn batches, `threads` at a time); the seconds it took."""
    check_faithful(raw)
    tmpl = json.loads(raw)
    t0 = time.monotonic()

    def batch(lo: int) -> None:
        ops = []
        for n in range(lo, min(lo + BATCH, stop)):
            name, value = render(tmpl, raw, n)
            ops.append(pb.RequestOp(request_put=pb.PutRequest(key=key(group, name), value=value)))
        got = client.call(client.kv.Txn, pb.TxnRequest(success=ops), timeout=120)
        if isinstance(got, Failure):
            raise RuntimeError(f"bulk Txn at object {lo} failed: {got.code} {got.details}")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(batch, range(start, stop, BATCH)))
    return time.monotonic() - t0


def shape(obj: dict) -> dict:
    """The field names of an object, nested; values replaced by their types."""
    if isinstance(obj, dict):
        return {k: shape(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [shape(v) for v in obj]
    return type(obj).__name__


def check_readback(api, group: str) -> None:
    """A bulk object, read through the API, must look like the one the server created itself."""
    got = {}
    for name in ("b-template", "b0-0"):
        code, out = request(api, f"/apis/{group}/v1/namespaces/{NAMESPACE}/widgets/{name}")
        if code != 200:
            raise RuntimeError(f"reading back {name} through the API: HTTP {code}: {out[:300]!r}")
        got[name] = json.loads(out)
    if shape(got["b-template"]) != shape(got["b0-0"]):
        raise RuntimeError(f"a bulk object reads back unlike a created one:\n{got['b-template']}\n{got['b0-0']}")


def count(api, group: str, cached: bool) -> int:
    """Objects in the namespace as the API lists them: kube-apiserver's watch cache
    (resourceVersion=0, one response), else a consistent list in pages of 5,000 as kubectl and
    informers read (one unpaginated list of 25k objects outlasts the aggregation server's
    deadline on the data layer: 503); metadata only where the server offers it."""
    path = f"/apis/{group}/v1/namespaces/{NAMESPACE}/widgets"
    query = "?resourceVersion=0" if cached else "?limit=5000"
    n, cont = 0, ""
    while True:
        url = path + query + (f"&continue={urllib.parse.quote(cont)}" if cont else "")
        code, out = request(api, url, accept="application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
                                             "application/json")
        if code != 200:
            raise RuntimeError(f"GET {url}: HTTP {code}: {out[:300]!r}")
        page = json.loads(out)
        n += len(page["items"])
        cont = page["metadata"].get("continue", "")
        if cached or not cont:
            return n


def stored(client: Client, group: str) -> int:
    """Objects in the namespace, counted in the storage itself."""
    start = key(group, "")
    got = client.call(client.kv.Range, pb.RangeRequest(key=start, range_end=start[:-1] + b"0",
                                                       count_only=True), timeout=120)
    if isinstance(got, Failure):
        raise RuntimeError(f"counting {start!r}... failed: {got.code} {got.details}")
    return got.count


def remove(client: Client, group: str, prefix: str) -> int:
    """Delete the objects whose names start with `prefix` (a window's); how many there were."""
    start = key(group, prefix)
    end = start[:-1] + bytes([start[-1] + 1])
    got = client.call(client.kv.DeleteRange, pb.DeleteRangeRequest(key=start, range_end=end), timeout=300)
    if isinstance(got, Failure):
        raise RuntimeError(f"deleting {start!r}... failed: {got.code} {got.details}")
    return got.deleted


def wait_counted(api, group: str, expected: int, cached: bool, timeout: float = 900) -> float:
    """Until the API lists exactly `expected` objects; the seconds it took."""
    t0 = time.monotonic()
    while (n := count(api, group, cached)) != expected:
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"the API lists {n} objects, not {expected}, after {timeout:.0f} s")
        time.sleep(1)
    return time.monotonic() - t0
