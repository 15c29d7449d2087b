"""The example app end to end through the real layers, no cluster and no Docker: Orders written
with kubectl to a kube-apiserver on KubeFabric (kv-router routing them to a PostgreSQL shard by
the example's topology), `kubefabric trigger` running an HTTPTrigger applied with kubectl that
calls the pricing function on each Order ADDED, the function patching status.total, the kopf
operator keeping an invoice ConfigMap per Order and deleting it with the order, and the REST
layer: `kubefabric aggregation` behind an APIService answering "orders of customer X over
amount Y" (OrderReports, hooks in examples/shop/reports).

Tracing is on in every process (TRACED_STACK): one Order's creation is one trace from
kube-apiserver's HTTP request through kv-router, the PostgreSQL shard's commit, the trigger's
delivery, to the function, collected by an OTLP receiver on loopback.

One test on one stack: kube-apiserver takes seconds to start and CI minutes are scarce (a module
of several tests would start one stack per pytest-xdist worker)."""
from __future__ import annotations

import json
import sqlite3
import urllib.request

import grpc
import pytest

from backend_sqlite.store import DB_FILE
from harness.shop import order, price_trigger, trigger_ready, wait_for
from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb
from kubefabric.proto.kubefabric.query.v1 import query_pb2_grpc

pytestmark = pytest.mark.timeout(300)
TRACED_STACK = True   # conftest: kube-apiserver and every process export spans to shop.collector

NS = "shop-e2e"
PREFIX = f"/registry/shop.example.com/orders/{NS}/"
# name -> (customer, items, total in cents by the example's price list)
ORDERS = {
    "e1": ("acme", [("widget", 2), ("gizmo", 1)], 2 * 1250 + 300),
    "e2": ("globex", [("gadget", 1)], 4999),
    "e3": ("acme", [("sprocket", 4)], 4 * 75),
    "e4": ("initech", [("doohickey", 1), ("widget", 1)], 1999 + 1250),
    "e5": ("acme", [("gadget", 1)], 4999),
}
REPORTS = "/apis/reports.shop.example.com/v1alpha1/namespaces/" + NS + "/orderreports"
def get(api, kind: str, name: str) -> dict | None:
    path = (f"/apis/shop.example.com/v1/namespaces/{NS}/orders/{name}" if kind == "orders"
            else f"/api/v1/namespaces/{NS}/{kind}/{name}")
    code, text = api.raw(path)
    if code == 404:
        return None
    assert code == 200, f"GET {path}: HTTP {code}: {text[:500]}"
    return json.loads(text)


def trigger_status(api) -> dict:
    return api.kubectl_json("get", "httptrigger", "price-orders", "-n", NS).get("status") or {}


def customer_query(shop, customer: str) -> qpb.QueryResponse:
    """What the REST layer's customer selector becomes: a Query on kv-router over the Orders of NS."""
    end = PREFIX[:-1] + chr(ord(PREFIX[-1]) + 1)
    F = qpb.FieldRequirement
    with grpc.insecure_channel(shop.router.endpoint) as ch:
        return query_pb2_grpc.QueryStub(ch).Query(qpb.QueryRequest(
            key=PREFIX.encode(), range_end=end.encode(), keys_only=True,
            fields=[F(path="spec.customer", operator=F.EQUALS, value=customer)]), timeout=30)


def order_keys_in_postgres(shop) -> tuple[set[str], set[str]]:
    """Order keys in the orders shard's database: (live keys, keys in its history)."""
    def keys(table: str) -> set[str]:
        out = shop.postgres.sql(f"SELECT DISTINCT encode(key, 'escape') FROM {table}", dbname=shop.database)
        return {k for k in out.splitlines() if k.startswith("/registry/shop.example.com/orders/")}
    return keys("kf_kv"), keys("kf_log")


def order_keys_in_sqlite(shop) -> set[str]:
    """Order keys anywhere in the default shard's SQLite database (live or history)."""
    db = sqlite3.connect(shop.workdir / "main" / DB_FILE, timeout=10)   # WAL: a reader beside the shard
    try:
        rows = [r for t in ("kf_kv", "kf_log") for r in db.execute(f"SELECT key FROM {t}")]
        assert rows, "the default shard holds the cluster's other objects"
    finally:
        db.close()
    return {bytes(k).decode(errors="replace") for (k,) in rows if bytes(k).startswith(b"/registry/shop.example.com/")}


def attribute(span, key: str) -> str:
    return next((a.value.string_value for a in span.attributes if a.key == key), "")


# from the function up to kube-apiserver: (service, span name) of each ancestor that must be
# there, in order (others, e.g. kube-apiserver's own internal spans, may sit between them)
WRITE_TO_FUNCTION = [
    ("kubefabric-trigger", "trigger deliver"),
    ("backend-pg", "kubefabric.writer.commit"),
    ("backend-pg", "kubefabric.shard.v1.Shard/Txn"),    # the orders shard's server span
    ("kv-router", "kubefabric.shard.v1.Shard/Txn"),     # kv-router's call to it
    ("kv-router", "etcdserverpb.KV/Txn"),               # kube-apiserver's etcd call, served
    ("apiserver", "etcdserverpb.KV/Txn"),               # kube-apiserver's etcd client span
]


def assert_one_trace(collector, traceparent: str) -> None:
    """The function's span (parented by the `traceparent` its delivery carried) descends, span by
    span, from kube-apiserver's HTTP request that created the order: one trace id throughout."""
    version, trace_id, delivery, _ = traceparent.split("-")
    assert version == "00", traceparent

    def ancestry():
        spans = {s.span_id.hex(): (svc, s) for svc, s in collector.spans() if s.trace_id.hex() == trace_id}
        fn = [(svc, s) for svc, s in spans.values() if s.name == "shop.function price"]
        if len(fn) != 1:
            return None
        chain = [fn[0]]
        while chain[-1][1].parent_span_id:
            parent = spans.get(chain[-1][1].parent_span_id.hex())
            if parent is None:
                return None   # not exported yet (batches every 100 ms; kube-apiserver's every 5 s)
            chain.append(parent)
        return chain

    chain = wait_for(ancestry, 60, f"the spans of the trace {trace_id} up to its root")
    assert chain[1][1].span_id.hex() == delivery, "the function's parent is the delivery it got"
    names = [(svc, s.name) for svc, s in chain]
    at = 0
    for step in WRITE_TO_FUNCTION:
        assert step in names[at:], (step, names)
        at = names.index(step, at) + 1
    # kube-apiserver's HTTP request span (its root is the authentication filter's span)
    assert {svc for svc, _ in chain[at:]} == {"apiserver"}, names
    (request,) = [s for _, s in chain[at:] if s.kind == s.SPAN_KIND_SERVER]
    target = attribute(request, "http.target")
    assert target.startswith(f"/apis/shop.example.com/v1/namespaces/{NS}/orders"), (target, names)


def test_orders_through_trigger_function_and_operator(shop):
    api = shop.api
    api.kubectl("create", "namespace", NS)
    fn = shop.start_function()
    op = shop.start_operator("e2e", "--namespace", NS, "--lease-namespace", NS, lease_duration=6)
    shop.start_trigger()
    shop.start_reports()
    api.kubectl("apply", "-f", "-", input=json.dumps(price_trigger(NS, fn.url + "/")))
    wait_for(lambda: trigger_ready(api, NS), 60, "the HTTPTrigger to be Ready")
    op.wait_log("acquired by e2e: leading")

    # create: each order is priced once, by the event of its creation, and invoiced
    created = {}
    for name, (customer, items, _) in ORDERS.items():
        out = api.kubectl("create", "-n", NS, "-o", "json", "-f", "-", input=json.dumps(order(name, customer, items)))
        created[name] = json.loads(out)
    for name, (_, _, total) in ORDERS.items():
        priced = wait_for(lambda: (o := get(api, "orders", name)) and "total" in o.get("status", {}) and o,
                          90, f"the function to price {name} (trigger log: {shop.workdir / 'trigger.log'})")
        assert priced["status"]["total"] == total, priced["status"]
        # the trigger's event id is the key at the revision that created the order
        assert priced["status"]["pricedBy"]["eventId"] == f"{PREFIX}{name}@{created[name]['metadata']['resourceVersion']}"
        invoice = wait_for(lambda: (cm := get(api, "configmaps", f"invoice-{name}"))
                           and cm["data"]["state"] == "final" and cm, 60, f"the final invoice of {name}")
        assert invoice["data"]["total"] == str(total)
        (owner,) = invoice["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"]) == ("Order", created[name]["metadata"]["uid"])
    stats = json.loads(urllib.request.urlopen(fn.url + "/stats", timeout=10).read())
    assert stats["priced"] == {o["status"]["pricedBy"]["eventId"]: 1
                               for o in (get(api, "orders", n) for n in ORDERS)}, stats
    # one trace: kubectl create → kube-apiserver → kv-router → PostgreSQL shard → trigger → function
    first = f"{PREFIX}e1@{created['e1']['metadata']['resourceVersion']}"
    assert_one_trace(shop.collector, stats["traceparents"][first])

    # update: the invoice follows the spec; MODIFIED is not the trigger's event type, so no repricing
    api.kubectl("patch", "order", "e2", "-n", NS, "--type=merge",
                "-p", json.dumps({"spec": {"items": [{"sku": "gadget", "quantity": 2}]}}))
    wait_for(lambda: get(api, "configmaps", "invoice-e2")["data"]["lines"] == "2 x gadget", 60, "e2's invoice lines")
    assert get(api, "orders", "e2")["status"]["total"] == 4999, "priced once, at creation"

    # the REST layer, through kube-apiserver: a stored report and an ad-hoc query
    api.kubectl("apply", "-n", NS, "-f", "-", input=json.dumps({
        "apiVersion": "reports.shop.example.com/v1alpha1", "kind": "OrderReport",
        "metadata": {"name": "big-acme"}, "spec": {"customer": "acme", "minTotal": 1000}}))
    report = json.loads(api.kubectl("get", "--raw", f"{REPORTS}/big-acme/result"))
    assert (report["kind"], report["customer"], report["minTotal"]) == ("OrderReportResult", "acme", 1000)
    assert report["orders"] == [{"name": "e1", "total": 2800}, {"name": "e5", "total": 4999}], report
    assert (report["count"], report["sum"]) == (2, 2800 + 4999)
    assert json.loads(api.kubectl("get", "--raw", f"{REPORTS}/-/query?customer=globex&minTotal=4998"))["orders"] \
        == [{"name": "e2", "total": 4999}]
    assert json.loads(api.kubectl("get", "--raw", f"{REPORTS}/-/query?customer=globex&minTotal=4999"))["orders"] == []
    # the customer selector is answered by the orders shard's index (the example's topology)
    found = wait_for(lambda: (r := customer_query(shop, "acme")).indexed and r, 30, "an indexed answer")
    assert sorted(kv.key.decode() for kv in found.kvs) == [PREFIX + n for n in ("e1", "e3", "e5")]
    code, text = api.raw(f"{REPORTS}/-/query?customer=acme&minTotal=lots")
    assert code == 400 and "minTotal must be a whole number of cents" in text, (code, text)

    # delete: the operator's finalizer removes the invoice before the order goes
    api.kubectl("delete", "order", "e3", "-n", NS, "--wait=true", "--timeout=60s")
    assert get(api, "orders", "e3") is None
    assert get(api, "configmaps", "invoice-e3") is None
    assert "order shop-e2e/e3 deleted: archive entry removed, invoice deleted" in op.log()

    # every event id priced exactly once, nothing priced by any other event (the function's own
    # status patches and the operator's writes are MODIFIED events, filtered by the trigger)
    wait_for(lambda: trigger_status(api).get("delivered", 0) >= len(ORDERS), 30, "the trigger's delivered count")
    stats = json.loads(urllib.request.urlopen(fn.url + "/stats", timeout=10).read())
    assert sorted(stats["priced"].values()) == [1] * len(ORDERS), stats
    assert stats["outcomes"].get("priced") == len(ORDERS), stats

    # the Orders live in the PostgreSQL shard and nowhere else
    live, history = order_keys_in_postgres(shop)
    assert live == {PREFIX + n for n in ORDERS if n != "e3"}, live
    assert PREFIX + "e3" in history, "the deleted order's history is in the orders shard"
    assert order_keys_in_sqlite(shop) == set(), "no Order key on the default shard"

    # the demo script through the same stack: what each layer did, then the orders deleted
    from shop import demo, model
    run = shop.start_shop("demo", "--count", "10", "--namespace", NS, "--delete", "--timeout", "90")
    assert run.proc.wait(150) == 0, run.log()[-3000:]
    out = run.log()
    assert "function: 10/10 orders priced within" in out and "operator: 10/10 orders invoiced" in out, out
    assert "deleted:  10 orders, their finalizers ran" in out, out
    over: dict[str, list[int]] = {c: [] for c in demo.CUSTOMERS}
    for o in demo.orders(10):   # the e* orders left in NS are all under 100.00
        if (total := model.price(o["spec"])) > 10_000:
            over[o["spec"]["customer"]].append(total)
    expected = ", ".join(f"{c} {len(t)} ({sum(t) / 100:.2f})" for c, t in over.items())
    assert f"rest:     orders over 100.00 by customer (orderreports query): {expected}" in out, out
