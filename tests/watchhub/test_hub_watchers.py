"""Watches through kv-router and a watch-hub: many watchers on one stream, and watches that start
inside and below the retained history (issue 5)."""
from __future__ import annotations

import time
from collections import defaultdict

from harness.client import Client
from harness.stream import WatchStream
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

WATCHERS = 1000
WRITES = 20


def test_thousand_watchers_on_one_stream(server_factory, say):
    stack = server_factory.hub()
    c = Client(stack.endpoint)
    w = WatchStream(c, timeout=120)
    try:
        for i in range(WATCHERS):  # all on /fan/, each with its own options
            w.create(b"/fan/", range_end=b"/fan0", prev_kv=bool(i % 2))
        created = [w.recv(30) for _ in range(WATCHERS)]
        assert [r.watch_id for r in created] == list(range(WATCHERS))
        assert all(r.created and not r.canceled for r in created)
        t0 = time.monotonic()
        revs = [c.put(b"/fan/%02d" % i, b"v%d" % i).header.revision for i in range(WRITES)]
        got: dict[int, list[int]] = defaultdict(list)
        while sum(len(v) for v in got.values()) < WATCHERS * WRITES:
            r = w.recv(30)
            for e in r.events:
                got[r.watch_id].append(e.kv.mod_revision)
                assert e.HasField("prev_kv") == bool(r.watch_id % 2) or e.kv.version == 1
        elapsed = time.monotonic() - t0
        assert all(got[i] == revs for i in range(WATCHERS)), "every watcher gets every event once, in order"
        assert w.pending(0.5) == [], "nothing more"
        say(f"\n{WATCHERS} watchers on one stream through the hub: {WATCHERS * WRITES} events "
            f"delivered in {elapsed:.2f}s after the first write")
    finally:
        w.close()
        c.close()


def test_watch_from_inside_and_below_retained_history(server_factory):
    stack = server_factory.hub()
    c = Client(stack.endpoint)
    try:
        revs = [c.put(b"/h/%02d" % (i % 5), b"v%d" % i).header.revision for i in range(30)]
        compact_at = revs[10]
        c.call(c.kv.Compact, pb.CompactionRequest(revision=compact_at, physical=True))
        with WatchStream(c) as w:
            created = w.created(b"/h/", range_end=b"/h0", start_revision=revs[20])
            assert created.created and not created.canceled
            events = [e for r in w.events(len(revs) - 20) for e in r.events]
            assert [e.kv.mod_revision for e in events] == revs[20:], "replayed from inside the history"
            w.cancel(created.watch_id)
        with WatchStream(c) as w:
            created = w.created(b"/h/", range_end=b"/h0", start_revision=revs[5])
            cancel = created if created.canceled else w.recv()
            assert cancel.canceled and cancel.compact_revision == compact_at, cancel
        with WatchStream(c) as w:  # at the compact revision: still served, from it on
            created = w.created(b"/h/", range_end=b"/h0", start_revision=compact_at)
            assert not created.canceled
            events = [e for r in w.events(len(revs) - 10) for e in r.events]
            assert [e.kv.mod_revision for e in events] == revs[10:]
    finally:
        c.close()
