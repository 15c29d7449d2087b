"""A watch-hub's side of the event bus: one shard's commits, gap-free, into a RemoteShard's
listeners (the same delivery kv-router's Feed RPC follower uses: RemoteShard.deliver).

Invariants:
- `shard.feed_committed` (P) only grows, and every txn at or below it was delivered once, in
  revision order (RemoteShard.deliver drops revisions at or below P).
- A stream message with prev_rev <= P extends the feed; one with prev_rev > P reveals a gap
  (P, prev_rev], read from the shard's History RPC first. A truncated message's own txns are read
  the same way.
- A heartbeat may overtake the stream message before it: it closes the feed only once P reaches
  its prev_rev; if that has not happened GAP_GRACE_S later, the missing part is read from the
  shard (the message was lost).
- Without any message for STALL_S (NATS down, a stream being recreated) the shard's Status is
  polled and its new commits read from History: the feed stays live, only slower. The poll also
  moves the shard's clock to the hub's newest revision (`high`): the clock broadcast on kf.clock
  does not reach an idle shard while NATS is down, and a merged feed cannot pass a shard that
  never closes the revisions the others reached (it stalled until the next write there).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from nats.js.api import DeliverPolicy

from kubefabric.etcd import errors
from kubefabric.etcd.errors import EtcdError
from kubefabric.etcd.keyrange import EVERY_KEY
from kubefabric.proto.kubefabric.events.v1.events_pb2 import ShardEvents
from kubefabric.shard.history import commits_of
from kubefabric.telemetry import tracing

from .bus import events_subject, heartbeat_subject

log = logging.getLogger("kubefabric.events.subscriber")

GAP_GRACE_S = 0.25
STALL_S = 1.0
BACKFILL_PAGE_REVS = 5_000
CONSUMER_HEARTBEAT_S = 1.0


class ShardSubscription:
    def __init__(self, shard, nc, high: Callable[[], int] | None = None):
        """shard: an opened RemoteShard (open(follow=False)) named like its NATS subjects;
        high(): the newest revision the hub knows of on any shard (several shards merged)."""
        self.shard = shard
        self.nc = nc
        self.high = high
        self.name = shard.name
        self.queue: asyncio.Queue = asyncio.Queue()
        self.pending_close = 0   # a heartbeat's closed revision waiting for its prev_rev
        self.pending_need = 0    # ... and that prev_rev
        self.pending_since = 0.0
        self.backfilled_txns = 0
        self.received = 0
        self._subs: list = []
        self._tasks: list[asyncio.Task] = []
        self._stalled = False
        self._warned_foreign = False

    async def start(self) -> None:
        hb = await self.nc.subscribe(heartbeat_subject(self.name), cb=self._on_heartbeat)
        self._subs.append(hb)
        self._tasks = [asyncio.create_task(self._subscribe_events(), name=f"sub-{self.name}"),
                       asyncio.create_task(self._run(), name=f"deliver-{self.name}")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:
                pass

    async def _on_heartbeat(self, msg) -> None:
        self.queue.put_nowait((False, msg.data, None))

    async def _on_event(self, msg) -> None:
        self.queue.put_nowait((True, msg.data, msg.headers))

    async def _subscribe_events(self) -> None:
        """An ordered JetStream consumer from the stream's last message on (older revisions
        come from the shard); retried until the shard's stream exists."""
        js = self.nc.jetstream()
        while True:
            try:
                sub = await js.subscribe(events_subject(self.name), ordered_consumer=True,
                                         deliver_policy=DeliverPolicy.LAST,
                                         idle_heartbeat=CONSUMER_HEARTBEAT_S, cb=self._on_event)
                self._subs.append(sub)
                log.info("shard %s: following stream %s", self.name, events_subject(self.name))
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no stream yet (the leader creates it), NATS down
                log.debug("shard %s: cannot subscribe to its events yet: %s", self.name, exc)
                await asyncio.sleep(0.5)

    # ---- delivery: one task, so backfills and messages apply in order ----

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            timeout = STALL_S
            if self.pending_need:
                timeout = max(0.0, self.pending_since + GAP_GRACE_S - loop.time())
            try:
                is_event, data, headers = await asyncio.wait_for(self.queue.get(), timeout)
            except asyncio.TimeoutError:
                await self._retry(self._on_quiet)
                continue
            self.received += 1
            if self._stalled:
                self._stalled = False
                log.info("shard %s: events flowing again", self.name)
            msg = ShardEvents.FromString(data)
            if msg.cluster_id != self.shard.state.cluster_id:
                self._foreign(msg)
                continue
            if is_event and tracing.ENABLED and headers and "traceparent" in headers:
                # the write's trace goes on: delivery to this hub's watchers is part of it
                with tracing.span_from_headers("kubefabric.hub.deliver", headers, {
                        "kubefabric.shard": self.name, "kubefabric.revision": msg.committed_rev}):
                    await self._retry(self._apply, msg)
            elif is_event:
                await self._retry(self._apply, msg)
            else:
                self._heartbeat(msg, loop.time())

    def _foreign(self, msg: ShardEvents) -> None:
        if not self._warned_foreign:
            self._warned_foreign = True
            log.warning("shard %s: dropping messages of another database (cluster id %x, this "
                        "shard's %x): do two shards use the name %r on this NATS?", self.name,
                        msg.cluster_id, self.shard.state.cluster_id, self.name)

    async def _retry(self, step, *args) -> None:
        """Run a step that reads the shard until it succeeds (the shard may be failing over)."""
        backoff = 0.1
        while True:
            try:
                return await step(*args)
            except EtcdError as err:
                log.warning("shard %s: reading its history failed (%s); retrying", self.name,
                            err.message)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _apply(self, msg: ShardEvents) -> None:
        if msg.committed_rev <= self.shard.feed_committed:
            return  # a duplicate (the consumer restarted, or the leader republished)
        if msg.prev_rev > self.shard.feed_committed:
            log.info("shard %s: revisions %d..%d missing from the stream; reading them from the "
                     "shard", self.name, self.shard.feed_committed + 1, msg.prev_rev)
            await self._backfill(msg.prev_rev)
        if msg.truncated:
            await self._backfill(msg.committed_rev)
        else:
            self.shard.deliver(msg.commits, msg.committed_rev, msg.compact_rev)
        self._check_pending()

    def _heartbeat(self, msg: ShardEvents, now: float) -> None:
        self.shard.state.term = max(self.shard.state.term, msg.term)
        if msg.prev_rev <= self.shard.feed_committed:
            self.shard.deliver((), msg.committed_rev, msg.compact_rev)
            self._check_pending()
        elif msg.committed_rev > self.pending_close:
            if not self.pending_need:
                self.pending_since = now
            self.pending_close, self.pending_need = msg.committed_rev, max(self.pending_need, msg.prev_rev)

    def _check_pending(self) -> None:
        if self.pending_need and self.shard.feed_committed >= self.pending_need:
            self.shard.deliver((), self.pending_close, self.shard.state.compact_rev)
            self.pending_close = self.pending_need = 0

    async def _on_quiet(self) -> None:
        """A heartbeat's message did not come in time, or nothing came at all: read the shard."""
        if self.pending_need:
            target = self.pending_close
            log.info("shard %s: the stream did not deliver revisions up to %d; reading them from "
                     "the shard", self.name, self.pending_need)
        else:
            if not self._stalled:
                self._stalled = True
                log.warning("shard %s: no events or heartbeats for %.0fs (NATS or the shard "
                            "down?); polling the shard", self.name, STALL_S)
            status = await self.shard.status(sync_rev=self.high() if self.high else 0)
            target = status.committed_rev
        if target > self.shard.feed_committed:
            await self._backfill(target)
        self.pending_close = self.pending_need = 0

    async def _backfill(self, hi: int) -> None:
        """Deliver the shard's txns of (feed_committed, hi] from its History RPC."""
        while self.shard.feed_committed < hi:
            lo = self.shard.feed_committed + 1
            top = min(hi, lo + BACKFILL_PAGE_REVS - 1)
            try:
                events = await self.shard.history(EVERY_KEY, lo, top, leader=True)
            except EtcdError as err:
                if err is not errors.COMPACTED:
                    raise
                log.error("shard %s: revisions %d..%d were compacted before this hub received "
                          "them; watchers that needed them must re-list", self.name, lo, top)
                self.shard.deliver((), top, self.shard.state.compact_rev)
                continue
            commits = commits_of(events)
            self.backfilled_txns += len(commits)
            self.shard.deliver(commits, top, self.shard.state.compact_rev)
