"""The pricing function (examples/shop/shop/function.py) with CloudEvents sent by hand, as the
trigger sends them (Knative ApiServerSource types, id key@mod_revision, the object as data),
against a real kube-apiserver on KubeFabric: it prices an ADDED order once per event id, whatever
the redeliveries (sequential or concurrent), and answers the other cases without writing."""
from __future__ import annotations

import concurrent.futures
import json
import urllib.error
import urllib.request

import pytest
from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent

from harness.shop import order

pytestmark = pytest.mark.timeout(600)

ADDED = "dev.knative.apiserver.resource.add"


@pytest.fixture(scope="module")
def fn(shop):
    shop.api.kubectl("create", "namespace", "fn")
    return shop.start_function()


def create(api, obj: dict, ns: str = "fn") -> dict:
    return json.loads(api.kubectl("create", "-n", ns, "-o", "json", "-f", "-", input=json.dumps(obj)))


def event_of(obj: dict, type_: str = ADDED, id_: str | None = None) -> CloudEvent:
    meta = obj["metadata"]
    key = f"/registry/shop.example.com/orders/{meta['namespace']}/{meta['name']}"
    return CloudEvent(attributes={
        "id": id_ or f"{key}@{meta['resourceVersion']}", "source": "https://kube-apiserver.test",
        "type": type_, "subject": f"/apis/shop.example.com/v1/namespaces/{meta['namespace']}/orders/{meta['name']}",
        "datacontenttype": "application/json", "specversion": "1.0"}, data=obj)


def deliver(fn, event: CloudEvent, structured: bool = False) -> tuple[int, dict]:
    msg = to_structured_event(event) if structured else to_binary_event(event)
    req = urllib.request.Request(fn.url + "/", data=msg.body, headers=msg.headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def status(api, name: str, ns: str = "fn") -> dict:
    return json.loads(api.kubectl("get", "order", name, "-n", ns, "-o", "json"))


def test_prices_an_added_order_once_per_event_id(shop, fn):
    obj = create(shop.api, order("p1", "acme", [("widget", 2), ("gizmo", 3)]))
    event = event_of(obj)
    code, body = deliver(fn, event)
    assert (code, body["outcome"]) == (200, "priced"), body
    priced = status(shop.api, "p1")
    assert priced["status"]["total"] == 2 * 1250 + 3 * 300
    assert priced["status"]["pricedBy"]["eventId"] == event.get_id()
    # redelivered (at-least-once), in either content mode: nothing is written again
    for structured in (False, True):
        code, body = deliver(fn, event, structured=structured)
        assert (code, body["outcome"]) == (200, "duplicate"), body
    assert status(shop.api, "p1")["metadata"]["resourceVersion"] == priced["metadata"]["resourceVersion"]


def test_concurrent_redeliveries_price_once(shop, fn):
    obj = create(shop.api, order("p2", "globex", [("gadget", 1)]))
    event = event_of(obj)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: deliver(fn, event), range(8)))
    outcomes = sorted(body["outcome"] for _, body in results)
    assert all(code == 200 for code, _ in results), results
    assert outcomes == ["duplicate"] * 7 + ["priced"], outcomes
    stats = json.loads(urllib.request.urlopen(fn.url + "/stats", timeout=10).read())
    assert stats["priced"][event.get_id()] == 1
    assert status(shop.api, "p2")["status"]["total"] == 4999


def test_unknown_sku_is_a_pricing_error_in_the_status(shop, fn):
    obj = create(shop.api, order("p3", "acme", [("flux-capacitor", 1)]))
    code, body = deliver(fn, event_of(obj))
    assert (code, body["outcome"]) == (200, "priced"), body
    st = status(shop.api, "p3")["status"]
    assert "total" not in st and st["pricingError"].startswith("unknown SKU 'flux-capacitor'")


def test_other_events_are_acknowledged_without_writing(shop, fn):
    obj = create(shop.api, order("p4"))
    rv = obj["metadata"]["resourceVersion"]
    for type_ in ("dev.knative.apiserver.resource.update", "dev.knative.apiserver.resource.delete"):
        code, body = deliver(fn, event_of(obj, type_))
        assert (code, body["outcome"]) == (200, "ignored"), body
    # an event about an order that was deleted, or replaced by a new one of the same name
    old = event_of(obj)
    shop.api.kubectl("delete", "order", "p4", "-n", "fn")
    code, body = deliver(fn, old)
    assert (code, body["outcome"]) == (200, "gone"), body
    create(shop.api, order("p4"))
    code, body = deliver(fn, old)
    assert (code, body["outcome"]) == (200, "stale"), body
    assert "status" not in status(shop.api, "p4") and rv


@pytest.mark.parametrize("body, headers, why", [
    (b"hello", {"content-type": "text/plain"}, "not a CloudEvent"),
    (b'{"specversion": "1.0", "id": "x", "source": "s", "type": "' + ADDED.encode() + b'", "data": [1]}',
     {"content-type": "application/cloudevents+json"}, "not a Kubernetes object"),
    (b'{"specversion": "1.0", "id": "x", "source": "s", "type": "' + ADDED.encode() +
     b'", "data": {"kind": "Pod", "metadata": {"name": "p", "namespace": "fn"}}}',
     {"content-type": "application/cloudevents+json"}, "about a Pod"),
])
def test_bad_requests_get_a_400_with_a_sentence(fn, body, headers, why):
    req = urllib.request.Request(fn.url + "/", data=body, headers=headers, method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400
    message = json.loads(err.value.read())["error"]
    assert why in message and "\n" not in message
