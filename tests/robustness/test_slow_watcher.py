"""A watch client that stops reading must not make the server buffer without bound, and must not
silently lose events: past --watch-stream-buffer-bytes its watchers are cancelled, each with a
reason, after the events already queued (which arrive in order, without gaps). Other streams are
unaffected. Embedded, and through a watch-hub (the hub cancels; kv-router relays within a bounded
buffer, so the slow client's backlog stops at the hub)."""
from __future__ import annotations

import queue
import threading
import time

import pytest

from harness.client import Client
from harness.servers import start_kubefabric
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

VALUE = b"v" * 200_000
PUTS = 150  # 30 MB of events against a 1 MiB budget


def open_watch(client: Client, key: bytes):
    requests: queue.Queue = queue.Queue()
    requests.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key, range_end=key + b"\xff")))
    responses = client.watch.Watch(iter(requests.get, None), timeout=120)
    created = next(responses)
    assert created.created and not created.canceled
    return requests, responses


# a budget of 5 responses embedded; through a hub the "fast" client reads across two hops (hub
# -> router -> client), so its stream gets 20 to keep up on a loaded machine
@pytest.mark.parametrize("target, budget", [("embedded", 1024 * 1024), ("hub", 4 * 1024 * 1024)])
def test_slow_watcher_is_cancelled_with_a_reason(tmp_path, server_factory, target, budget):
    flags = ["--watch-stream-buffer-bytes", str(budget)]
    if target == "hub":
        server = server_factory.hub(flags).router
    else:
        server = start_kubefabric(tmp_path, flags)
    writer, slow, fast = Client(server.endpoint), Client(server.endpoint), Client(server.endpoint)
    try:
        slow_requests, slow_responses = open_watch(slow, b"/w/")
        fast_requests, fast_responses = open_watch(fast, b"/w/")
        fast_seen: list[int] = []

        def keep_up():
            while len(fast_seen) < PUTS:
                fast_seen.extend(e.kv.mod_revision for e in next(fast_responses).events)

        reader = threading.Thread(target=keep_up, daemon=True)
        reader.start()
        revisions = [writer.put(b"/w/%03d" % i, VALUE).header.revision for i in range(PUTS)]
        reader.join(60)
        assert fast_seen == revisions, "a client that keeps up gets every event"

        time.sleep(0.5)
        seen, cancel = [], None
        for resp in slow_responses:
            if resp.canceled:
                cancel = resp
                break
            seen += [e.kv.mod_revision for e in resp.events]
        assert cancel is not None, "the slow stream was never cancelled"
        assert "too slow" in cancel.cancel_reason and str(budget) in cancel.cancel_reason
        assert seen == revisions[:len(seen)], "events before the cancel are a gap-free prefix"
        assert len(seen) < PUTS, "the budget should have been exceeded before all events queued"
        print(f"slow watcher: {len(seen)} of {PUTS} events, then cancelled: {cancel.cancel_reason}")
        slow_requests.put(None)
        fast_requests.put(None)
    finally:
        for c in (writer, slow, fast):
            c.close()
        server.stop()
