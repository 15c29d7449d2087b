"""No task outlives its stream (issue 14, item 4): kv-router relays each client watch stream to a
watch-hub and moves it to another hub when that one goes away. Every move used to leave the
relay's request pump behind (a task blocked on a queue nobody fed, later destroyed while pending:
"Task was destroyed but it is pending!", "aclose(): asynchronous generator is already running").

Counted from the router's own gauge `kubefabric_asyncio_tasks` (every process exports it): after
streams were opened, moved between hubs twice and closed, the router is back to the tasks it had
before, and its log has none of those messages.
"""
from __future__ import annotations

import re
import time
import urllib.request

from harness.client import Client
from harness.servers import free_port, start_hub
from harness.stream import WatchStream

STREAMS = 10


def tasks(metrics_url: str) -> int:
    body = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    return int(float(re.search(r"^kubefabric_asyncio_tasks (\S+)$", body, re.M)[1]))


def settled(metrics_url: str, want=lambda n: True, timeout: float = 20.0) -> int:
    """The task count once two samples in a row agree and satisfy `want` (or the last one seen
    after `timeout`)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        time.sleep(2.1)  # the gauge is sampled every 2 s
        now = tasks(metrics_url)
        if (now == last and want(now)) or time.monotonic() > deadline:
            return now
        last = now


def test_moved_watch_streams_leave_no_task_behind(server_factory):
    metrics = f"127.0.0.1:{free_port()}"
    stack = server_factory.hub(["--metrics-address", metrics], hubs=2)
    url = f"http://{metrics}/metrics"
    c = Client(stack.endpoint)
    streams = []
    try:
        c.put(b"/moved/warm", b"0")
        baseline = settled(url)
        for i in range(STREAMS):
            ws = WatchStream(c)
            created = ws.created(b"/moved/", b"/moved0")
            assert created.created and not created.canceled, created
            streams.append(ws)
        for round_ in range(2):  # every stream moves: each hub is stopped once, then restarted
            hub = stack.hubs[round_]
            hub.stop()
            rev = c.put(b"/moved/k", b"%d" % round_).header.revision
            for ws in streams:
                events = [e for r in ws.events(1, timeout=30) for e in r.events]
                assert [e.kv.mod_revision for e in events] == [rev], events
            stack.hubs[round_] = start_hub(stack.workdir, stack.nats.url, stack.shards[next(iter(stack.shards))],
                                           shard_name=next(iter(stack.shards)), port=int(hub.endpoint.rsplit(":", 1)[1]))
            stack.track(stack.hubs[round_])
        for ws in streams:
            ws.close()
        streams.clear()
        after = settled(url, lambda n: n <= baseline)
        log = stack.router.log()
        assert "Task was destroyed" not in log, log[-4000:]
        assert "asynchronous generator is already running" not in log, log[-4000:]
        assert after <= baseline, (f"{after - baseline} tasks outlived their streams ({baseline} "
                                   f"before the streams, {after} after)")
    finally:
        for ws in streams:
            ws.close()
        c.close()
