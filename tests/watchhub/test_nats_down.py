"""Watch-hubs and shard services while NATS is down: the merged feed keeps moving, and both stop
cleanly."""
from __future__ import annotations

import time

from harness.client import Client
from harness.nats import NatsServer
from harness.stream import WatchStream


def test_a_write_to_one_shard_reaches_watchers_while_nats_is_down(server_factory, tmp_path):
    """Three shards behind one hub, NATS killed, then writes to one shard only: the hub's merged
    feed can pass a revision only once every shard closed it, and the idle shards were asked to
    close it only on kf.clock (NATS): the watch waited until the next write to each of them."""
    nats = NatsServer(tmp_path)
    nats.start()
    stack = server_factory.hub(nats=nats, three=True)
    c = Client(stack.endpoint)
    try:
        c.put(b"/registry/configmaps/default/a", b"1")
        nats.kill()
        time.sleep(2.0)  # the hub has polled the shards once (STALL_S)
        with WatchStream(c, timeout=20) as w:
            w.created(b"/registry/", range_end=b"/registry0")
            revs = [c.put(b"/registry/configmaps/default/b", b"%d" % i).header.revision for i in range(3)]
            t0 = time.monotonic()
            got = [e.kv.mod_revision for r in w.events(3, timeout=15) for e in r.events]
            assert got == revs, f"events {got} for writes {revs}"
            assert time.monotonic() - t0 < 10
    finally:
        c.close()


def test_hub_and_shard_stop_cleanly_while_nats_is_down(server_factory, tmp_path):
    """nats-py's close() wrote what it buffered during the reconnect to the dead connection;
    uvloop refused ("the handler is closed"): a traceback, exit code 1."""
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
