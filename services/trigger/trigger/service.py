"""The trigger service on one replica: triggers from their sources, one pipeline per runnable
trigger under the current member set, watermarks and counters checkpointed to KubeFabric,
dead letters stored, the hand-over barrier on member changes (members.py)."""
from __future__ import annotations

import asyncio
import json
import logging
import time

from kubefabric.client import ClientError, EtcdClient, prefix_end
from kubefabric.telemetry import tracing

from . import metrics, records
from .compiled import Trigger
from .delivery import Outcome
from .dlq import replay_loop
from .events import Event
from .members import Membership, owner_of
from .lookups import StoreLookups, secret_key, service_key
from .objects import decode, pluralize, resource_prefix
from .pipeline import Pipeline, StartPoint, now_iso
from .records import DeadLetter, Progress
from .status import write_status

log = logging.getLogger("kubefabric.trigger")

LOG_EVERY_S = 10.0


class TriggerService:
    def __init__(self, client: EtcdClient, replica: str, lease_ttl: int, source: str,
                 service_url_template: str, checkpoint_interval: float = 1.0):
        self.client = client
        self.name = replica
        self.source = source
        self.membership = Membership(client, replica, lease_ttl)
        self.lookups = StoreLookups(client, service_url_template)
        self.lookups.on_change = self._referenced_changed
        self.checkpoint_interval = checkpoint_interval
        self.triggers: dict[str, Trigger] = {}
        self.pipelines: dict[str, Pipeline] = {}
        self.running_set: list[str] | None = None
        self.prev_set: list[str] | None = None
        self.wake = asyncio.Event()
        self.ready = asyncio.Event()
        self._logged: dict[str, float] = {}
        self._written: dict[str, bytes] = {}
        self._restart: set[str] = set()
        self.feed_head: dict[str, int] = {}
        self.plurals: dict[tuple[str, str], str] = {}

    # ---- triggers come and go ----

    def set_trigger(self, tid: str, t: Trigger | None) -> None:
        if t is None:
            self.triggers.pop(tid, None)
            log.info("trigger %s removed", tid)
        else:
            if t.error:
                log.error("trigger %s is not valid: %s", tid, t.error)
            else:
                log.info("trigger %s (generation %d): %s %s", tid, t.generation, t.spec.api_version,
                         t.spec.kind)
            self.triggers[tid] = t
        self.wake.set()

    def _referenced_changed(self, key: bytes) -> None:
        for t in self.triggers.values():
            if t.runnable and t.spec.tls is not None and key in self._tls_keys(t):
                self._restart.add(t.id)
                self.wake.set()

    def _tls_keys(self, t: Trigger) -> set[bytes]:
        tls = t.spec.tls
        return {secret_key(t.namespace, r.name) for r in (tls.ca, tls.cert, tls.key) if r}

    # ---- the main loop ----

    async def run(self, stop: asyncio.Event) -> None:
        await self.lookups.start()
        await self.membership.join()
        loops = [asyncio.create_task(f()) for f in (self._checkpoints, self._statuses, self._replays)]
        try:
            while not stop.is_set():
                if self.membership.lost.is_set():
                    await self._stop_all("this replica's lease was lost")
                    log.warning("rejoining with a new lease")
                    self.running_set = None
                    await self.membership.join()
                members = self.membership.members
                if members != self.running_set:
                    await self._hand_over(members)
                    continue
                await self._reconcile()
                self.ready.set()   # every runnable trigger has its starting point recorded
                waits = [asyncio.create_task(e.wait()) for e in
                         (self.wake, self.membership.changed, self.membership.lost, stop)]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()
                self.wake.clear()
        finally:
            for task in loops:
                task.cancel()
            await self._stop_all("shutting down")
            await self.lookups.stop()
            await self.membership.leave()

    async def _hand_over(self, members: list[str]) -> None:
        self.membership.changed.clear()
        if self.pipelines:
            log.info("member set changed (%s): stopping deliveries for the hand-over", ", ".join(members))
        await self._stop_all("member set changed")
        await self.membership.ack(members)
        if not await self.membership.barrier(members):
            return  # changed again: start over
        self.prev_set, self.running_set = self.running_set, members
        log.info("running with members %s", ", ".join(members))

    async def _reconcile(self) -> None:
        for tid in list(self.pipelines):
            t = self.triggers.get(tid)
            p = self.pipelines[tid]
            if t is None or not t.runnable or t.fingerprint != p.t.fingerprint or tid in self._restart:
                await self._stop(tid, "changed" if t is not None else "removed")
                if t is None and self._is_status_owner_of(p.t):
                    await self._forget(p.t)
        self._restart.clear()
        for tid, t in self.triggers.items():
            if t.runnable and tid not in self.pipelines:
                try:
                    await self._start(t)
                except ClientError as err:
                    self.log_error(t, f"cannot start: {err}")
                    self.wake.set()
                    await asyncio.sleep(1)
        metrics.triggers.labels("running").set(len(self.pipelines))
        metrics.triggers.labels("invalid").set(sum(1 for t in self.triggers.values() if t.error))

    # ---- one pipeline ----

    async def _plural(self, t: Trigger) -> str:
        s = t.spec
        k = (s.group, s.kind)
        if k not in self.plurals:
            plural = pluralize(s.kind)
            if s.group:
                crds = resource_prefix("apiextensions.k8s.io", "customresourcedefinitions")
                try:
                    kvs, _ = await self.client.kv.list(crds)
                except ClientError:
                    kvs = []
                for kv in kvs:
                    try:
                        crd = decode(kv.key, kv.value, kv.mod_revision).get("spec") or {}
                    except ValueError:
                        continue
                    names = crd.get("names") or {}
                    if crd.get("group") == s.group and names.get("kind") == s.kind:
                        plural = names.get("plural") or plural
            self.plurals[k] = plural
        return self.plurals[k]

    async def _start(self, t: Trigger) -> None:
        plural = await self._plural(t)
        ns = t.spec.namespaces[0] if len(t.spec.namespaces) == 1 else None
        prefix = resource_prefix(t.spec.group, plural)
        refs = {secret_key(t.namespace, r.name) for r in t.spec.secret_refs()}
        if t.spec.url_service:
            refs.add(service_key(t.spec.url_service.namespace, t.spec.url_service.name))
        await self.lookups.prefetch(refs)
        at, progress = await self._start_point(t)
        p = Pipeline(t, self, plural, prefix, progress)
        if ns:  # one namespace: watch just it
            p.watch_prefix = resource_prefix(t.spec.group, plural, ns)
        self.pipelines[t.id] = p
        p.start(at)
        log.info("trigger %s: delivering %s %s events after revision %d%s", t.id, t.spec.kind,
                 "/".join(t.spec.event_types), at.revision,
                 f" (initial objects at {at.initial})" if at.initial else "")

    async def _start_point(self, t: Trigger) -> tuple[StartPoint, Progress]:
        kvs, _ = await self.client.kv.list(records.progress_prefix(t.uid))
        recs = {kv.key.rsplit(b"/", 1)[1].decode(): Progress.decode(kv.value) for kv in kvs}
        origin = await self._origin(t)
        if recs:
            w0 = min(r.revision for r in recs.values())
        else:
            w0 = origin["revision"] - 1 if origin["initial"] else origin["revision"]
        initial = origin["revision"] if origin["initial"] and w0 < origin["revision"] else None
        own = recs.get(self.name)
        skip_until, skip_owner = 0, None
        if own is not None and self.prev_set:
            prev, me = list(self.prev_set), self.name
            skip_until, skip_owner = own.revision, (lambda key: owner_of(prev, key) == me)
        progress = own or Progress()
        progress.revision = w0
        return StartPoint(w0, initial, skip_until, skip_owner), progress

    async def _origin(self, t: Trigger) -> dict:
        key = records.origin_key(t.uid)
        while True:
            r = await self.client.kv.range(key)
            if r.kvs:
                return json.loads(r.kvs[0].value)
            origin = {"revision": r.revision, "initial": t.spec.send_initial_events}
            if (await self.client.kv.put_if(key, json.dumps(origin).encode(), 0)).succeeded:
                return origin

    async def _stop(self, tid: str, why: str) -> None:
        p = self.pipelines.pop(tid, None)
        if p is None:
            return
        await p.stop()
        await self._checkpoint(p)
        log.info("trigger %s stopped (%s) at watermark %d", tid, why, p.watermark())

    async def _stop_all(self, why: str) -> None:
        for tid in list(self.pipelines):
            await self._stop(tid, why)

    async def _forget(self, t: Trigger) -> None:
        """A deleted trigger: its progress goes (its dead letters stay for `dlq list`)."""
        try:
            await self.client.kv.delete(records.progress_prefix(t.uid),
                                        prefix_end(records.progress_prefix(t.uid)))
            await self.client.kv.delete(records.origin_key(t.uid))
        except ClientError as err:
            log.warning("trigger %s: cannot remove its progress records: %s", t.id, err)

    # ---- checkpoints ----

    async def _checkpoint(self, p: Pipeline) -> None:
        p.progress.revision = p.watermark()
        raw = p.progress.encode()
        key = records.progress_key(p.t.uid, self.name)
        if self._written.get(key) == raw:
            return
        try:
            await self.client.kv.put(key, raw)
            self._written[key] = raw
        except ClientError as err:
            self.log_error(p.t, f"cannot record progress: {err}")
        metrics.watermark.labels(p.t.id).set(p.progress.revision)

    async def _checkpoints(self) -> None:
        while True:
            await asyncio.sleep(self.checkpoint_interval)
            for p in list(self.pipelines.values()):
                await self._checkpoint(p)
                head = self.feed_head.get(p.t.id, 0)
                metrics.lag.labels(p.t.id).set(max(head - p.watermark(), 0))
                metrics.pending.labels(p.t.id).set(p.npending)
            await self._collect_dead_records()

    async def _collect_dead_records(self) -> None:
        """The first live member removes progress records of members that are gone once every
        live member's watermark passed them (they no longer hold anything back)."""
        members = self.running_set or []
        if not members or members[0] != self.name:
            return
        for t in list(self.triggers.values()):
            try:
                kvs, _ = await self.client.kv.list(records.progress_prefix(t.uid))
            except ClientError:
                return
            recs = {kv.key.rsplit(b"/", 1)[1].decode(): (kv, Progress.decode(kv.value)) for kv in kvs}
            live = [r.revision for m, (_, r) in recs.items() if m in members]
            if not live or any(m not in recs for m in members):
                continue
            floor = min(live)
            for m, (kv, r) in recs.items():
                if m not in members and r.revision <= floor:
                    await self.client.kv.delete_if(kv.key, kv.mod_revision)

    # ---- status ----

    def _is_status_owner_of(self, t: Trigger) -> bool:
        return bool(self.running_set) and owner_of(self.running_set, t.uid.encode()) == self.name

    async def _statuses(self) -> None:
        while True:
            await asyncio.sleep(max(self.checkpoint_interval * 2, 1.0))
            for t in list(self.triggers.values()):
                if self._is_status_owner_of(t):
                    try:
                        await write_status(self, t)
                    except ClientError as err:
                        log.debug("status of %s not written: %s", t.id, err)

    # ---- replays ----

    async def _replays(self) -> None:
        await replay_loop(self)

    # ---- the context pipelines use ----

    def owns(self, key: bytes) -> bool:
        return self.running_set is not None and owner_of(self.running_set, key) == self.name

    async def ssl_context(self, t: Trigger):
        return self.lookups.ssl_context(t.namespace, t.spec.tls)

    def observe_feed(self, p: Pipeline, revision: int) -> None:
        self.feed_head[p.t.id] = max(self.feed_head.get(p.t.id, 0), revision)

    def observe_enqueued(self, p: Pipeline, ev: Event) -> None:
        ev.enqueued = time.monotonic()

    def observe_attempt(self, p: Pipeline, ev: Event, status: int, error: str, seconds: float) -> None:
        metrics.attempts.labels(p.t.id, str(status) if status else "error").inc()
        metrics.request_seconds.labels(p.t.id).observe(seconds)
        if error:
            metrics.failed.labels(p.t.id).inc()
            self.log_error(p.t, f"{ev.id}: {error}")

    def observe_delivered(self, p: Pipeline, ev: Event) -> None:
        metrics.delivered.labels(p.t.id).inc()
        metrics.delivery_seconds.labels(p.t.id).observe(time.monotonic() - ev.enqueued)

    async def traced_delivery(self, ev: Event, run):
        if not tracing.ENABLED:
            return await run()
        # a child of the write's trace when the watch carried it, else a trace of its own
        with tracing.tracer().start_as_current_span(
                "trigger deliver", kind=tracing.api.CLIENT, context=tracing.context_from_carrier(ev.trace),
                attributes={"cloudevents.event_id": ev.id, "kubefabric.event_type": ev.type}):
            return await run()

    def log_error(self, t: Trigger, message: str) -> None:
        now = time.monotonic()
        if now - self._logged.get(t.id, 0.0) >= LOG_EVERY_S:
            self._logged[t.id] = now
            log.warning("trigger %s: %s", t.id, message)

    async def dead_letter(self, t: Trigger, ev: Event, outcome: Outcome) -> None:
        letter = DeadLetter(t.id, t.uid, ev.id, ev.type, ev.key.decode(errors="replace"), ev.revision,
                            outcome.error, outcome.attempts, now_iso(), ev.object, ev.old)
        key = records.dlq_prefix(t.uid) + records.letter_name(ev.revision, ev.key)
        while True:
            try:
                await self.client.kv.put(key, letter.encode())
                log.warning("trigger %s: %s dead-lettered after %d attempt(s): %s", t.id, ev.id,
                            outcome.attempts, outcome.error)
                return
            except ClientError as err:  # never drop it: the watermark waits for this
                self.log_error(t, f"cannot store dead letter {ev.id} ({err}); retrying")
                await asyncio.sleep(1)
