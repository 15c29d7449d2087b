"""One trigger on one replica: read the resource's changes from the data layer, turn them into
trigger events, deliver them in order per object, keep the watermark.

Invariants:
- Events of one object are delivered one at a time, in revision order: one queue per object
  key, drained by one task; objects run in parallel up to spec.concurrency.
- `watermark()` W: every event at or below W that this replica owns was delivered, dead-
  lettered or filtered out. Pending events are counted per revision; W is one below the
  lowest revision with a pending event, or the last revision read from the watch when none is
  pending. Initial events (sendInitialEvents, re-lists) count at the listing's revision.
- Memory holds pending events only (bounded by MAX_PENDING, the watch waits beyond it), never
  the resource's objects: RSS does not grow with the number of stored objects.
- A compaction gap (the watch's start revision is compacted away) is never skipped silently:
  the resource is re-listed at a current revision, objects changed since W are delivered as
  ADDED/MODIFIED, and the re-list is counted in status and metrics.
"""
from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import Counter, deque
from datetime import datetime, timezone

from kubefabric.client import Compacted, prefix_end
from kubefabric.telemetry import tracing

from . import metrics
from .compiled import TemplateData, Trigger
from .delivery import Caller, deliver
from .events import Event, classify
from .gotemplate import ExecError
from .celfilter import CELError
from .objects import DecodeError, decode, object_ref
from .records import Progress
from .request import RequestError, build

log = logging.getLogger("kubefabric.trigger")

MAX_PENDING = 10_000


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class StartPoint:
    """Where a pipeline starts: after `revision`; `initial`: list at this revision first
    (sendInitialEvents on a new trigger); skip events at or below `skip_until` whose key
    `skip_owner(key)` says this replica delivered before (a hand-over's already-done part)."""

    def __init__(self, revision: int, initial: int | None = None, skip_until: int = 0,
                 skip_owner=None):
        self.revision, self.initial = revision, initial
        self.skip_until, self.skip_owner = skip_until, skip_owner


class Pipeline:
    def __init__(self, trigger: Trigger, ctx, plural: str, prefix: bytes, progress: Progress):
        self.t = trigger
        self.ctx = ctx
        self.plural = plural
        self.prefix = prefix
        self.progress = progress              # counters; .revision is written by the checkpoint
        self.queues: dict[bytes, deque] = {}
        self.workers: dict[bytes, asyncio.Task] = {}
        self.pending: Counter = Counter()
        self.heap: list[int] = []
        self.npending = 0
        self.consumed = progress.revision
        self.sem = asyncio.Semaphore(trigger.spec.concurrency)
        self.room = asyncio.Event()
        self.room.set()
        self.caller: Caller | None = None
        self.task: asyncio.Task | None = None
        self.started = time.monotonic()
        self.namespaces = set(trigger.spec.namespaces)
        self.watch_prefix = prefix          # narrower when the trigger watches one namespace
        self.tls_error = ""

    # ---- lifecycle ----

    def start(self, at: StartPoint) -> None:
        self.consumed = at.revision
        self.task = asyncio.get_running_loop().create_task(self._run(at), name=f"trigger {self.t.id}")

    async def stop(self) -> None:
        tasks = [t for t in (self.task, *self.workers.values()) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.caller is not None:
            await self.caller.close()

    def watermark(self) -> int:
        while self.heap and self.pending[self.heap[0]] <= 0:
            self.pending.pop(heapq.heappop(self.heap), None)
        return self.heap[0] - 1 if self.heap else self.consumed

    # ---- reading the feed ----

    async def _run(self, at: StartPoint) -> None:
        self.tls_error = ""
        try:
            context = await self.ctx.ssl_context(self.t)
        except RequestError as err:  # every attempt fails with it until the Secret is fixed
            context, self.tls_error = None, str(err)
        self.caller = Caller(context, self.t.spec.concurrency)
        start = at.revision
        if at.initial is not None and start < at.initial:
            start = await self._list(at.initial, since=None, why="initial")
        while True:
            try:
                await self._watch(start, at)
                return
            except Compacted as err:
                log.warning("trigger %s: revision %d is compacted (compaction revision %d); "
                            "re-listing %s", self.t.id, start + 1, err.compact_revision, self.plural)
                start = await self._list(0, since=self.watermark(), why="compacted")

    async def _list(self, revision: int, since: int | None, why: str) -> int:
        """Enqueue the resource's objects at `revision` (0: now) as initial events: all of
        them (since None), or those changed after `since` (a re-list). The revision read at."""
        client = self.ctx.client
        while True:
            try:
                read_at = revision
                async for page in client.kv.pages(self.watch_prefix, prefix_end(self.watch_prefix),
                                                  revision=revision):
                    read_at = page.revision
                    self._hold(read_at)
                    for kv in page.kvs:
                        if since is not None and kv.mod_revision <= since:
                            continue
                        typ = "ADDED" if since is None or kv.create_revision > since else "MODIFIED"
                        ev = self._event(kv.key, kv.value, kv.mod_revision, kv.create_revision == kv.mod_revision,
                                         False, None, typ, initial=True)
                        if ev is not None:
                            ev.revision = kv.mod_revision
                            await self._enqueue(ev, count_at=read_at)
                    self._release(read_at)
                break
            except Compacted:
                revision = 0  # the origin revision is gone too: list what is there now
        if why == "compacted":
            self.progress.relists += 1
            self.progress.last_relist = {"revision": read_at, "time": now_iso(), "since": since,
                                         "reason": "the watch's start revision was compacted; "
                                                   "changes since the watermark were re-listed "
                                                   "(deletions in the gap cannot be reported)"}
            metrics.relists.labels(self.t.id).inc()
        self.consumed = max(self.consumed, read_at)
        return read_at

    async def _watch(self, start: int, at: StartPoint) -> None:
        w = self.ctx.client.watch(self.watch_prefix, prefix_end(self.watch_prefix), start_revision=start + 1,
                                  prev_kv=True, progress_notify=True, trace_context=tracing.ENABLED)
        try:
            async for batch in w:
                for e in batch.events:
                    kv = e.kv
                    if kv.mod_revision <= at.skip_until and at.skip_owner is not None \
                            and at.skip_owner(kv.key):
                        continue
                    deleted = e.type == 1
                    prev = e.prev_kv if e.HasField("prev_kv") else None
                    ev = self._event(kv.key, kv.value, kv.mod_revision, kv.create_revision == kv.mod_revision,
                                     deleted, prev, None)
                    if ev is not None:
                        ev.trace = batch.trace or None  # the write's trace: its delivery joins it
                        await self._enqueue(ev)
                last = batch.events[-1].kv.mod_revision if batch.events else batch.revision
                self.consumed = max(self.consumed, last)
                self.ctx.observe_feed(self, batch.revision)
        finally:
            await w.close()

    # ---- one change ----

    def _event(self, key, value, revision, created, deleted, prev, forced_type, initial=False):
        """The trigger event of a change, or None when this trigger does not see it."""
        if not self.ctx.owns(key):
            return None
        ref = object_ref(key, self.prefix)
        if ref is None or (self.namespaces and ref.namespace not in self.namespaces):
            return None
        try:
            new = decode(key, value, revision) if not deleted else None
            old = decode(key, prev.value, prev.mod_revision) if prev is not None and prev.value else None
        except DecodeError as err:
            self._note_error(f"cannot decode {key.decode(errors='replace')}: {err}", filter_error=True)
            return None
        sel = self.t.selector
        new_ok = new is not None and sel.matches(new)
        old_ok = old is not None and sel.matches(old)
        typ = forced_type or classify(created, deleted, new_ok, old_ok)
        if forced_type and not new_ok:
            typ = None
        if typ is None or typ not in self.t.spec.event_types:
            return None
        if deleted or (typ == "DELETED"):
            obj = old if deleted else (old if old is not None else new)
            if obj is None:
                obj = {"metadata": {"name": ref.name, **({"namespace": ref.namespace} if ref.namespace else {})}}
            if deleted:
                obj = dict(obj)
                obj["metadata"] = {**(obj.get("metadata") or {}), "resourceVersion": str(revision)}
        else:
            obj = new
        ev = Event(typ, key, revision, obj, old, ref, initial)
        try:
            if self.t.event_filter is not None and not self.t.event_filter.matches(TemplateData(obj, old)):
                return None
            if self.t.cel is not None and not self.t.cel.matches(
                    {"type": typ, "key": key.decode(errors="replace"), "revision": revision}, obj, old):
                return None
        except (ExecError, CELError) as err:
            self._note_error(f"filter failed on {ev.id}: {err}", filter_error=True)
            return None
        return ev

    def _note_error(self, message: str, filter_error: bool = False) -> None:
        self.progress.last_error = message
        self.progress.last_error_time = now_iso()
        if filter_error:
            self.progress.filtered_errors += 1
            metrics.filter_errors.labels(self.t.id).inc()
        self.ctx.log_error(self.t, message)

    def _hold(self, revision: int) -> None:
        if self.pending[revision] == 0:
            heapq.heappush(self.heap, revision)
        self.pending[revision] += 1

    def _release(self, revision: int) -> None:
        self.pending[revision] -= 1

    async def _enqueue(self, ev: Event, count_at: int | None = None) -> None:
        while self.npending >= MAX_PENDING:
            self.room.clear()
            await self.room.wait()
        ev.count_at = count_at if count_at is not None else ev.revision
        self._hold(ev.count_at)
        self.npending += 1
        q = self.queues.get(ev.key)
        if q is None:
            q = self.queues[ev.key] = deque()
        q.append(ev)
        if ev.key not in self.workers:
            self.workers[ev.key] = asyncio.get_running_loop().create_task(self._drain(ev.key))
        self.ctx.observe_enqueued(self, ev)

    async def _drain(self, key: bytes) -> None:
        q = self.queues[key]
        try:
            while q:
                ev = q[0]
                async with self.sem:
                    await self._deliver(ev)
                q.popleft()
                self._release(ev.count_at)
                self.npending -= 1
                if self.npending < MAX_PENDING:
                    self.room.set()
        finally:
            if not q:
                self.queues.pop(key, None)
            self.workers.pop(key, None)

    async def _deliver(self, ev: Event) -> None:
        t, s = self.t, self.t.spec

        def make():
            if self.tls_error:
                raise RequestError(self.tls_error)
            return build(t, ev, self.plural, self.ctx.source, self.ctx.lookups)

        def on_attempt(status, error, seconds):
            self.ctx.observe_attempt(self, ev, status, error, seconds)
            if error:
                self.progress.failed += 1
                self.progress.last_error = f"{ev.id}: {error}"
                self.progress.last_error_time = now_iso()

        outcome = await self.ctx.traced_delivery(ev, lambda: deliver(self.caller, make, s.timeout, s.retries,
                                                                     s.backoff, on_attempt))
        if outcome.delivered:
            self.progress.delivered += 1
            self.ctx.observe_delivered(self, ev)
            return
        self.ctx.log_error(t, f"{ev.id}: not delivered after {outcome.attempts} attempt(s): {outcome.error}")
        if s.dead_letter == "store":
            await self.ctx.dead_letter(t, ev, outcome)
            self.progress.dead_lettered += 1
            metrics.dead_lettered.labels(t.id).inc()
        else:
            metrics.discarded.labels(t.id).inc()
