"""Keeping a shard's indexes: which exist (kf_index_state), the backfill of a new one, readiness.

Invariants (together they make a ready index exact at every retained revision):
- A state row exists only while every writer since its `since_rev` indexed the rule's keys at
  write time: a leader reconciles the rows with its own rules in its first writer batch (rows
  of rules it does not have are deleted before it writes anything; new rules get
  since_rev = the clock of that batch), and again, in order with the writes, when its rules
  change. The writer's rules are switched inside that same batch.
- The backfill indexes every put row at or below since_rev of the rule's keys, in key order,
  in short writer batches (each reads and writes in one transaction, so a concurrent
  compaction cannot slip between), then marks the row ready. Rows above since_rev were
  indexed when written. Compaction deletes index rows with their log rows.
- Queries use an index only when its state row, read in the query's own snapshot, is ready.
"""
from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import Counter, Gauge

from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb
from kubefabric.store.statements import shape_of

from .rows import Indexer
from .rules import IndexRule

log = logging.getLogger("kubefabric.index")

BACKFILL_BATCH = 500        # log rows per backfill step (one short writer transaction)
BACKFILL_MAX_PAUSE_S = 0.1  # pause after a step: as long as the step took, at most this

index_ready = Gauge("kubefabric_index_ready",
                    "1 when the index answers queries, 0 while it is being built (backfill).",
                    ("shard", "index"))
index_backfilled = Counter("kubefabric_index_backfilled_rows",
                           "Log rows indexed by backfills (object versions written before their "
                           "index existed).", ("shard",))


class IndexState:
    """One kf_index_state row."""

    __slots__ = ("id", "description", "since_rev", "cursor", "ready", "rows")

    def __init__(self, id, description, since_rev, cursor, ready, rows):
        self.id, self.description, self.since_rev = id, description, since_rev
        self.cursor, self.ready, self.rows = bytes(cursor), bool(ready), rows


async def read_states(cur) -> dict[str, IndexState]:
    return {r[0]: IndexState(*r) for r in await cur.rows("index_state_all", {})}


class ShardIndex:
    """The index side of one Shard: its rules, the writer's Indexer, the backfill tasks."""

    def __init__(self, shard_name: str = "default"):
        self.shard_name = shard_name
        self.rules: tuple[IndexRule, ...] = ()
        self.indexer = Indexer()  # the writer's
        self.shard = None          # set while this process leads the shard
        self._backfills: dict[str, asyncio.Task] = {}
        self._building: list[str] = []  # ids prepare_lead left to backfill
        self._reconciling = asyncio.Lock()

    @property
    def by_id(self) -> dict[str, IndexRule]:
        return {r.id: r for r in (*self.rules, *self.indexer.rules)}

    @property
    def active(self) -> bool:
        """Whether index rows may exist (compaction then deletes them with their log rows)."""
        return bool(self.rules or self.indexer.rules)

    # ---- configuration ----

    def configure(self, rules: tuple[IndexRule, ...]) -> None:
        """The rules from the topology (at start and on every reload). A leader applies them
        in order with its writes; a replica keeps them for when it leads."""
        before = {r.id for r in self.rules}
        self.rules = tuple(rules)
        for r in self.rules:
            if r.id not in before:
                log.info("shard %s: index %s configured", self.shard_name, r.description)
        if self.shard is not None and self.shard.writer is not None:
            asyncio.get_running_loop().create_task(self.reconcile())

    async def prepare_lead(self, cur, clock: int) -> None:
        """In the transaction that makes this process the leader, before its writer exists:
        the state rows become this process's rules (rows of other rules deleted, new rules
        indexed after `clock`), and the writer will index exactly these rules. If the
        transaction fails, the process does not lead."""
        self._building = await self._apply(cur, clock, self.rules)
        self.indexer.rules = self.rules

    def lead(self, shard) -> None:
        """After the leader transaction committed and the writer started."""
        self.shard = shard
        self._start_backfills(self._building)

    def stop(self) -> None:
        self.shard = None
        for task in self._backfills.values():
            task.cancel()
        self._backfills.clear()

    async def reconcile(self) -> None:
        """Apply changed rules on the leader, in order with the writes. The writer indexes
        the old and the new rules until the state rows are committed, then the new ones only:
        a state row never outlives the indexing of its rule."""
        async with self._reconciling:
            shard = self.shard
            if shard is None or shard.writer is None:
                return
            rules = self.rules
            try:
                building = await shard.writer.submit(self._reconcile, rules)
            except Exception as exc:  # noqa: BLE001 - tried again on the next change or lead
                log.error("shard %s: applying the index settings failed (the writer keeps "
                          "indexing the old and new rules): %s", self.shard_name, exc)
                return
            self.indexer.rules = rules
            self._start_backfills(building)

    async def _reconcile(self, applier, rules: tuple[IndexRule, ...]) -> list[str]:
        """Writer handler: state rows = `rules`; returns the ids still to backfill."""
        building = await self._apply(applier.cur, applier.clock, rules)
        known = {r.id for r in self.indexer.rules}
        self.indexer.rules = (*self.indexer.rules, *(r for r in rules if r.id not in known))
        return building

    async def _apply(self, cur, clock: int, rules: tuple[IndexRule, ...]) -> list[str]:
        states = await read_states(cur)
        wanted = {r.id: r for r in rules}
        for rule_id, st in states.items():
            if rule_id not in wanted:
                await cur.execute("index_state_delete", {"id": rule_id})
                try:
                    index_ready.remove(self.shard_name, st.description)
                except KeyError:
                    pass
                log.info("shard %s: index %s dropped (no longer in the topology)",
                         self.shard_name, st.description)
        building = []
        for rule_id, rule in wanted.items():
            st = states.get(rule_id)
            if st is None:
                await cur.execute("index_state_insert", {
                    "id": rule_id, "description": rule.description[:1024],
                    "since_rev": clock, "cursor": b"", "ready": 0, "rows": 0})
                log.info("shard %s: index %s: indexing writes after revision %d; building the "
                         "index of earlier ones", self.shard_name, rule.description, clock)
            index_ready.labels(self.shard_name, rule.description).set(int(bool(st and st.ready)))
            if st is None or not st.ready:
                building.append(rule_id)
        return building

    async def statuses(self, cur) -> list[qpb.IndexStatus]:
        """The indexes as stored (snapshot `cur`), and configured rules the leader has not
        applied yet (pending)."""
        states = await read_states(cur)
        out = [qpb.IndexStatus(index=st.description, ready=st.ready, since_revision=st.since_rev,
                               backfilled=st.rows, cursor=b"" if st.ready else st.cursor)
               for st in states.values()]
        out += [qpb.IndexStatus(index=r.description, pending=True)
                for r in self.rules if r.id not in states]
        return sorted(out, key=lambda s: s.index)

    # ---- backfill ----

    def _start_backfills(self, rule_ids: list[str]) -> None:
        shard = self.shard
        for rule_id in rule_ids:
            task = self._backfills.get(rule_id)
            if shard is not None and (task is None or task.done()):
                self._backfills[rule_id] = asyncio.get_running_loop().create_task(
                    self._backfill(shard, rule_id), name=f"index-backfill-{rule_id[:8]}")

    async def _backfill(self, shard, rule_id: str) -> None:
        started, total = time.monotonic(), 0
        rule = self.by_id.get(rule_id)
        name = rule.description if rule else rule_id
        try:
            while True:
                writer = shard.writer
                if writer is None or self.shard is not shard:
                    return  # stepped down: the next leader resumes from the stored cursor
                t0 = time.monotonic()
                result = await writer.submit(self._step, rule_id)
                if result is None:
                    return  # dropped meanwhile, or finished by an earlier task
                done, n = result
                total += n
                index_backfilled.labels(self.shard_name).inc(n)
                if done:  # committed: queries from now on read the index
                    if rule is not None:
                        index_ready.labels(self.shard_name, rule.description).set(1)
                    log.info("shard %s: index %s ready: %d object versions backfilled in %.1f s",
                             self.shard_name, name, total, time.monotonic() - started)
                    return
                await asyncio.sleep(min(time.monotonic() - t0, BACKFILL_MAX_PAUSE_S))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - logged; the next reconcile or lead resumes it
            log.error("shard %s: backfill of index %s stopped: %s", self.shard_name, name, exc)

    async def _step(self, applier, rule_id: str):
        """Writer handler: index the next page of the rule's log rows; (done, rows), or None
        when the rule was dropped meanwhile."""
        cur = applier.cur
        st = (await read_states(cur)).get(rule_id)
        rule = self.by_id.get(rule_id)
        if st is None or rule is None:
            return None
        if st.ready:  # an earlier task committed it (its gauge update may have been lost)
            return True, 0
        rows, (start, end), cursor = await self._next_rows(cur, rule, st)
        if rows:
            # every version <= since_rev of the keys in [start, end) is in `rows`: rewritten
            await cur.execute("index_delete_range" if end else "index_delete_from",
                              {"start": start, "end": end, "since": st.since_rev})
            index_rows = []
            for key, rev, sub, value in rows:
                if rule.matches(key):
                    index_rows += self.indexer.rows_for(key, rev, sub, value)
            await cur.executemany("index_insert", index_rows)
        ready = cursor is None
        await cur.execute("index_state_progress", {"id": rule_id, "cursor": cursor or b"",
                                                   "ready": int(ready), "rows": st.rows + len(rows)})
        return ready, len(rows)

    async def _next_rows(self, cur, rule: IndexRule, st: IndexState):
        """(rows, span, next cursor): the put rows at or below since_rev of the keys in `span`
        (a range from the cursor on: whole keys, at most about a page of rows); cursor None once
        the rule's intervals are exhausted."""
        for start, end in rule.intervals():
            start = max(start, st.cursor)
            if end and start >= end:
                continue
            values = {"start": start, "end": end, "since": st.since_rev, "limit": BACKFILL_BATCH}
            rows = await cur.rows("backfill_rows", values, shape_of(end), limited=True)
            if len(rows) < BACKFILL_BATCH:
                if not rows:
                    continue  # nothing (left) in this interval
                return rows, (start, end), end or None
            last = rows[-1][0]
            if rows[0][0] != last:  # the last key may go on in the next page: leave it for it
                return [r for r in rows if r[0] != last], (start, last), last
            # one key with more versions than a page: all of them now
            rows = await cur.rows("backfill_key_rows", {"start": last, "since": st.since_rev})
            return rows, (start, last + b"\x00"), last + b"\x00"
        return [], (b"", b""), None
