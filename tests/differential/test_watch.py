"""Watch: the same stream conversation against etcd and KubeFabric, every response recorded.

Responses arrive asynchronously, so each step waits for what etcd is known to send (a number of
events, or a sentinel write) and records it; responses of one revision for several watchers are
sorted by watch id (etcd does not define that order). `w.pending()` after a step records that
nothing else arrived.
"""
from __future__ import annotations

import hashlib
import threading
import time

from harness.stream import NoResponse, WatchStream, by_watch_id, conversation
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.mvccpb import kv_pb2

NOPUT, NODELETE = pb.WatchCreateRequest.NOPUT, pb.WatchCreateRequest.NODELETE


def test_created_responses_follow_request_order_and_ids(differential):
    def body(c, record):
        w = WatchStream(c)
        requests = [dict(key=b"a"), dict(key=b"a", watch_id=5), dict(key=b"a", watch_id=5),  # duplicate
                    dict(key=b"b"), dict(key=b"b", watch_id=1),   # 1 was just taken by the server
                    dict(key=b"b", watch_id=2), dict(key=b"b"),   # the server skips ids in use
                    dict(key=b"c", watch_id=-3),                  # negative ids are the client's choice
                    dict(key=b"b", range_end=b"a"),               # empty range
                    dict(key=b"c"), dict(key=b"")]                # the empty key: accepted, never fires
        for r in requests:   # all sent before any answer is read
            w.create(**r)
        record("created", [w.recv() for _ in requests])
        for key, watchers in (("a", 2), ("b", 3), ("c", 2)):
            record(f"put {key}", c.put(key.encode(), b"1"))
            record(f"events {key}", by_watch_id(w.events(watchers)))
        record("nothing else", w.pending())
        other = WatchStream(c)  # ids are per stream
        record("second stream", [other.created(b"a"), other.created(b"a", watch_id=5)])
        other.close()
        w.close()
    differential(body)


def test_cancel(differential):
    def body(c, record):
        w = WatchStream(c)
        record("created", [w.created(b"k"), w.created(b"k"), w.created(b"k", watch_id=9)])
        w.cancel(0)
        record("cancel 0", w.recv())
        w.cancel(42)
        record("cancel unknown id: no answer", w.pending())
        w.cancel(0)
        record("cancel again: no answer", w.pending())
        record("put", c.put(b"k", b"v"))
        record("events for live watchers only", by_watch_id(w.events(2)))
        record("auto id after cancel", w.created(b"k"))
        w.cancel(9)
        record("cancel 9", w.recv())
        record("reuse client id 9", w.created(b"k", watch_id=9))
        record("delete", c.delete(b"k"))
        record("delete events", by_watch_id(w.events(3)))
        record("nothing else", w.pending())
        w.half_close()   # the client's CloseSend: etcd keeps delivering to the stream's watchers
        record("put after half-close", c.put(b"k", b"again"))
        record("events after half-close", by_watch_id(w.events(3)))
        w.close()
    differential(body)


def test_start_revision_past_now_future(differential):
    def steps(c, w, record):
        record("put k1", c.put(b"k1", b"a"))      # rev 2
        record("put k2", c.put(b"k2", b"b"))      # rev 3
        record("put k1 again", c.put(b"k1", b"c"))  # rev 4
        record("delete k2", c.delete(b"k2"))      # rev 5
        record("now", w.created(b"k", range_end=b"l"))
        record("from 2", w.created(b"k", range_end=b"l", start_revision=2))
        record("replay from 2", w.events(4))
        record("from 4, prev_kv", w.created(b"k", range_end=b"l", start_revision=4, prev_kv=True))
        record("replay from 4", w.events(2))
        record("single key from 1", w.created(b"k1", start_revision=1))
        record("replay k1", w.events(2))
        record("from 2, NOPUT", w.created(b"k", range_end=b"l", start_revision=2, filters=[NOPUT]))
        record("replay: the delete only", w.events(1))
        record("exactly next revision", w.created(b"k", range_end=b"l", start_revision=6))
        record("future 8", w.created(b"k", range_end=b"l", start_revision=8))
        record("nothing yet", w.pending())
        for rev, key, value, watchers in ((6, "k3", b"d", 4), (7, "k3", b"e", 4), (8, "k1", b"f", 6)):
            record(f"put {key} (rev {rev})", c.put(key.encode(), value))
            record(f"rev {rev} events", by_watch_id(w.events(watchers)))
    conversation(differential, steps)


def test_key_range_prefix_and_nul_ranges(differential):
    def steps(c, w, record):
        watchers = [dict(key=b"b"), dict(key=b"b", range_end=b"d"), dict(key=b"p/", range_end=b"p0"),
                    dict(key=b"\0", range_end=b"\0"), dict(key=b"m", range_end=b"\0"),
                    dict(key=b"", range_end=b"\0"), dict(key=b"a\xff", range_end=b"b\x00"),
                    dict(key=b"\xff", range_end=b"\0")]
        record("created", [w.created(**kw) for kw in watchers])
        for key in (b"a", b"b", b"b\x00", b"c", b"d", b"m", b"p", b"p/", b"p/x/y", b"p0",
                    b"\x00", b"\x00\x00", b"a\xff", b"\xff", b"\xff\xff"):
            record(f"put {key!r}", c.put(key, b"v"))
        record("delete b..p/x", c.delete(b"b", range_end=b"p/x"))
        record("sentinel", c.put(b"zz-end", b"."))
        # watchers 3, 4 and 5 see every key from "m" on, so the sentinel ends the step
        record("events", by_watch_id(w.until_key(b"zz-end", 3)))
    conversation(differential, steps)


def test_prev_kv_filters_and_put_options(differential):
    def steps(c, w, record):
        watchers = [dict(), dict(prev_kv=True), dict(filters=[NOPUT]), dict(filters=[NODELETE]),
                    dict(filters=[NOPUT, NODELETE]), dict(filters=[NOPUT], prev_kv=True),
                    dict(filters=[NODELETE, NODELETE], prev_kv=True)]
        record("created", [w.created(b"k", **kw) for kw in watchers])
        record("grant", c.call(c.lease.LeaseGrant, pb.LeaseGrantRequest(ID=77, TTL=60)))
        steps = [("create", lambda: c.put(b"k", b"v1")),
                 ("update with lease", lambda: c.put(b"k", b"v2", lease=77)),
                 ("ignore_value", lambda: c.put(b"k", ignore_value=True)),
                 ("ignore_lease", lambda: c.put(b"k", b"v3", ignore_lease=True)),
                 ("delete", lambda: c.delete(b"k")),
                 ("delete missing: no event", lambda: c.delete(b"k")),
                 ("recreate", lambda: c.put(b"k", b"v4", prev_kv=True))]
        for label, op in steps:
            record(label, op())
        # puts reach 0, 1, 3, 6 (5 puts x 4); deletes reach 0, 1, 2, 5 (1 x 4)
        record("events", by_watch_id(w.events(24)))
    conversation(differential, steps)


def test_multi_key_changes_arrive_together(differential):
    def steps(c, w, record):
        for key in (b"t/a", b"t/b", b"t/c", b"t/d", b"u"):
            record(f"put {key!r}", c.put(key, key))
        record("created", [w.created(b"t/", range_end=b"t0"), w.created(b"t/", range_end=b"t0", prev_kv=True),
                           w.created(b"", range_end=b"\0", filters=[NOPUT])])
        put = lambda k, v: pb.RequestOp(request_put=pb.PutRequest(key=k, value=v))  # noqa: E731
        delete = lambda k, e=b"": pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=k, range_end=e))  # noqa: E731
        get = pb.RequestOp(request_range=pb.RangeRequest(key=b"t/a"))
        record("txn success", c.txn(
            compare=[pb.Compare(key=b"t/a", target=pb.Compare.VERSION, result=pb.Compare.EQUAL, version=1)],
            success=[put(b"t/z", b"1"), put(b"t/a", b"2"), delete(b"t/b"), get, put(b"u", b"3"),
                     delete(b"t/c", b"t/e")],
            failure=[put(b"t/never", b"x")]))
        record("txn events", by_watch_id(w.events(2 * 5 + 3)))
        record("txn failure branch", c.txn(
            compare=[pb.Compare(key=b"t/a", target=pb.Compare.VALUE, result=pb.Compare.EQUAL, value=b"nope")],
            success=[put(b"t/never", b"x")], failure=[put(b"t/b", b"back"), put(b"t/c", b"back")]))
        record("failure branch events", by_watch_id(w.events(4)))
        record("read-only txn: no event", c.txn(success=[get]))
        record("delete range", c.delete(b"t/b", range_end=b"t/z", prev_kv=True))
        record("delete range events", by_watch_id(w.events(2 * 2 + 2)))
        record("delete everything", c.delete(b"\0", range_end=b"\0"))
        record("delete everything events", by_watch_id(w.events(2 * 2 + 3)))
    conversation(differential, steps, spans_shards=True)


def test_watch_from_compacted_revision(differential):
    def steps(c, w, record):
        record("watching before the compaction", w.created(b"k"))
        for i in range(4):
            record(f"put {i}", c.put(b"k", b"%d" % i))  # revs 2..5
        record("live events", w.events(4))
        record("compact 4", c.call(c.kv.Compact, pb.CompactionRequest(revision=4)))
        record("a live watcher is not canceled by compaction", w.pending())
        record("from 2: created", w.created(b"k", start_revision=2))
        record("from 2: canceled with compact_revision", w.recv())
        record("from 3, range: created", w.created(b"a", range_end=b"z", start_revision=3))
        record("from 3: canceled", w.recv())
        record("from 4 (the compact revision): created", w.created(b"k", start_revision=4))
        record("from 4: replay", w.events(2))
        record("from 5", [w.created(b"k", start_revision=5), *w.events(1)])
        record("put", c.put(b"k", b"x"))
        record("live events reach the three live watchers", by_watch_id(w.events(3)))
    conversation(differential, steps)


def test_progress_request(differential):
    def steps(c, w, record):
        w.progress()
        record("no watchers", w.pending(0.5))
        record("put", c.put(b"a", b"1"))
        record("created", [w.created(b"a"), w.created(b"b", watch_id=7)])
        w.progress()
        record("progress", w.recv())
        record("put b", c.put(b"b", b"1"))
        record("event", w.events(1))
        record("put unwatched", c.put(b"zzz", b"1"))
        w.progress()
        record("progress after unwatched write", w.recv())
        w.progress()
        w.progress()
        record("two requests, two answers", [w.recv(), w.recv()])
    conversation(differential, steps)


def test_progress_notify(differential):
    def is_progress(r):
        return not r.events and not r.created and not r.canceled

    def notified(w, revision, expected=frozenset({0, 4}), timeout=5.0):
        """(watch_id, revision) of the progress notifications until every watcher in `expected`
        got one at `revision` (or the timeout), plus the events that arrived meanwhile. A
        notification below `revision` is one the server sent before the write that made it
        (in flight on either server when the put returned): not recorded."""
        pairs, events, seen = set(), [], set()

        def done(r):
            if r.events:
                events.append(r)
            elif is_progress(r) and r.header.revision >= revision:
                pairs.add((r.watch_id, r.header.revision))
                if r.header.revision == revision:
                    seen.add(r.watch_id)
            return expected <= seen
        try:
            w.until(done, timeout)
        except NoResponse:
            pass
        return sorted(pairs), by_watch_id(events)

    def created(w, key, **kw):
        """The created response, past a notification of an earlier watcher that may come first
        when a create takes longer than the interval (on either server)."""
        w.create(key, **kw)
        r = w.recv()
        while is_progress(r):
            r = w.recv()
        return r

    def body(c, record):
        w = WatchStream(c)
        record("put", c.put(b"x", b"1"))
        record("created", [created(w, b"k", progress_notify=True), created(w, b"k", watch_id=3),
                           created(w, b"k", watch_id=4, progress_notify=True, start_revision=1)])
        record("notifications at 2", notified(w, 2))
        record("put k", c.put(b"k", b"2"))
        record("notifications at 3 and events", notified(w, 3))
        record("put unwatched", c.put(b"y", b"3"))
        record("notifications at 4", notified(w, 4))
        time.sleep(0.5)  # more notify intervals: still only the progress_notify watchers, at 4
        record("later", sorted({(r.watch_id, r.header.revision) for r in w.pending(0.1) if is_progress(r)}))
        w.close()
    differential(body, etcd_args=["--experimental-watch-progress-notify-interval=200ms"],
                 kubefabric_args=["--watch-progress-notify-interval", "200ms"])


MAX_REQUEST = 256 * 1024   # etcd fragments watch responses above max-request-bytes + 512 KiB
VALUE = 200_000


def _summary(responses):
    """Large responses as comparable summaries (values by length and digest)."""
    def kv(k):
        return None if not k.key else [k.key.decode(), k.create_revision, k.mod_revision, k.version,
                                       len(k.value), hashlib.sha1(k.value).hexdigest()[:8]]
    return [{"watch_id": r.watch_id, "revision": r.header.revision, "fragment": r.fragment,
             "created": r.created, "canceled": r.canceled,
             "events": [[kv_pb2.Event.EventType.Name(e.type), kv(e.kv), kv(e.prev_kv)] for e in r.events]}
            for r in responses]


def test_fragmented_responses(differential):
    def body(c, record):
        too_big = c.put(b"too-big", b"x" * (MAX_REQUEST + 1))
        record("request too large", too_big)
        for i in range(6):
            record(f"put {i}", c.put(b"f/%d" % i, bytes([65 + i]) * VALUE))   # revs 2..7
        w = WatchStream(c)
        record("created", _summary([w.created(b"f/", range_end=b"f0", prev_kv=True, fragment=True),
                                    w.created(b"f/", range_end=b"f0", prev_kv=True),
                                    w.created(b"f/", range_end=b"f0", fragment=True)]))
        record("delete all", c.delete(b"f/", range_end=b"f0"))
        record("delete events", _summary(by_watch_id(w.events(18, timeout=10))))
        record("nothing else", _summary(w.pending()))
        replay = WatchStream(c)
        record("replay created", _summary([replay.created(b"f/", range_end=b"f0", start_revision=2,
                                                          prev_kv=True, fragment=True)]))
        record("replay", _summary(replay.events(12, timeout=10)))
        record("replay nothing else", _summary(replay.pending()))
        replay.close()
        w.close()
    differential(body, etcd_args=[f"--max-request-bytes={MAX_REQUEST}"],
                 kubefabric_args=["--max-request-bytes", str(MAX_REQUEST)])


def test_lease_expiry_deletes_keys_in_one_event_batch(differential):
    def steps(c, w, record):
        record("grant", c.call(c.lease.LeaseGrant, pb.LeaseGrantRequest(ID=1001, TTL=2)))
        record("put b", c.put(b"l/b", b"1", lease=1001))
        record("put a", c.put(b"l/a", b"2", lease=1001))
        record("put kept", c.put(b"l/kept", b"3"))
        record("created", [w.created(b"l/", range_end=b"l0", prev_kv=True), w.created(b"l/a")])
        try:
            events = w.events(3, timeout=8)
        except NoResponse as e:
            events = [f"expiry produced no events: {e}"]
        record("expiry events", by_watch_id(events))
        record("range after expiry", c.get(b"l/", range_end=b"l0"))
        record("lease gone", c.call(c.lease.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=1001)))
    conversation(differential, steps)


def test_replay_racing_live_writes_is_ordered_and_gap_free(differential):
    """Watchers created from the past while writes keep coming: where etcd cuts responses depends on
    timing, so the events are compared as one flat sequence per watcher (ordered, no gap, no repeat)."""
    def flat(responses, watch_id):
        return [[kv_pb2.Event.EventType.Name(e.type), e.kv.key.decode(), e.kv.mod_revision, e.kv.version,
                 e.kv.value.decode(), e.prev_kv.mod_revision]
                for r in responses if r.watch_id == watch_id for e in r.events]

    def steps(c, w, record):
        for i in range(60):
            c.put(b"r/%d" % (i % 7), b"old-%d" % i)          # revs 2..61
        writer = threading.Thread(target=lambda: [c.put(b"r/%d" % (i % 5), b"new-%d" % i) for i in range(60)])
        writer.start()
        w.create(b"r/", range_end=b"r0", start_revision=2, prev_kv=True)
        w.create(b"r/", range_end=b"r0", start_revision=40, watch_id=8)
        responses = w.events(120 + 82, timeout=30)
        writer.join()
        record("created, in order", [(r.watch_id, r.created) for r in responses if r.created])
        record("watcher 0", flat(responses, 0))
        record("watcher 8", flat(responses, 8))
        record("no empty responses", [r.watch_id for r in responses if not r.created and not r.events])
    conversation(differential, steps)


def test_unusual_requests(differential):
    def steps(c, w, record):
        record("puts", [c.put(b"k", b"1"), c.put(b"k", b"2")])
        record("negative start revision", w.created(b"k", start_revision=-1))
        record("no replay for it", w.pending())
        w.send(pb.WatchRequest())
        record("empty request: no answer", w.pending())
        w.cancel(-1)
        record("cancel -1: no answer", w.pending())
        record("huge client id", w.created(b"k", watch_id=2**62))
        record("auto id after a huge one", w.created(b"k"))
        record("unknown filter value", w.created(b"k", filters=[5]))
        record("range_end equal to key", w.created(b"k", range_end=b"k"))
        record("range_end below key", w.created(b"k", range_end=b"a", start_revision=1))
        record("put", c.put(b"k", b"3"))
        record("events", by_watch_id(w.events(4)))
    conversation(differential, steps)


def test_prev_kv_from_compacted_history(differential):
    """Replaying from the compact revision: an event's previous version may already be compacted;
    etcd then sends the event without prev_kv."""
    def steps(c, w, record):
        for key, value in ((b"k", b"a"), (b"k", b"b"), (b"j", b"x"), (b"k", b"c")):  # revs 2..5
            record(f"put {key!r}={value!r}", c.put(key, value))
        record("delete j", c.delete(b"j"))                                            # rev 6
        record("compact 3", c.call(c.kv.Compact, pb.CompactionRequest(revision=3)))
        record("from 3 with prev_kv", w.created(b"a", range_end=b"z", start_revision=3, prev_kv=True))
        record("replay", w.events(4))
        record("compact 5", c.call(c.kv.Compact, pb.CompactionRequest(revision=5)))
        record("from 5 with prev_kv", w.created(b"a", range_end=b"z", start_revision=5, prev_kv=True))
        record("replay after the second compaction", w.events(2))
        record("live put", c.put(b"k", b"d"))
        record("live events", by_watch_id(w.events(2)))
    conversation(differential, steps)
