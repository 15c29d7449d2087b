"""Triggers stored in the data layer (HTTPTrigger objects as kube-apiserver stores custom
resources), picked up and changed live, with their status written back into the object;
sendInitialEvents; the re-list after a compaction gap."""
from __future__ import annotations

import json
import signal
import time

import pytest

from harness.client import Client
from triggertest import http_trigger, wait_until, widget

KEY = b"/registry/triggers.kubefabric.io/httptriggers/default/live"


def store_trigger(c: Client, obj: dict, generation: int) -> None:
    obj = json.loads(json.dumps(obj))
    obj["metadata"].update({"uid": "uid-live", "generation": generation})
    c.put(KEY, json.dumps(obj).encode())


@pytest.mark.timeout(900)
def test_cluster_triggers_live(server_factory, start_trigger, receiver):
    kf = server_factory("kubefabric")
    c = Client(kf.endpoint)
    start_trigger(kf.endpoint, cluster=True)
    store_trigger(c, http_trigger("live", receiver.url + "/v1"), 1)
    # started once its origin is recorded
    wait_until(lambda: c.get(b"/kubefabric/trigger/origin/uid-live").kvs, what="the trigger to start")
    key, value = widget("a")
    c.put(key, value)
    receiver.wait_for(lambda calls: any(x.path == "/v1" and x.status == 200 for x in calls), what="v1")
    store_trigger(c, http_trigger("live", receiver.url + "/v2"), 2)     # a spec change
    time.sleep(2)
    c.put(*widget("b"))
    receiver.wait_for(lambda calls: any(x.path == "/v2" and x.status == 200 for x in calls), what="v2")
    # status in the object (the status subresource), its spec untouched
    def status():
        obj = json.loads(c.get(KEY).kvs[0].value)
        return obj.get("status") if obj["spec"]["url"]["static"].endswith("/v2") else None
    st = wait_until(lambda: (s := status()) and s.get("observedGeneration") == 2 and s.get("delivered", 0) >= 1
                    and s, what="the status in the HTTPTrigger object")
    assert st["conditions"][0]["type"] == "Ready" and st["conditions"][0]["status"] == "True"
    c.delete(KEY)
    time.sleep(2)
    before = len(receiver.calls)
    c.put(*widget("c"))
    time.sleep(2)
    assert len(receiver.calls) == before, "a deleted trigger still delivers"
    c.close()


@pytest.mark.timeout(900)
def test_initial_events_and_compaction_relist(server_factory, start_trigger, receiver):
    kf = server_factory("kubefabric")
    c = Client(kf.endpoint)
    existing = [widget(f"pre{i}", spec={"v": 0}) for i in range(3)]
    for key, value in existing:
        c.put(key, value)
    trig = [http_trigger("init", receiver.url, sendInitialEvents=True)]
    t = start_trigger(kf.endpoint, trig, name="i0")
    receiver.wait_for(lambda calls: sum(x.status == 200 for x in calls) >= 3, what="initial events")
    assert sorted(x.ce_id.split("@")[0].rsplit("/", 1)[1] for x in receiver.accepted()) == ["pre0", "pre1", "pre2"]
    assert {x.ce_type for x in receiver.accepted()} == {"dev.knative.apiserver.resource.add"}
    time.sleep(1)   # the watermark is recorded
    t.stop(signal.SIGTERM)
    # while the trigger is down: changes, then a compaction past all of them
    changed = [c.put(*widget("pre1", spec={"v": 1})).header.revision]
    c.put(*widget("pre1", spec={"v": 2}))
    added = c.put(*widget("new", spec={"v": 1})).header.revision
    last = c.put(*widget("pre2", spec={"v": 1})).header.revision
    from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
    c.kv.Compact(pb.CompactionRequest(revision=last))
    n = len(receiver.calls)
    start_trigger(kf.endpoint, trig, name="i0")
    receiver.wait_for(lambda calls: sum(x.status == 200 for x in calls[n:]) >= 3, what="re-listed changes")
    relisted = {x.ce_id.split("@")[0].rsplit("/", 1)[1]: x for x in receiver.accepted()[3:]}
    assert set(relisted) == {"pre1", "new", "pre2"}
    assert relisted["new"].ce_type.endswith(".add") and relisted["pre1"].ce_type.endswith(".update")
    assert json.loads(relisted["pre1"].body)["spec"] == {"v": 2} and changed
    st = wait_until(lambda: (s := {r["trigger"]: r["status"] for r in
                                   [json.loads(kv.value) for kv in c.get(b"/kubefabric/trigger/status/",
                                                                         range_end=b"/kubefabric/trigger/status0").kvs]})
                    .get("default/init", {}).get("relists") and s, what="the relist in status")
    assert st["default/init"]["lastRelist"]["revision"] >= added
    c.close()
