"""`kubefabric aggregation` in front of a real data layer (`kubefabric serve`, embedded SQLite),
driven over HTTPS: discovery, OpenAPI, every read and write verb, resourceVersion semantics,
pagination pinned to a revision, 410 after compaction, watches, selectors, Table output.

One data layer and one aggregation server serve the whole module; every test works in its own
namespace. (The same requests against kube-apiserver with the CRD: test_differential.py.)
"""
from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import urllib.parse

import pytest

from harness.aggregation import WIDGETS, start_aggregation
from harness.servers import start_kubefabric

NAMESPACES = (f"ns{i}" for i in itertools.count())


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("aggregation")
    kf = start_kubefabric(work)
    agg = start_aggregation(work, kf.url)
    yield kf, agg
    agg.stop()
    kf.stop()


@pytest.fixture
def agg(stack):
    return stack[1]


@pytest.fixture
def ns():
    return next(NAMESPACES)


def widget(name: str, color: str = "red", labels: dict | None = None, **spec) -> dict:
    meta = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "example.kubefabric.io/v1", "kind": "Widget", "metadata": meta,
            "spec": {"color": color, **spec}}


def path(ns: str, name: str = "", query: str = "") -> str:
    p = f"{WIDGETS}/namespaces/{ns}/widgets" + (f"/{name}" if name else "")
    return p + (f"?{query}" if query else "")


def names(listed: dict) -> list[str]:
    return [i["metadata"]["name"] for i in listed["items"]]


async def _compact(endpoint: str) -> None:
    from kubefabric.client import EtcdClient
    async with EtcdClient.connect(endpoint) as c:
        r = await c.kv.range(b"\0", count_only=True)
        await c.kv.compact(r.revision)


def compact(kf) -> None:
    asyncio.run(_compact(kf.url))


# ---- discovery and OpenAPI ----

def test_discovery_legacy_and_aggregated(agg):
    groups = agg.json("GET", "/apis")
    assert groups["kind"] == "APIGroupList"
    assert groups["groups"][0]["name"] == "example.kubefabric.io"
    assert groups["groups"][0]["preferredVersion"] == {"groupVersion": "example.kubefabric.io/v1",
                                                       "version": "v1"}
    resources = agg.json("GET", WIDGETS)
    by_name = {r["name"]: r for r in resources["resources"]}
    assert set(by_name) == {"widgets", "widgets/status", "widgets/scale"}
    assert by_name["widgets"]["shortNames"] == ["wd"]
    assert by_name["widgets"]["verbs"] == ["delete", "deletecollection", "get", "list", "patch",
                                           "create", "update", "watch"]
    v2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    code, body = agg.request("GET", "/apis", headers={"Accept": v2})
    assert code == 200
    doc = json.loads(body)
    assert doc["kind"] == "APIGroupDiscoveryList"
    res = doc["items"][0]["versions"][0]["resources"][0]
    assert res["resource"] == "widgets" and res["scope"] == "Namespaced"
    assert [s["subresource"] for s in res["subresources"]] == ["status", "scale"]


def test_openapi_v2_and_v3(agg):
    v2 = agg.json("GET", "/openapi/v2")
    assert "io.kubefabric.example.v1.Widget" in v2["definitions"]
    assert v2["definitions"]["io.kubefabric.example.v1.Widget"]["x-kubernetes-group-version-kind"] == [
        {"group": "example.kubefabric.io", "version": "v1", "kind": "Widget"}]
    assert "/apis/example.kubefabric.io/v1/namespaces/{namespace}/widgets/{name}" in v2["paths"]
    index = agg.json("GET", "/openapi/v3")
    url = index["paths"]["apis/example.kubefabric.io/v1"]["serverRelativeURL"]
    v3 = agg.json("GET", url)
    widget_schema = v3["components"]["schemas"]["io.kubefabric.example.v1.Widget"]
    assert widget_schema["properties"]["spec"]["properties"]["color"]["enum"] == ["red", "green", "blue"]
    assert widget_schema["x-kubernetes-selectable-fields"] == [{"fieldPath": "spec.color"}]
    post = v3["paths"]["/apis/example.kubefabric.io/v1/namespaces/{namespace}/widgets"]["post"]
    assert "fieldValidation" in [p["name"] for p in post["parameters"]]
    # every $ref resolves inside the document (kubectl explain reads it alone)
    refs = set(_refs(v3))
    assert refs and all(r.removeprefix("#/components/schemas/") in v3["components"]["schemas"] for r in refs)


def _refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def test_unknown_paths_are_status_404(agg, ns):
    code, st = agg.fail("GET", f"{WIDGETS}/namespaces/{ns}/gadgets")
    assert code == 404 and st["kind"] == "Status" and st["reason"] == "NotFound"
    code, st = agg.fail("GET", path(ns, "missing"))
    assert code == 404
    assert st["message"] == 'widgets.example.kubefabric.io "missing" not found'
    assert st["details"] == {"name": "missing", "group": "example.kubefabric.io", "kind": "widgets"}


# ---- writes ----

def test_create_get_update_patch_delete(agg, ns):
    created = agg.json("POST", path(ns), widget("w1", labels={"app": "a"}))
    meta = created["metadata"]
    assert meta["namespace"] == ns and meta["generation"] == 1 and meta["uid"]
    assert created["spec"] == {"color": "red", "replicas": 1, "maxReplicas": 10}  # defaults
    assert meta["managedFields"][0]["operation"] == "Update"
    got = agg.json("GET", path(ns, "w1"))
    assert got == created
    got["spec"]["color"] = "blue"
    updated = agg.json("PUT", path(ns, "w1"), got)
    assert updated["metadata"]["generation"] == 2
    assert int(updated["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    # a stale resourceVersion is a 409 Conflict
    code, st = agg.fail("PUT", path(ns, "w1"), got)
    assert code == 409 and st["reason"] == "Conflict"
    assert "the object has been modified" in st["message"]
    patched = agg.json("PATCH", path(ns, "w1"), {"metadata": {"labels": {"b": "c"}}},
                       content_type="application/merge-patch+json")
    assert patched["metadata"]["labels"] == {"app": "a", "b": "c"}
    assert patched["metadata"]["generation"] == 2  # metadata changes keep the generation
    patched = agg.json("PATCH", path(ns, "w1"), [{"op": "replace", "path": "/spec/replicas", "value": 3}],
                       content_type="application/json-patch+json")
    assert patched["spec"]["replicas"] == 3 and patched["metadata"]["generation"] == 3
    deleted = agg.json("DELETE", path(ns, "w1"))
    assert deleted["metadata"]["name"] == "w1"
    assert agg.fail("GET", path(ns, "w1"))[0] == 404


def test_generate_name_and_already_exists(agg, ns):
    body = widget("")
    body["metadata"] = {"generateName": "gen-"}
    a = agg.json("POST", path(ns), body)
    assert a["metadata"]["name"].startswith("gen-") and len(a["metadata"]["name"]) == 9
    agg.json("POST", path(ns), widget("dup"))
    code, st = agg.fail("POST", path(ns), widget("dup"))
    assert code == 409 and st["reason"] == "AlreadyExists"
    code, st = agg.fail("POST", path(ns), {**widget(""), "metadata": {}})
    assert code == 422
    assert "metadata.name: Required value: name or generateName is required" in st["message"]


def test_status_subresource(agg, ns):
    body = widget("s1")
    body["status"] = {"replicas": 5}
    created = agg.json("POST", path(ns), body)
    assert "status" not in created  # create cannot set status
    updated = agg.json("PATCH", path(ns, "s1") + "/status", {"status": {"replicas": 2}, "spec": {"color": "green"}},
                       content_type="application/merge-patch+json")
    assert updated["status"] == {"replicas": 2}
    assert updated["spec"]["color"] == "red"  # /status cannot change spec
    assert updated["metadata"]["generation"] == 1
    main = agg.json("PATCH", path(ns, "s1"), {"status": {"replicas": 9}},
                    content_type="application/merge-patch+json")
    assert main["status"] == {"replicas": 2}  # the resource cannot change status
    scale = agg.json("GET", path(ns, "s1") + "/scale")
    assert scale["kind"] == "Scale" and scale["spec"] == {"replicas": 1} and scale["status"]["replicas"] == 2


def test_validation_errors(agg, ns):
    code, st = agg.fail("POST", path(ns), widget("bad", color="purple", replicas=-1))
    assert code == 422 and st["reason"] == "Invalid"
    assert st["message"] == (
        'Widget.example.kubefabric.io "bad" is invalid: [spec.color: Unsupported value: "purple": '
        'supported values: "red", "green", "blue", spec.replicas: Invalid value: -1: '
        'spec.replicas in body should be greater than or equal to 0, .spec.replicas: Invalid '
        'value: -1: should be a non-negative integer, <nil>: Invalid value: null: some validation '
        'rules were not checked because the object was invalid; correct the existing errors to '
        'complete validation]')
    code, st = agg.fail("POST", path(ns), widget("cel", replicas=20, maxReplicas=5))
    assert st["message"] == ('Widget.example.kubefabric.io "cel" is invalid: spec: Invalid value: '
                             'replicas must not exceed maxReplicas')
    code, st = agg.fail("POST", path(ns), {**widget("noc"), "spec": {}})
    assert "spec.color: Required value" in st["message"]
    code, st = agg.fail("POST", path(ns), widget("Upper"))
    assert "metadata.name: Invalid value: \"Upper\": a lowercase RFC 1123 subdomain" in st["message"]


def test_pruning_and_field_validation(agg, ns):
    body = widget("p1", unknown=1)
    code, text = agg.request("POST", path(ns, query="fieldValidation=Strict"), body)
    assert code == 400
    assert json.loads(text)["message"] == ('Widget in version "v1" cannot be handled as a Widget: '
                                           'strict decoding error: unknown field "spec.unknown"')
    created = agg.json("POST", path(ns), body)
    assert "unknown" not in created["spec"]


def test_finalizers_and_deletion_timestamp(agg, ns):
    body = widget("f1")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    agg.json("POST", path(ns), body)
    pending = agg.json("DELETE", path(ns, "f1"))
    assert pending["metadata"]["deletionTimestamp"]
    assert pending["metadata"]["deletionGracePeriodSeconds"] == 0
    assert pending["metadata"]["generation"] == 2
    code, st = agg.fail("PATCH", path(ns, "f1"), {"metadata": {"finalizers": ["example.com/hold", "x.io/new"]}},
                        content_type="application/merge-patch+json")
    assert code == 422 and "no new finalizers can be added" in st["message"]
    agg.json("PATCH", path(ns, "f1"), {"metadata": {"finalizers": None}},
             content_type="application/merge-patch+json")
    assert agg.fail("GET", path(ns, "f1"))[0] == 404


def test_delete_preconditions_and_collection(agg, ns):
    w = agg.json("POST", path(ns), widget("d1", labels={"tier": "x"}))
    agg.json("POST", path(ns), widget("d2", labels={"tier": "x"}))
    agg.json("POST", path(ns), widget("d3", labels={"tier": "y"}))
    code, st = agg.fail("DELETE", path(ns, "d1"), {"preconditions": {"uid": "other"}})
    assert code == 409 and "the UID in the precondition (other) does not match" in st["message"]
    gone = agg.json("DELETE", path(ns, query="labelSelector=tier%3Dx"))
    assert gone["kind"] == "WidgetList" and sorted(names(gone)) == ["d1", "d2"]
    assert names(agg.json("GET", path(ns))) == ["d3"]
    assert w["metadata"]["uid"]


def test_server_side_apply(agg, ns):
    cfg = "apiVersion: example.kubefabric.io/v1\nkind: Widget\nmetadata:\n  name: a1\nspec:\n  color: red\n  tags: [x]\n"
    ct = "application/apply-patch+yaml"
    created = agg.json("PATCH", path(ns, "a1", "fieldManager=alice"), cfg, content_type=ct)
    entry = created["metadata"]["managedFields"][0]
    assert entry["manager"] == "alice" and entry["operation"] == "Apply"
    # tags is a list-type set: each value is owned on its own
    assert entry["fieldsV1"] == {"f:spec": {".": {}, "f:color": {}, "f:tags": {".": {}, 'v:"x"': {}}}}
    other = cfg.replace("color: red", "color: blue").replace("  tags: [x]\n", "")
    code, st = agg.fail("PATCH", path(ns, "a1", "fieldManager=bob"), other, content_type=ct)
    assert code == 409
    assert st["message"] == 'Apply failed with 1 conflict: conflict with "alice": .spec.color'
    forced = agg.json("PATCH", path(ns, "a1", "fieldManager=bob&force=true"), other, content_type=ct)
    assert forced["spec"]["color"] == "blue"
    owners = {e["manager"]: e["fieldsV1"] for e in forced["metadata"]["managedFields"]}
    # alice keeps tags (and the spec struct both appliers set); color moved to bob
    assert owners["alice"] == {"f:spec": {".": {}, "f:tags": {".": {}, 'v:"x"': {}}}}
    # alice stops sending tags: they are removed (nobody else owns them)
    shrunk = agg.json("PATCH", path(ns, "a1", "fieldManager=alice"),
                      cfg.replace("  tags: [x]\n", "").replace("color: red", "color: blue"), content_type=ct)
    assert "tags" not in shrunk["spec"]
    code, st = agg.fail("PATCH", path(ns, "a2"), cfg.replace("a1", "a2"), content_type=ct)
    assert code == 422 and "fieldManager: Required value" in st["message"]


# ---- reads ----

def test_list_pages_are_pinned_to_one_revision(agg, ns):
    for i in range(5):
        agg.json("POST", path(ns), widget(f"w{i}"))
    first = agg.json("GET", path(ns, query="limit=2"))
    rv = first["metadata"]["resourceVersion"]
    assert names(first) == ["w0", "w1"] and first["metadata"]["continue"]
    agg.json("POST", path(ns), widget("w10"))  # after the first page: not in this list
    agg.json("DELETE", path(ns, "w4"))         # deleted after it: still in this list
    seen, token = names(first), first["metadata"]["continue"]
    while token:
        page = agg.json("GET", path(ns, query=f"limit=2&continue={token}"))
        assert page["metadata"]["resourceVersion"] == rv
        seen += names(page)
        token = page["metadata"].get("continue")
    assert seen == ["w0", "w1", "w2", "w3", "w4"]
    code, st = agg.fail("GET", path(ns, query="continue=garbage"))
    assert code == 400 and st["message"].startswith("invalid continue token")


def test_resource_version_semantics(agg, ns):
    a = agg.json("POST", path(ns), widget("r1"))
    rv = a["metadata"]["resourceVersion"]
    agg.json("PATCH", path(ns, "r1"), {"spec": {"color": "green"}}, content_type="application/merge-patch+json")
    exact = agg.json("GET", path(ns, query=f"resourceVersion={rv}&resourceVersionMatch=Exact"))
    assert exact["items"][0]["spec"]["color"] == "red" and exact["metadata"]["resourceVersion"] == rv
    newer = agg.json("GET", path(ns, query=f"resourceVersion={rv}&resourceVersionMatch=NotOlderThan"))
    assert newer["items"][0]["spec"]["color"] == "green"
    assert agg.json("GET", path(ns, query="resourceVersion=0"))["items"][0]["spec"]["color"] == "green"
    code, st = agg.fail("GET", path(ns, query="resourceVersion=999999999"))
    assert code == 504 and st["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"
    code, st = agg.fail("GET", path(ns, query="resourceVersionMatch=Exact"))
    assert code == 422 and "resourceVersionMatch is forbidden unless resourceVersion is provided" in st["message"]


def test_expired_after_compaction(stack, ns):
    kf, agg = stack
    before = agg.json("POST", path(ns), widget("c0"))["metadata"]["resourceVersion"]
    for i in range(1, 3):
        agg.json("POST", path(ns), widget(f"c{i}"))
    first = agg.json("GET", path(ns, query="limit=1"))
    rv = first["metadata"]["resourceVersion"]
    agg.json("POST", path(ns), widget("c9"))
    compact(kf)
    code, st = agg.fail("GET", path(ns, query=f"limit=1&continue={first['metadata']['continue']}"))
    assert code == 410 and st["reason"] == "Expired"
    assert st["message"].startswith("The provided continue parameter is too old")
    inconsistent = agg.json("GET", path(ns, query=f"limit=10&continue={st['metadata']['continue']}"))
    assert names(inconsistent) == ["c1", "c2", "c9"]  # the rest, at the newest revision
    code, st = agg.fail("GET", path(ns, query=f"resourceVersion={rv}&resourceVersionMatch=Exact"))
    assert code == 410 and st["message"] == "The resourceVersion for the provided list is too old."
    events = agg.watch(path(ns, query=f"watch=1&resourceVersion={before}"), until=1)
    assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410


def test_selectors_pushed_down(agg, ns):
    for name, color, labels in (("a", "red", {"env": "prod", "n": "1"}), ("b", "green", {"env": "dev", "n": "5"}),
                                ("c", "blue", {"n": "9"})):
        agg.json("POST", path(ns), widget(name, color, labels))

    def sel(query):
        return names(agg.json("GET", path(ns, query=query)))

    q = urllib.parse.quote
    assert sel(f"labelSelector={q('env in (prod,dev)')}") == ["a", "b"]
    assert sel(f"labelSelector={q('env notin (prod)')}") == ["b", "c"]
    assert sel(f"labelSelector={q('!env')}") == ["c"]
    assert sel(f"labelSelector={q('n>4')}") == ["b", "c"]
    assert sel(f"labelSelector={q('env,n<5')}") == ["a"]
    assert sel(f"fieldSelector={q('spec.color=green')}") == ["b"]
    assert sel(f"fieldSelector={q('metadata.name!=a,spec.color!=blue')}") == ["b"]
    assert sel(f"labelSelector=env&limit=1") == ["a"]
    all_ns = agg.json("GET", f"{WIDGETS}/widgets?fieldSelector={q('metadata.namespace=' + ns)}")
    assert sorted(names(all_ns)) == ["a", "b", "c"]
    code, st = agg.fail("GET", path(ns, query=f"fieldSelector={q('spec.size=x')}"))
    assert code == 400 and st["message"] == "field label not supported: spec.size"
    code, st = agg.fail("GET", path(ns, query=f"labelSelector={q('a b')}"))
    assert code == 400
    assert st["message"] == "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"


def test_table_output(agg, ns):
    body = widget("t1", replicas=2)
    agg.json("POST", path(ns), body)
    agg.json("PATCH", path(ns, "t1") + "/status",
             {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
             content_type="application/merge-patch+json")
    table = agg.json("GET", path(ns), headers={
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Color", "Replicas", "Ready", "Age"]
    row = table["rows"][0]
    assert row["cells"][:4] == ["t1", "red", 2, "True"]
    assert row["object"]["kind"] == "PartialObjectMetadata"


def test_watch_from_resource_version(agg, ns):
    a = agg.json("POST", path(ns), widget("x1", labels={"k": "v"}))
    rv = a["metadata"]["resourceVersion"]

    def writes():
        agg.json("PATCH", path(ns, "x1"), {"metadata": {"labels": {"k": "w"}}},
                 content_type="application/merge-patch+json")
        agg.json("POST", path(ns), widget("x2", labels={"k": "v"}))
        agg.json("DELETE", path(ns, "x2"))

    events = agg.watch(path(ns, query=f"watch=1&resourceVersion={rv}"), until=3,
                       on_open=lambda: threading.Thread(target=writes).start())
    assert [e["type"] for e in events] == ["MODIFIED", "ADDED", "DELETED"]
    revs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert revs == sorted(revs) and revs[0] > int(rv)
    # the same changes through a label selector: x1 stops matching (DELETED), x2 comes and goes
    selected = agg.watch(path(ns, query=f"watch=1&resourceVersion={rv}&labelSelector=k%3Dv"), until=3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in selected] == [
        ("DELETED", "x1"), ("ADDED", "x2"), ("DELETED", "x2")]
    assert selected[0]["object"]["metadata"]["labels"] == {"k": "v"}


def test_watch_initial_events_and_bookmark(agg, ns):
    agg.json("POST", path(ns), widget("i1"))
    agg.json("POST", path(ns), widget("i2"))
    events = agg.watch(path(ns, query="watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
                                      "&allowWatchBookmarks=true"), until=3)
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "BOOKMARK"]
    mark = events[2]["object"]
    assert mark["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(mark["metadata"]["resourceVersion"]) >= max(
        int(e["object"]["metadata"]["resourceVersion"]) for e in events[:2])
    legacy = agg.watch(path(ns, query="watch=1"), until=2)  # no resourceVersion: the state first
    assert [e["type"] for e in legacy] == ["ADDED", "ADDED"]
    ends = agg.watch(path(ns, query="watch=1&timeoutSeconds=1&resourceVersion=" +
                          events[2]["object"]["metadata"]["resourceVersion"]), timeout=10)
    assert ends == []  # the stream ends at timeoutSeconds
    code, st = agg.fail("GET", path(ns, query="watch=1&sendInitialEvents=true"))
    assert code == 422 and "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan" in st["message"]


def test_shutdown_ends_watches(tmp_path, stack):
    """SIGTERM: open watch streams end (clients re-watch), the process exits 0 promptly."""
    kf, _ = stack
    agg = start_aggregation(tmp_path, kf.url, extra=["--auth", "none", "--event-loop", "uvloop",
                                                     "--shutdown-grace", "2s"])
    assert agg.request("GET", "/readyz")[0] == 200
    ended = threading.Event()

    def watch():
        agg.watch(path("shutdown", query="watch=1&resourceVersion=1"), timeout=60)
        ended.set()

    threading.Thread(target=watch, daemon=True).start()
    time.sleep(1)
    t0 = time.monotonic()
    assert agg.stop(timeout=30) == 0, agg.log()[-2000:]
    assert time.monotonic() - t0 < 15
    assert ended.wait(10), "the watch stream did not end"
