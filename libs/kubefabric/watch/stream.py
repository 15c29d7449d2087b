"""One etcd Watch stream: its watchers, its requests and its ordered responses.

Requests are handled one at a time in arrival order, so created responses go out in request
order and a watcher's events always follow its created response. Every response goes through
one queue, which the transport drains in order.

etcd behaviours kept: server-chosen watch ids count up from 0 skipping ids in use; a duplicate
client-chosen id or an empty range answers created+canceled with watch_id -1 and a reason;
cancel of an unknown id is ignored; a progress request is answered (watch_id -1, header revision
= closed revision) only once every watcher of the stream is synced; fragment=true splits a
response larger than the request size limit.

Limits (not etcd's, which has none; refused the way etcd refuses a create it cannot serve):
a stream holds at most `max_watchers` watchers; a create beyond that is answered created+canceled
with watch_id -1 and a reason naming the limit, and the stream stays usable.
"""
from __future__ import annotations

import asyncio

from kubefabric.etcd.keyrange import KeyRange
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.rpc.wire import Malformed

from .registry import Watcher, WatcherRegistry

DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream"
EMPTY_RANGE = "mvcc: watcher range is empty"
DEFAULT_MAX_WATCHERS = 100_000


def too_many_watchers(limit: int) -> str:
    return (f"kubefabric: too many watchers on this watch stream: the limit is {limit} "
            "(--max-watchers-per-stream); cancel watchers or open another stream")


class WatchStream:
    def __init__(self, registry: WatcherRegistry, fill_header, max_response_bytes: int,
                 buffer_budget: int = 64 * 1024 * 1024, max_watchers: int = DEFAULT_MAX_WATCHERS,
                 trust_known: bool = False):
        """trust_known: honour kubefabric_known_revision in requests (a watch-hub behind
        kv-router; an etcd client's value is ignored)."""
        self.registry = registry
        self.trust_known = trust_known
        self.progress_known = 0  # a pending progress request is answered at or above it
        self.max_watchers = max_watchers
        self.fill = fill_header  # fill(header, revision)
        self.max_bytes = max_response_bytes
        # responses, then None (the end), or what ends the call: a Malformed request, an error
        self.out: asyncio.Queue[pb.WatchResponse | Malformed | BaseException | None] = asyncio.Queue()
        self.buffer_budget = buffer_budget
        self.buffered = 0  # bytes queued and not yet taken by the transport
        # set while buffered <= buffer_budget: the stream's requests are read only then, so a
        # client that does not read cannot grow the backlog by sending requests either
        self.room = asyncio.Event()
        self.room.set()
        self.overflowed = False
        self.watchers: dict[int, Watcher] = {}
        self.next_id = 0
        self.progress_pending = False
        self.closed = False

    # ---- the outgoing queue, within a memory budget ----

    def _send(self, resp: pb.WatchResponse | None) -> None:
        if resp is not None:
            self.buffered += resp.ByteSize()
        self.out.put_nowait(resp)
        if self.buffered > self.buffer_budget:
            self.room.clear()
            if not self.overflowed:
                self._overflow()

    def taken(self, resp: pb.WatchResponse) -> None:
        """The transport sent `resp`: its bytes leave the budget."""
        self.buffered -= resp.ByteSize()
        if self.buffered <= self.buffer_budget:
            self.room.set()

    def _overflow(self) -> None:
        """The client reads slower than events arrive and the backlog passed the budget: cancel
        every watcher of the stream, each with a reason, rather than grow without bound or skip
        events. Clients re-watch from their last revision."""
        self.overflowed = True
        reason = (f"watch stream too slow: more than {self.buffer_budget} bytes of responses "
                  "waiting for the client; re-watch from the last revision received")
        for w in list(self.watchers.values()):
            self.watchers.pop(w.id, None)
            self.registry.remove(w)
            resp = pb.WatchResponse(watch_id=w.id, canceled=True, cancel_reason=reason)
            self.fill(resp.header, self.registry.committed)
            self.buffered += resp.ByteSize()  # counted like any response: taken() subtracts it
            self.out.put_nowait(resp)
        self.overflowed = False

    # ---- requests ----

    async def handle(self, req: pb.WatchRequest) -> None:
        kind = req.WhichOneof("request_union")
        if kind == "create_request":
            await self.create(req.create_request)
        elif kind == "cancel_request":
            self.cancel(req.cancel_request.watch_id)
        elif kind == "progress_request":
            # as for a create: the answer covers every write acknowledged before the request,
            # including those another worker committed and the feed has not delivered yet
            await self.registry.refresh_head()
            self.progress_pending = True
            if self.trust_known:
                self.progress_known = max(self.progress_known,
                                          req.progress_request.kubefabric_known_revision)
            self.on_synced()

    async def create(self, creq: pb.WatchCreateRequest) -> None:
        # etcd watches the key "\0" when no key is given
        rng = KeyRange.of(creq.key or b"\x00", creq.range_end)
        known = creq.kubefabric_known_revision if self.trust_known else 0
        await self.registry.refresh_head()
        committed = max(self.registry.head, known)
        if creq.watch_id and creq.watch_id in self.watchers:
            self._send_refused(DUPLICATE_ID, committed)
            return
        if rng.end and rng.start >= rng.end:
            self._send_refused(EMPTY_RANGE, committed)
            return
        if len(self.watchers) >= self.max_watchers:  # counts watchers still catching up too
            self._send_refused(too_many_watchers(self.max_watchers), committed)
            return
        wid = creq.watch_id
        if not wid:
            while self.next_id in self.watchers:
                self.next_id += 1
            wid = self.next_id
            self.next_id += 1
        w = Watcher(wid, self, rng, creq)
        self.watchers[wid] = w
        resp = pb.WatchResponse(watch_id=wid, created=True)
        self.fill(resp.header, committed)
        self._send(resp)
        await self.registry.add(w, creq.start_revision, committed)

    def refuse(self, reason: str) -> None:
        """Refuse a create request (etcd's answer: created and canceled, watch id -1)."""
        self._send_refused(reason, self.registry.head)

    def _send_refused(self, reason: str, revision: int) -> None:
        resp = pb.WatchResponse(watch_id=-1, created=True, canceled=True, cancel_reason=reason)
        self.fill(resp.header, revision)
        self._send(resp)

    def cancel(self, wid: int) -> None:
        w = self.watchers.pop(wid, None)
        if w is None:
            return
        self.registry.remove(w)
        resp = pb.WatchResponse(watch_id=wid, canceled=True)
        self.fill(resp.header, self.registry.committed)
        self._send(resp)
        self.on_synced()

    def close(self) -> None:
        self.closed = True
        for w in self.watchers.values():
            self.registry.remove(w)
        self.watchers.clear()

    # ---- called by the registry ----

    def send_events(self, w: Watcher, revision: int, events: list, trace: dict | None = None) -> None:
        """trace: the W3C trace context of the request that committed `events` (one live txn),
        for a watcher that asked for it (kubefabric_trace_context)."""
        if w.closed:
            return
        w.sent_since_progress = True
        resp = pb.WatchResponse(watch_id=w.id, events=events)
        if trace:
            resp.kubefabric_traceparent = trace.get("traceparent", "")
            resp.kubefabric_tracestate = trace.get("tracestate", "")
        self.fill(resp.header, revision)
        if w.fragment and len(events) > 1 and resp.ByteSize() >= self.max_bytes:
            self._send_fragments(resp)
        else:
            self._send(resp)

    def _send_fragments(self, whole: pb.WatchResponse) -> None:
        for frag in split_fragments(whole, self.max_bytes):
            self._send(frag)

    def send_progress(self, w: Watcher, revision: int) -> None:
        resp = pb.WatchResponse(watch_id=w.id)
        self.fill(resp.header, revision)
        self._send(resp)

    def cancel_compacted(self, w: Watcher, compact_rev: int) -> None:
        self.watchers.pop(w.id, None)
        self.registry.remove(w)
        # etcd marks the response canceled only when compact_revision != 0
        resp = pb.WatchResponse(watch_id=w.id, canceled=compact_rev != 0, compact_revision=compact_rev)
        self.fill(resp.header, 0)
        self._send(resp)
        self.on_synced()

    def cancel_with_reason(self, w: Watcher, reason: str) -> None:
        self.watchers.pop(w.id, None)
        self.registry.remove(w)
        resp = pb.WatchResponse(watch_id=w.id, canceled=True, cancel_reason=reason)
        self.fill(resp.header, self.registry.committed)
        self._send(resp)
        self.on_synced()

    def on_synced(self) -> None:
        """Answer a pending progress request once no watcher of the stream is catching up."""
        if not self.progress_pending:
            return
        if any(not w.synced for w in self.watchers.values()):
            return
        if self.registry.committed < max(self.registry.head, self.progress_known):
            # a remote shard acknowledged a revision its feed has not delivered yet: answer once
            # it has, so the progress revision is true for every watcher of the stream
            self.registry.feed_waiters.add(self)
            return
        self.progress_pending = False
        self.progress_known = 0
        resp = pb.WatchResponse(watch_id=-1)
        self.fill(resp.header, self.registry.committed)
        self._send(resp)


def split_fragments(whole: pb.WatchResponse, max_bytes: int) -> list[pb.WatchResponse]:
    """Split like etcd: each fragment takes events while it stays under the limit (at least one
    event each); every fragment but the last has fragment=true."""
    out = []
    events = list(whole.events)
    i = 0
    while i < len(events):
        frag = pb.WatchResponse(watch_id=whole.watch_id, fragment=True,
                                kubefabric_traceparent=whole.kubefabric_traceparent,
                                kubefabric_tracestate=whole.kubefabric_tracestate)
        frag.header.CopyFrom(whole.header)
        while i < len(events):
            frag.events.append(events[i])
            if len(frag.events) > 1 and frag.ByteSize() >= max_bytes:
                del frag.events[-1]
                break
            i += 1
        frag.fragment = i < len(events)
        out.append(frag)
    return out
