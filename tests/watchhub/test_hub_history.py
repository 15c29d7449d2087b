"""The watch guarantees through watch-hubs, under faults (issue 5).

kv-router --watch-hub in front of two watch-hubs, three shard services publishing on NATS
JetStream (harness.servers.HUB_THREE_SHARDS: SQLite, two PostgreSQL replicas, MariaDB). The
randomized history of harness.histload runs against the router (eight clients, a lease client,
watches from revision 1, per shard, mid-way, with progress, restarted every second, resumed
afterwards) while one fault strikes 40 % into the load; then per-key linearizability, revision
order, snapshots and ordered / unique / atomic / reliable / resumable / bookmarkable for every
watch. No watch may end or be cancelled: the router moves streams between hubs, the hubs fill
gaps from the shards.
"""
from __future__ import annotations

import signal
import time

import grpc
import pytest

from harness.histload import run_history
from harness.nats import NatsServer
from harness.servers import start_hub
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2_grpc

ROUTER_FLAGS = ["--watch-progress-notify-interval=300ms"]


def role(replica) -> str:
    with grpc.insecure_channel(replica.endpoint) as ch:
        try:
            return shard_pb2_grpc.ShardStub(ch).Status(spb.StatusRequest(), timeout=2).role
        except grpc.RpcError:
            return "down"


def restart_nats(stack):
    t = time.monotonic()
    stack.nats.kill()
    time.sleep(1.5)
    stack.nats.start()
    return f"NATS killed (SIGKILL) and restarted after {time.monotonic() - t:.1f}s"


def restart_hub(stack):
    hub = stack.hubs[0]
    hub.stop(signal.SIGKILL)
    time.sleep(1.0)
    port = int(hub.endpoint.rsplit(":", 1)[1])
    stack.hubs[0] = start_hub(stack.workdir, stack.nats.url, topology=stack.topology, port=port,
                              extra=["--watch-progress-notify-interval=300ms"])
    stack.track(stack.hubs[0])
    return f"watch-hub {hub.endpoint} killed (SIGKILL), its streams moved, restarted after 1s"


def fail_over(stack):
    replicas = stack.shards["tenants"]
    leader = next((r for r in replicas if role(r) == "leader"), None)
    assert leader is not None, "no leader among the tenants replicas"
    leader.stop(signal.SIGKILL)
    other = next(r for r in replicas if r is not leader)
    t = time.monotonic()
    while role(other) != "leader" and time.monotonic() - t < 15:
        time.sleep(0.05)
    return f"tenants leader {leader.endpoint} killed (SIGKILL); {other.endpoint} led after {time.monotonic() - t:.2f}s"


FAULTS = {"none": None, "nats-restart": restart_nats, "hub-killed": restart_hub,
          "leader-failover": fail_over}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_watch_guarantees_through_hubs(server_factory, say, tmp_path, fault):
    nats = None
    if fault == "nats-restart":  # a NATS of its own to kill
        nats = NatsServer(tmp_path)
        nats.start()
    try:
        stack = server_factory.hub(ROUTER_FLAGS, nats=nats, three=True, hubs=2)
        inject = FAULTS[fault]
        # nine processes and two databases on two cores: a smaller history than tests/routing's
        figures = run_history(stack.endpoint, say, fault=(lambda: inject(stack)) if inject else None,
                              min_writes=100, min_events=300)
        say(f"fault {fault}: {figures['events checked']} watch events checked")
    finally:
        if nats is not None:
            nats.stop()
