"""A watch-hub and a shard service stop cleanly while NATS is down (and they are reconnecting).

nats-py's close() writes what it buffered during the reconnect to the dead connection; uvloop
refuses ("the handler is closed") and the hub's shutdown ended in a traceback, exit code 1."""
from __future__ import annotations

import time

from harness.client import Client
from harness.nats import NatsServer


def test_hub_and_shard_stop_cleanly_while_nats_is_down(server_factory, tmp_path):
    nats = NatsServer(tmp_path)
    nats.start()
    stack = server_factory.hub(nats=nats)
    c = Client(stack.endpoint)
    try:
        c.put(b"/k", b"v")
    finally:
        c.close()
    nats.kill()
    time.sleep(2.5)  # both notice, start reconnecting and buffer (heartbeats, unsubscribes)
    (replica,) = [r for replicas in stack.shards.values() for r in replicas]
    for server in (*stack.hubs, replica):
        code = server.stop()
        log = server.log()
        assert code == 0, f"{server.kind} exited with {code}:\n{log[-3000:]}"
        assert "Traceback" not in log, f"{server.kind} logged a traceback:\n{log[-3000:]}"
