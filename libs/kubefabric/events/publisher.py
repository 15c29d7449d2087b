"""A shard leader's side of the event bus: publish every committed txn, keep the clock in step.

Invariants (DESIGN §5):
- The log is the source of truth. A leader starts by reading the last message of its stream
  (`published_to`: every txn at or below it was published) and publishes what the stream lacks
  from the log before it goes live; after any publishing failure (NATS down, a timeout, a backlog
  past MAX_BACKLOG) it starts over the same way. So a crash or an outage delays events, never
  loses them; a txn may be published twice (consumers deduplicate by revision).
- Messages chain: each carries prev_rev = the previous message's committed_rev, heartbeats carry
  the committed_rev of the last message published before them (events.proto).
- Only the leader publishes, from its own writer's listener: revision order is commit order.
- kf.clock: a hub's highest revision; the leader syncs its clock to it (a writer op, no row), so
  a merged watch never waits on an idle shard for long.
"""
from __future__ import annotations

import asyncio
import logging

from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from kubefabric.etcd.keyrange import EVERY_KEY
from kubefabric.proto.kubefabric.events.v1.events_pb2 import ShardEvents
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb
from kubefabric.shard.history import commits_of
from kubefabric.telemetry import tracing

from .bus import (CLOCK_SUBJECT, DEDUPE_WINDOW_S, HEARTBEAT_S, events_subject, heartbeat_subject,
                  stream_name)

log = logging.getLogger("kubefabric.events.publisher")

MAX_BACKLOG = 10_000      # listener notifications queued while publishing is slow
REPLAY_PAGE_REVS = 2_000  # revisions read from the log per replay step
PUBLISH_TIMEOUT_S = 5.0
HEADER_ROOM = 1024        # bytes of a NATS message kept for headers


class Backlog(Exception):
    pass


class EventPublisher:
    def __init__(self, node, nc, shard: str, retention_s: float):
        """node: the ShardNode of this replica (its `shard` and `role`)."""
        self.node = node
        self.nc = nc
        self.js = nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        self.name = shard
        self.subject = events_subject(shard)
        self.stream = stream_name(shard)
        self.retention_s = retention_s
        self.published_to = 0
        self.published_txns = 0
        self._task: asyncio.Task | None = None
        self._clock_sub = None
        self._clock_target = 0
        self._clock_task: asyncio.Task | None = None

    async def start(self) -> None:
        self._clock_sub = await self.nc.subscribe(CLOCK_SUBJECT, cb=self._on_clock)
        self._task = asyncio.create_task(self._run(), name=f"publish-{self.name}")

    async def stop(self) -> None:
        for task in (self._task, self._clock_task):
            if task:
                task.cancel()
        if self._clock_sub is not None:
            try:
                await self._clock_sub.unsubscribe()
            except Exception:
                pass

    def _leading(self):
        shard = self.node.shard
        if self.node.role == "leader" and shard is not None and shard.is_leader:
            return shard
        return None

    # ---- publishing ----

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            shard = self._leading()
            if shard is None:
                await asyncio.sleep(0.05)
                continue
            try:
                await self._lead(shard)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("shard %s: publishing events stopped (%s); resuming from the log",
                            self.name, _reason(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _lead(self, shard) -> None:
        await self._ensure_stream()
        queue: asyncio.Queue = asyncio.Queue()

        def listener(published, committed) -> None:
            queue.put_nowait((published, committed))
        shard.listeners.append(listener)  # before reading the log: nothing falls in between
        try:
            committed = shard.state.committed
            await self._catch_up(shard, committed)
            while self._leading() is shard:
                try:
                    item = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except asyncio.TimeoutError:
                    await self._heartbeat(shard, committed)
                    continue
                items = [item]
                while not queue.empty():
                    items.append(queue.get_nowait())
                if len(items) > MAX_BACKLOG:  # publishing fell behind: the log is cheaper
                    raise Backlog(f"{len(items)} commits waiting")
                # each commit carries its request's trace context (the hub hands it to watchers)
                commits = [tracing.traced_commit(rev, events, spb.HistoryResponse)
                           for published, _ in items for rev, events in published
                           if rev > self.published_to]
                committed = max(committed, items[-1][1])
                if commits:
                    await self._publish(shard, commits, committed, _last_trace(commits))
                else:
                    await self._heartbeat(shard, committed)
        finally:
            if listener in shard.listeners:
                shard.listeners.remove(listener)

    async def _catch_up(self, shard, committed: int) -> None:
        """Publish the txns of the log the stream lacks, up to `committed`."""
        last = await self._last_published(shard)
        if last is None or last > committed:
            if last is not None:
                log.warning("shard %s: stream %s is ahead of the database (%d > %d); it belongs "
                            "to another database, publishing from %d", self.name, self.stream,
                            last, committed, committed)
            self.published_to = committed  # a new stream starts here; hubs backfill the rest
            return
        self.published_to = last
        if last < shard.state.compact_rev:
            log.error("shard %s: revisions %d..%d were compacted before they were published; "
                      "watch-hubs report them as compacted", self.name, last + 1,
                      shard.state.compact_rev)
            self.published_to = shard.state.compact_rev
        lo = self.published_to + 1
        if lo <= committed:
            log.info("shard %s: publishing revisions %d..%d from the log", self.name, lo, committed)
        while lo <= committed:
            hi = min(committed, lo + REPLAY_PAGE_REVS - 1)
            commits = commits_of(await shard.history(EVERY_KEY, lo, hi))
            if commits:
                await self._publish(shard, commits, hi)
            lo = hi + 1

    async def _last_published(self, shard) -> int | None:
        """The committed_rev of the stream's last message; None for an empty stream or one
        whose last message came from another database (a reused shard name)."""
        try:
            msg = await self.js.get_last_msg(self.stream, self.subject)
        except NotFoundError:
            return None
        last = ShardEvents.FromString(msg.data)
        if last.cluster_id != shard.state.cluster_id:
            log.warning("shard %s: stream %s ends with events of another database (cluster id "
                        "%x, ours %x); publishing ours from now on", self.name, self.stream,
                        last.cluster_id, shard.state.cluster_id)
            return None
        return last.committed_rev

    async def _publish(self, shard, commits: list, committed: int, trace=None) -> None:
        """Publish commits (revision order, all above published_to) in as few messages as fit;
        trace: the trace context (headers) of a request among them."""
        limit = max(self.nc.max_payload - HEADER_ROOM, 1024)
        part: list = []
        size = 0
        for commit in commits:
            n = commit.ByteSize() + 8
            if part and size + n > limit:
                await self._send(shard, part, part[-1].rev)
                part, size = [], 0
            part.append(commit)
            size += n
        await self._send(shard, part, committed, trace)

    async def _send(self, shard, commits: list, committed: int, trace=None) -> None:
        msg = ShardEvents(shard=self.name, prev_rev=self.published_to, commits=commits,
                          committed_rev=committed, compact_rev=shard.state.compact_rev,
                          term=shard.state.term, cluster_id=shard.state.cluster_id)
        data = msg.SerializeToString()
        if len(data) > self.nc.max_payload - HEADER_ROOM:
            # one txn larger than a NATS message: consumers read it from the History RPC
            del msg.commits[:]
            msg.truncated = True
            data = msg.SerializeToString()
        last_rev = commits[-1].rev if commits else committed
        headers = {"Nats-Msg-Id": f"{self.name}:{shard.state.cluster_id:x}:{last_rev}"}
        if trace:
            headers.update(trace)
        await self.js.publish(self.subject, data, stream=self.stream, headers=headers)
        self.published_to = committed
        self.published_txns += len(commits)

    async def _heartbeat(self, shard, committed: int) -> None:
        msg = ShardEvents(shard=self.name, prev_rev=self.published_to, committed_rev=committed,
                          compact_rev=shard.state.compact_rev, term=shard.state.term,
                          cluster_id=shard.state.cluster_id)
        await self.nc.publish(heartbeat_subject(self.name), msg.SerializeToString())

    async def _ensure_stream(self) -> None:
        config = StreamConfig(name=self.stream, subjects=[self.subject],
                              retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
                              discard=DiscardPolicy.OLD, max_age=self.retention_s,
                              duplicate_window=min(DEDUPE_WINDOW_S, self.retention_s))
        try:
            await self.js.add_stream(config)
        except BadRequestError:  # exists with other settings (another retention): take ours
            await self.js.update_stream(config)

    # ---- the clock ----

    async def _on_clock(self, msg) -> None:
        try:
            rev = int(msg.data)
        except ValueError:
            return
        shard = self._leading()
        if shard is None or rev <= shard.state.committed or rev <= self._clock_target:
            return
        self._clock_target = rev
        if self._clock_task is None or self._clock_task.done():
            self._clock_task = asyncio.create_task(self._sync(shard))

    async def _sync(self, shard) -> None:
        """Sync to the newest target; one writer op at a time, targets coalesce meanwhile."""
        while self._clock_target > shard.state.committed and self._leading() is shard:
            try:
                await shard.sync(self._clock_target)
            except Exception as exc:
                log.debug("shard %s: clock sync to %d failed: %s", self.name, self._clock_target, exc)
                return


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


def _last_trace(commits: list) -> dict | None:
    """The trace context of the newest traced commit, as NATS message headers (the hub's
    delivery span continues it)."""
    for c in reversed(commits):
        if c.traceparent:
            return {"traceparent": c.traceparent, **({"tracestate": c.tracestate} if c.tracestate else {})}
    return None
