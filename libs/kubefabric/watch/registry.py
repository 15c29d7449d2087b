"""Watchers of one event source, and the delivery of committed changes to them.

A watcher is *synced* when every event it should see below `next_rev` has been handed to its
stream; a synced watcher receives each committed txn as it is published. A new watcher that
starts at or below the closed revision first replays history (from the shard's log) while live
events for it are buffered, then drains the buffer past the replayed revision and turns synced:
nothing is skipped or repeated across the switch.

The registry is transport-agnostic: kv-router feeds it from its shards (embedded, or a shard
service's Feed RPC), watch-hub from the shards' NATS streams; streams receive plain WatchResponse
messages.
"""
from __future__ import annotations

import asyncio
import logging

from kubefabric.etcd.errors import EtcdError
from kubefabric.etcd.keyrange import KeyRange
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.mvccpb.kv_pb2 import Event
from kubefabric.shard.surface import EventSource
from kubefabric.telemetry.tracing import trace_for

log = logging.getLogger("kubefabric.watch")

MAX_REPLAY_REVS = 1000  # revisions per replay response, like etcd's watch batches
CATCH_UP_WAIT_S = 2.0  # how long a new watcher waits for a trailing feed to reach the head


class Watcher:
    __slots__ = ("id", "stream", "rng", "prev_kv", "no_put", "no_delete", "progress_notify",
                 "fragment", "next_rev", "synced", "buffer", "sent_since_progress", "closed",
                 "traced")

    def __init__(self, wid: int, stream, rng: KeyRange, req: pb.WatchCreateRequest):
        self.id = wid
        self.stream = stream
        self.rng = rng
        self.prev_kv = req.prev_kv
        filters = set(req.filters)
        self.no_put = pb.WatchCreateRequest.NOPUT in filters
        self.no_delete = pb.WatchCreateRequest.NODELETE in filters
        self.progress_notify = req.progress_notify
        self.fragment = req.fragment
        self.traced = req.kubefabric_trace_context  # wants each live txn's trace context
        self.next_rev = 0
        self.synced = False
        self.buffer: list[tuple[int, list[Event]]] = []
        self.sent_since_progress = False
        self.closed = False

    def select(self, events: list[Event], stripped: list[Event]) -> list[Event]:
        """This watcher's events among one txn's (stripped: the same events without prev_kv)."""
        source = events if self.prev_kv else stripped
        out = []
        contains = self.rng.contains
        for ev, src in zip(events, source):
            if not contains(ev.kv.key):
                continue
            if ev.type == Event.PUT:
                if self.no_put:
                    continue
            elif self.no_delete:
                continue
            out.append(src)
        return out


def strip_prev(events: list[Event]) -> list[Event]:
    return [Event(type=e.type, kv=e.kv) if e.HasField("prev_kv") else e for e in events]


class WatcherRegistry:
    def __init__(self, source: EventSource, progress_interval: float = 600.0) -> None:
        self.source = source
        self.watchers: set[Watcher] = set()  # synced watchers
        self.catching_up: set[Watcher] = set()
        self.progress_interval = progress_interval
        self._task: asyncio.Task | None = None
        # the last revision whose commits were delivered here: the registry's own position, which for
        # a remote shard may trail the revisions its responses report
        self._committed = source.feed_committed
        self.feed_waiters: set = set()  # streams waiting for the feed to reach `head`
        self._catch_up: list = []       # (revision, future) of watcher creations waiting for it
        source.listeners.append(self.on_commit)

    @property
    def committed(self) -> int:
        return self._committed

    @property
    def head(self) -> int:
        """The newest revision a client may have been told of (>= committed): what a new
        watcher's created response reports, and where a watch "from now" starts after."""
        return max(self._committed, self.source.state.committed)

    async def refresh_head(self) -> None:
        """A source that sees commits its feed has not delivered yet (a `kubefabric serve
        --workers` worker reads the database) raises its state to them first, so a watcher "from
        now" starts after every write acknowledged before it was created (as on etcd)."""
        refresh = getattr(self.source, "refresh_head", None)
        if refresh is not None:
            await refresh()

    def start(self) -> None:
        if self.progress_interval > 0:  # 0 turns periodic progress notifications off
            self._task = asyncio.create_task(self._progress_loop(), name="watch-progress")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    # ---- live delivery ----

    def on_commit(self, published: list[tuple[int, list[Event]]], committed: int) -> None:
        self._committed = max(self._committed, committed)
        for rev, events in published:
            stripped = None
            for w in self.catching_up:
                w.buffer.append((rev, events))
            # a snapshot: delivery may cancel watchers (a stream over its budget)
            for w in tuple(self.watchers):
                if rev < w.next_rev:
                    continue
                if stripped is None:
                    stripped = strip_prev(events)
                selected = w.select(events, stripped)
                if selected:
                    w.stream.send_events(w, rev, selected,
                                         trace_for(events, selected[0].kv.key) if w.traced else None)
        if self.feed_waiters:
            waiting, self.feed_waiters = self.feed_waiters, set()
            for stream in waiting:
                stream.on_synced()
        if self._catch_up:
            still = []
            for target, fut in self._catch_up:
                if target <= self._committed:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    still.append((target, fut))
            self._catch_up = still

    async def _caught_up(self, target: int, timeout: float) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._catch_up.append((target, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            pass  # a feed that is down: go on with what was delivered (the watcher waits live)

    # ---- adding and removing ----

    async def add(self, w: Watcher, start_rev: int, now: int) -> None:
        """now: the revision of the watcher's created response (>= head when it was sent, and
        >= what kv-router acknowledged in front of a watch-hub). "From now" is from now + 1, also
        when the feed delivers more while this waits: those commits are replayed, not skipped."""
        if self.committed < now:
            # a remote or merged feed trails what clients were told: let it catch up first, so a
            # watcher from an acknowledged revision replays it like etcd instead of waiting live
            await self._caught_up(now, CATCH_UP_WAIT_S)
        if start_rev < 0 or 0 < start_rev <= self.committed:
            await self._refresh_compaction()
        # no await from here until the watcher is registered (synced or catching up): a commit
        # delivered in between would reach neither its replay nor its buffer
        committed = self.committed
        if start_rev < 0:
            # etcd 3.4: below the compact revision (-1 when never compacted) is compacted,
            # otherwise a negative start means from now on
            if start_rev < self.source.state.compact_rev:
                w.stream.cancel_compacted(w, self.source.state.compact_rev)
                return
            start_rev = 0
        if start_rev == 0:
            start_rev = now + 1
        if start_rev > committed:
            w.next_rev = start_rev
            w.synced = True
            self.watchers.add(w)
            return
        compact = self.source.state.compact_rev
        if start_rev < compact:
            w.stream.cancel_compacted(w, compact)
            return
        self.catching_up.add(w)
        try:
            hi = committed
            try:
                events = await self.source.history(w.rng, start_rev, hi)
            except EtcdError as err:  # the shard is unreachable: say so, the client re-watches
                log.warning("watcher from revision %d: reading history failed: %s", start_rev,
                            err.message)
                w.stream.cancel_with_reason(w, f"kubefabric: cannot read the history to replay: "
                                               f"{err.message}; re-watch from revision {start_rev}")
                return
            if w.closed:
                return
            if self.source.state.compact_rev > start_rev and self.source.state.compact_rev > compact:
                w.stream.cancel_compacted(w, self.source.state.compact_rev)
                return
            self._replay(w, events, hi)
            for rev, evs in w.buffer:
                if rev > hi:
                    selected = w.select(evs, strip_prev(evs))
                    if selected:
                        w.stream.send_events(w, rev, selected,
                                             trace_for(evs, selected[0].kv.key) if w.traced else None)
                    hi = rev
            w.next_rev = max(hi, self.committed) + 1
            w.synced = True
            self.watchers.add(w)
        finally:
            w.buffer = []
            self.catching_up.discard(w)
        w.stream.on_synced()

    async def _refresh_compaction(self) -> None:
        """A remote source learns compactions from its feed, which may trail a Compact a client
        just got answered: ask the shards before deciding that a start revision is compacted."""
        try:
            await self.source.refresh_compaction()
        except EtcdError as err:  # unreachable: decide on what the feed said
            log.debug("refreshing the compact revision failed: %s", err.message)

    def _replay(self, w: Watcher, events: list[Event], hi: int) -> None:
        """Send history to a catching-up watcher, at most MAX_REPLAY_REVS revisions per
        response, each response stamped with the revision the replay reads up to (like etcd)."""
        batch: list[Event] = []
        revs = last = 0
        selected = w.select(events, events if w.prev_kv else strip_prev(events))
        for ev in selected:
            rev = ev.kv.mod_revision
            if rev != last:
                if revs == MAX_REPLAY_REVS:
                    w.stream.send_events(w, hi, batch)
                    batch, revs = [], 0
                revs += 1
                last = rev
            batch.append(ev)
        if batch:
            w.stream.send_events(w, hi, batch)

    def remove(self, w: Watcher) -> None:
        w.closed = True
        self.watchers.discard(w)
        self.catching_up.discard(w)

    # ---- progress notifications ----

    async def _progress_loop(self) -> None:
        while True:
            await asyncio.sleep(self.progress_interval)
            if self.committed < self.head:
                # a trailing feed: notify once it has delivered what clients were acknowledged
                await self._caught_up(self.head, self.progress_interval)
            rev = self.committed
            for w in list(self.watchers):
                if w.progress_notify and not w.stream.closed:
                    if not w.sent_since_progress:
                        w.stream.send_progress(w, rev)
                    w.sent_since_progress = False
