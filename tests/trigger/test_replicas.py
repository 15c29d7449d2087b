"""Scale-out and the feeds: two replicas share a trigger by rendezvous hashing; kill -9 of one
mid-delivery loses nothing and keeps each object's order; a trigger reading through a
watch-hub (NATS JetStream) gets the same guarantees as one on `kubefabric serve`."""
from __future__ import annotations

import signal
import urllib.request

import pytest

from harness.client import Client
from receiver import Behaviour
from triggertest import http_trigger, widget


def delivered_metric(endpoint: str) -> float:
    text = urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("kubefabric_trigger_events_delivered_total{"))


def check_order(calls, expected: list[str]) -> None:
    """Every expected event delivered; per object the first deliveries in revision order."""
    delivered = [x.ce_id for x in calls]
    assert set(delivered) >= set(expected), f"lost: {sorted(set(expected) - set(delivered))[:10]}"
    for obj in {e.rsplit("@", 1)[0] for e in expected}:
        revs = [int(d.rsplit("@", 1)[1]) for d in delivered if d.startswith(obj + "@")]
        firsts = [r for i, r in enumerate(revs) if r not in revs[:i]]
        assert firsts == sorted(firsts), f"{obj} out of order: {revs}"


def write(c: Client, n: int, objects: int, start: int = 0) -> list[str]:
    out = []
    for i in range(start, start + n):
        key, value = widget(f"r{i % objects}", spec={"i": i})
        out.append(f"{key.decode()}@{c.put(key, value).header.revision}")
    return out


@pytest.mark.timeout(900)
def test_two_replicas_and_kill_9(server_factory, start_trigger, receiver):
    kf = server_factory("kubefabric")
    c = Client(kf.endpoint)
    receiver.plan = lambda n, call: Behaviour(delay=0.01)
    trig = [http_trigger("shared", receiver.url, concurrency=4)]
    r0 = start_trigger(kf.endpoint, trig, name="r0")
    r1 = start_trigger(kf.endpoint, trig, name="r1")
    expected = write(c, 60, 12)
    receiver.wait_for(lambda calls: {x.ce_id for x in calls if x.status == 200} >= set(expected),
                      timeout=120, what="the first 60 events")
    assert delivered_metric(r0.endpoint) > 0 and delivered_metric(r1.endpoint) > 0, \
        "both replicas deliver a share"
    receiver.plan = lambda n, call: Behaviour(delay=0.05)
    expected += write(c, 60, 12, start=60)
    receiver.wait_for(lambda calls: sum(x.status == 200 for x in calls) >= 70, timeout=120,
                      what="deliveries under way")
    r1.stop(signal.SIGKILL)           # mid-delivery: its share moves to r0 within the lease
    expected += write(c, 40, 12, start=120)
    receiver.wait_for(lambda calls: {x.ce_id for x in calls if x.status == 200} >= set(expected),
                      timeout=180, what="every event after the hand-over")
    check_order(receiver.accepted(), expected)
    c.close()


@pytest.mark.timeout(900)
def test_through_a_watch_hub(server_factory, start_trigger, receiver):
    """kv-router --watch-hub, a watch-hub and a shard service publishing on NATS; the trigger
    crashes mid-stream and resumes from its watermark through the hub."""
    stack = server_factory.hub()
    c = Client(stack.endpoint)
    receiver.plan = lambda n, call: Behaviour(delay=0.01)
    trig = [http_trigger("hub", receiver.url, concurrency=3)]
    t = start_trigger(stack.endpoint, trig, name="h0")
    expected = write(c, 40, 8)
    receiver.wait_for(lambda calls: sum(x.status == 200 for x in calls) >= 10, timeout=120, what="deliveries")
    t.stop(signal.SIGKILL)
    expected += write(c, 30, 8, start=40)
    start_trigger(stack.endpoint, trig, name="h0")
    receiver.wait_for(lambda calls: {x.ce_id for x in calls if x.status == 200} >= set(expected),
                      timeout=180, what="every event through the hub")
    check_order(receiver.accepted(), expected)
    c.close()
