"""Receivers that fail (500s, 429 with Retry-After, timeouts, refused connections), the
dead-letter queue and its commands, bad filters reported in status, Secret rotation: all with
real parts (`kubefabric serve`, `kubefabric trigger`, an aiohttp receiver)."""
from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from triggertest import http_trigger, records, run_cli, secret, statuses, wait_until, widget
from harness.client import Client
from harness.servers import free_port
from receiver import Behaviour

FAST = {"initial": "50ms", "max": "200ms"}


@pytest.mark.timeout(900)
def test_retries_retry_after_and_dead_letters(server_factory, start_trigger, receiver):
    kf = server_factory("kubefabric")
    c = Client(kf.endpoint)
    seen: Counter = Counter()
    slow = {"on": True}

    def plan(n, call):
        seen[(call.path, call.ce_id)] += 1
        attempt = seen[(call.path, call.ce_id)]
        if call.path == "/500":
            return Behaviour(status=500 if attempt <= 2 else 200)
        if call.path == "/429":
            return Behaviour(status=429, retry_after="2") if attempt == 1 else Behaviour()
        if call.path == "/slow":
            return Behaviour(delay=2.0) if slow["on"] else Behaviour()
        return Behaviour()

    receiver.plan = plan
    dead = f"http://127.0.0.1:{free_port()}/refused"
    start_trigger(kf.endpoint, [
        http_trigger("t500", receiver.url + "/500", delivery={"retries": 3, "backoff": FAST}),
        http_trigger("t429", receiver.url + "/429", delivery={"retries": 2, "backoff": {"initial": "10ms"}}),
        http_trigger("tslow", receiver.url + "/slow", delivery={"timeout": "300ms", "retries": 1, "backoff": FAST}),
        http_trigger("trefused", dead, delivery={"retries": 1, "backoff": FAST}),
    ])
    key, value = widget("f1", spec={"x": 1})
    rev = c.put(key, value).header.revision
    eid = f"{key.decode()}@{rev}"
    receiver.wait_for(lambda calls: any(x.path == "/500" and x.status == 200 for x in calls)
                      and any(x.path == "/429" and x.status == 200 for x in calls), what="retried deliveries")
    by_path: dict = {}
    for call in receiver.calls:
        by_path.setdefault(call.path, []).append(call)
    assert [x.status for x in by_path["/500"]] == [500, 500, 200]
    assert {x.ce_id for x in by_path["/500"]} == {eid}
    t429 = by_path["/429"]
    assert [x.status for x in t429] == [429, 200] and t429[1].at - t429[0].at >= 1.9

    def letters():
        return records(c, b"/kubefabric/trigger/dlq/")

    wait_until(lambda: len(letters()) >= 2, what="two dead letters")
    got = {d["trigger"]: d for d in json.loads(run_cli(kf.endpoint, "dlq", "list", "-o", "json"))}
    assert set(got) == {"default/tslow", "default/trefused"}
    assert got["default/tslow"]["id"] == eid and got["default/tslow"]["attempts"] == 2
    assert "within 0.3s" in got["default/tslow"]["error"]
    assert "cannot connect" in got["default/trefused"]["error"]
    assert got["default/trefused"]["object"]["spec"] == {"x": 1}
    table = run_cli(kf.endpoint, "dlq", "list")
    assert "default/tslow" in table and eid in table

    slow["on"] = False    # the function is fixed: replay its letter
    assert "1 dead letter(s) queued for replay" in run_cli(kf.endpoint, "dlq", "replay", "--trigger", "default/tslow")
    receiver.wait_for(lambda calls: any(x.path == "/slow" and x.status == 200 for x in calls), what="the replay")
    wait_until(lambda: len(letters()) == 1, what="the replayed letter to go")
    assert [d["trigger"] for d in letters()] == ["default/trefused"]
    assert "1 dead letter(s) purged" in run_cli(kf.endpoint, "dlq", "purge", "--id", eid)
    assert letters() == []

    status = wait_until(lambda: (st := statuses(c)).get("default/trefused", {}).get("deadLettered") == 1
                        and st.get("default/t500", {}).get("delivered") == 1 and st, what="statuses")
    assert "default/t500" in run_cli(kf.endpoint, "status")
    assert status["default/t500"]["failed"] == 2 and status["default/t500"]["lastDeliveredRevision"] >= rev
    assert "cannot connect" in status["default/trefused"]["lastError"]
    c.close()


def test_bad_filters_are_reported(server_factory, start_trigger, receiver):
    kf = server_factory("kubefabric")
    c = Client(kf.endpoint)
    start_trigger(kf.endpoint, [
        http_trigger("badtemplate", receiver.url + "/a", eventFilter="{{"),
        http_trigger("badcel", receiver.url + "/b", celFilter="object.metadata.name =="),
        http_trigger("unknownvar", receiver.url + "/c", celFilter="foo == 1"),
        http_trigger("runtime", receiver.url + "/d", celFilter="object.spec.size > 1"),
        http_trigger("good", receiver.url + "/e",
                     celFilter='event.type == "ADDED" && has(object.spec.size) && object.spec.size > 1'),
        http_trigger("gofilter", receiver.url + "/f", eventFilter="gt .spec.size 1"),
    ])
    c.put(*widget("small", spec={"size": 1}))
    c.put(*widget("nospec"))
    key, value = widget("big", spec={"size": 5})
    rev = c.put(key, value).header.revision
    receiver.wait_for(lambda calls: sum(x.status == 200 for x in calls) >= 3, what="filtered events")
    time.sleep(1)
    paths = sorted((x.path, x.ce_id) for x in receiver.accepted())
    big = f"{key.decode()}@{rev}"
    assert paths == [("/d", big), ("/e", big), ("/f", big)]

    status = wait_until(lambda: (st := statuses(c)) and len(st) == 6
                        and st["default/runtime"].get("filterErrors") and st, what="six statuses")
    for name, words in (("badtemplate", "filter_template"), ("badcel", "celFilter"),
                        ("unknownvar", "undeclared reference to foo")):
        ready = status[f"default/{name}"]["conditions"][0]
        assert ready["status"] == "False" and ready["reason"] == "InvalidSpec", ready
        assert words in ready["message"], ready["message"]
    rt = status["default/runtime"]
    assert rt["filterErrors"] == 1 and "celFilter" in rt["lastError"]   # the object without spec
    assert status["default/good"]["conditions"][0]["status"] == "True"
    c.close()


def test_secret_rotation(server_factory, start_trigger, receiver):
    kf = server_factory("kubefabric")
    c = Client(kf.endpoint)
    c.put(*secret("token", {"value": "v1"}))
    start_trigger(kf.endpoint, [http_trigger("rot", receiver.url, headers={
        "fromSecretRef": {"X-Token": {"name": "token", "key": "value"}}})])
    c.put(*widget("a"))
    receiver.wait_for(lambda calls: any(x.status == 200 for x in calls), what="the first event")
    assert receiver.accepted()[0].headers["X-Token"] == "v1"
    c.put(*secret("token", {"value": "v2"}))
    time.sleep(1)   # the trigger follows Secrets with a watch
    c.put(*widget("b"))
    receiver.wait_for(lambda calls: sum(x.status == 200 for x in calls) >= 2, what="the second event")
    assert receiver.accepted()[1].headers["X-Token"] == "v2"
    c.close()
