"""The invoice operator (examples/shop/shop/operator.py, kopf) against a real kube-apiserver on
KubeFabric: each Order gets an invoice ConfigMap it owns and an archive entry outside
Kubernetes; the invoice follows the order's spec and price; deleting the order runs the
finalizer (archive entry removed, invoice deleted: no garbage collector runs here). Two replicas
elect one leader through a Lease stored in KubeFabric; a killed leader is replaced."""
from __future__ import annotations

import json
import signal
import time

import pytest

from harness.client import Client
from harness.shop import order, wait_for

pytestmark = pytest.mark.timeout(600)


def get(api, kind: str, name: str, ns: str) -> dict | None:
    code, text = api.raw(path(kind, name, ns))
    if code == 404:
        return None
    assert code == 200, f"GET {kind} {ns}/{name}: HTTP {code}: {text[:500]}"
    return json.loads(text)


def path(kind: str, name: str, ns: str) -> str:
    if kind == "orders":
        return f"/apis/shop.example.com/v1/namespaces/{ns}/orders/{name}"
    return f"/api/v1/namespaces/{ns}/{kind}/{name}"


def namespace(api, name: str) -> str:
    api.kubectl("create", "namespace", name)
    return name


def test_invoice_follows_the_order_and_goes_with_it(shop):
    api = shop.api
    ns = namespace(api, "op-life")
    archive = shop.workdir / "archive-life"
    op = shop.start_operator("life", "--namespace", ns, archive=archive, lease_duration=6)
    op.wait_log("acquired by life: leading")
    api.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(order("o1", "acme", [("widget", 2), ("gizmo", 1)])))
    o1 = wait_for(lambda: (o := get(api, "orders", "o1", ns)) and "invoice" in o.get("status", {}) and o,
                  60, "the operator to invoice o1")
    assert o1["status"]["invoice"] == {"configMap": "invoice-o1", "archived": True}
    assert "shop.example.com/invoice-archive" in o1["metadata"]["finalizers"]
    cm = get(api, "configmaps", "invoice-o1", ns)
    assert cm["data"] == {"customer": "acme", "lines": "2 x widget\n1 x gizmo", "total": "", "state": "pending"}
    (owner,) = cm["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("Order", "o1", o1["metadata"]["uid"], True)
    entry = json.loads((archive / ns / "o1.json").read_text())
    assert entry["uid"] == o1["metadata"]["uid"] and entry["state"] == "pending"

    # priced (as the function does it: the status subresource) -> the invoice is final
    api.kubectl("patch", "order", "o1", "-n", ns, "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": {"total": 2800}}))
    wait_for(lambda: get(api, "configmaps", "invoice-o1", ns)["data"]["state"] == "final", 60, "a final invoice")
    cm = get(api, "configmaps", "invoice-o1", ns)
    assert (cm["data"]["total"], cm["data"]["lines"]) == ("2800", "2 x widget\n1 x gizmo")
    # the customer changes the order -> the invoice lines follow
    api.kubectl("patch", "order", "o1", "-n", ns, "--type=merge",
                "-p", json.dumps({"spec": {"items": [{"sku": "gadget", "quantity": 3}]}}))
    wait_for(lambda: get(api, "configmaps", "invoice-o1", ns)["data"]["lines"] == "3 x gadget", 60, "invoice lines")
    assert json.loads((archive / ns / "o1.json").read_text())["lines"] == "3 x gadget"

    # deletion: the finalizer removes the archive entry and the invoice before the order goes
    api.kubectl("delete", "order", "o1", "-n", ns, "--wait=true", "--timeout=60s")
    assert get(api, "orders", "o1", ns) is None
    assert not (archive / ns / "o1.json").exists(), "the finalizer removed the archive entry"
    assert get(api, "configmaps", "invoice-o1", ns) is None, "the finalizer deleted the invoice"
    assert "order op-life/o1 deleted: archive entry removed, invoice deleted" in op.log()
    op.stop()
    assert op.proc.returncode == 0, op.log()[-2000:]


def lease_holder(api, ns: str) -> str | None:
    code, text = api.raw(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/shop-operator")
    if code == 404:
        return None
    return json.loads(text)["spec"].get("holderIdentity")


def invoiced_by(op, ns: str, name: str) -> bool:
    return f"invoice {ns}/invoice-{name}:" in op.log()


def test_one_leader_through_a_lease_in_kubefabric(shop):
    api = shop.api
    ns = namespace(api, "op-lease")
    flags = ("--namespace", ns, "--lease-namespace", ns)
    a = shop.start_operator("a", *flags, lease_duration=3)
    a.wait_log("acquired by a: leading")
    b = shop.start_operator("b", *flags, lease_duration=3)
    b.wait_log("held by a: waiting to take over")
    assert lease_holder(api, ns) == "a"
    # the Lease is an ordinary object in the store: on the default shard, through kv-router
    client = Client(shop.router.endpoint)
    try:
        stored = client.get(f"/registry/leases/{ns}/shop-operator".encode())
        assert stored.count == 1, "the Lease is stored under /registry/leases/"
    finally:
        client.close()

    api.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(order("first")))
    wait_for(lambda: get(api, "configmaps", "invoice-first", ns), 60, "invoice of the first order")
    assert invoiced_by(a, ns, "first") and not invoiced_by(b, ns, "first"), "only the leader acts"

    # the leader dies without releasing: b takes over once the lease has not been renewed for 3s
    killed = time.monotonic()
    a.stop(signal.SIGKILL)
    b.wait_log("acquired by b: leading", timeout=30)
    took = time.monotonic() - killed
    # b counts the 3 s from when it first saw a's last renewal, and a renews every retry period
    # (lease / 7.5 = 0.4 s): that renewal, and b's sighting of it, can precede the kill by up to
    # one retry period, so the earliest correct takeover is 3 - 0.4 s after the kill
    assert 3 - 3 / 7.5 <= took < 15, f"takeover after {took:.1f}s with a 3s lease"
    assert lease_holder(api, ns) == "b"
    api.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(order("second")))
    wait_for(lambda: get(api, "configmaps", "invoice-second", ns), 60, "invoice of the second order")
    assert invoiced_by(b, ns, "second")

    # a clean stop releases the lease: a new candidate leads at once, not after the lease duration
    c = shop.start_operator("c", *flags, lease_duration=3)
    c.wait_log("held by b: waiting to take over")
    stopped = time.monotonic()
    assert b.stop() == 0, b.log()[-2000:]
    assert "released" in b.log()
    c.wait_log("acquired by c: leading", timeout=30)
    assert time.monotonic() - stopped < 3 + 5, "a released lease is taken without waiting for it to expire"
    c.stop()
