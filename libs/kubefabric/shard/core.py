"""One shard: the MVCC store behind the etcd API (DESIGN §2–3), a ShardSurface
(kubefabric.shard.surface) over a Store (kubefabric.store.contract).

The same object serves the embedded default (kv-router calls it in-process) and every shard
service replica (the Shard gRPC API calls it). Reads run on snapshots; every mutation goes
through the one Writer. Committed changes go to `listeners` as (revision, events) in revision
order, followed by the new closed revision.
"""
from __future__ import annotations

import asyncio
import logging
import time
from kubefabric.etcd import checks, errors
from kubefabric.etcd.keyrange import KeyRange
from kubefabric.index.maintain import ShardIndex
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as shard_pb
from kubefabric.proto.mvccpb.kv_pb2 import Event
from kubefabric.query.execute import run_query
from kubefabric.store import schema
from kubefabric.store.contract import Store

from . import hashkv, importer
from .apply import Applier
from .leadership import EMBEDDED_LEASE_S, RENEW_EVERY, Campaign, Lease, ShardBusy  # noqa: F401 (re-export)
from .authstore import ShardAuth
from .leases import Leases
from .quota import Quota, txn_cost
from .history import read_history
from .reads import execute_range, one_statement
from .state import ShardState
from .surface import Listener
from .writer import MAX_BATCH, Writer

log = logging.getLogger("kubefabric.shard")

DEFRAGMENT_LEASE_S = 3600.0  # the lease a SQLite VACUUM holds (it cannot renew meanwhile)
COMPACT_WINDOW = 10_000   # revisions scanned per compaction step
COMPACT_BATCH = 1_000     # rows deleted per compaction step (one short write transaction)



class Shard:
    def __init__(self, store: Store, *, max_txn_ops: int = 128, min_lease_ttl: int = 2,
                 quota_bytes: int = 0, group_commit: bool = True,
                 lease_s: float = EMBEDDED_LEASE_S) -> None:
        self.store = store
        self.group_commit = group_commit
        self.quota = Quota(quota_bytes)
        self.max_txn_ops = max_txn_ops
        self.lease_s = lease_s  # the leader lease (kubefabric.shard.leadership); shard services
                                # pass their --leader-lease
        self.leases = Leases(min_lease_ttl)
        self.state = ShardState()
        self.listeners: list[Listener] = []
        self.writer: Writer | None = None
        self.lease: Lease | None = None
        self._tasks: list[asyncio.Task] = []
        self._compaction: asyncio.Task | None = None
        self._keeper: asyncio.Task | None = None
        self._revoking: set[int] = set()
        self.index = ShardIndex()  # label and field index: rules set by index.configure()
        self.hashes: list[hashkv.KVHash] = []  # of the last compactions (etcd's hash storage)
        self.auth = ShardAuth()  # etcd's auth store; used on the default shard

    # ---- lifecycle and leadership ----

    async def open(self, wait_s: float | None = None) -> None:
        """Embedded mode: open the store and be its only writer: take the lease (ShardBusy when
        another live process of this host holds it, or any holder keeps it `wait_s`, default two
        leases), and take it again whenever it is lost (the database stayed locked, say)."""
        await self.store.open()
        campaign = Campaign(self.store, "", self.lease_s)
        try:  # (no replica waits for this lease: no server-side timeouts, limit_writer_silence)
            await self.lead(await campaign.acquire(2 * self.lease_s if wait_s is None else wait_s))
        except BaseException:
            await self.store.close()
            raise
        self._keeper = asyncio.create_task(self._keep_leading(campaign), name="shard-lease")

    @property
    def is_leader(self) -> bool:
        """This process writes the shard (each batch fenced by its term in the database); it
        answers from memory (lease keep-alives, alarms) only while its lease is valid."""
        return self.writer is not None

    @property
    def leading(self) -> bool:
        """The writer, within its lease: what it holds in memory is the shard's current state."""
        return self.writer is not None and self.lease.valid()

    async def lead(self, lease: Lease) -> None:
        """Become the shard's writer with a lease just taken. Loads the clock (DESIGN §3.4:
        never below a revision any earlier leader reported; every commit of earlier terms is
        visible, since none can commit after the takeover) and records it with the first
        renewal of the lease."""
        async with self.store.snapshot() as cur:
            meta = dict(await cur.rows("meta_all", {}))
            newest = await cur.scalar("max_rev", {}) or 0
            lease_rows = await cur.rows("lease_all", {})
            await self.auth.load(cur, meta)
        state, updates = ShardState.from_meta(meta, newest, lease.term)
        cur = await self.store.begin()
        try:
            renewal = await lease.extend(cur)
            if renewal is None:
                raise ShardBusy(f"the lease of term {lease.term} was lost before leading")
            for name, value in updates.items():
                await cur.execute("upsert_meta", {"name": name, "value": value})
            await self.index.prepare_lead(cur, state.clock)
            await self.store.commit()
        except BaseException:
            await self.store.rollback()
            raise
        lease.confirm(renewal)
        self.state.replace(state)  # in place: servers hold bound methods of self.state
        self.leases.load(lease_rows)
        self.quota.member_id = self.state.member_id
        self.quota.apply(meta)  # client alarms persist across restarts and leader changes
        self._refresh_size()
        self.lease = lease
        self.writer = Writer(self.store, self.state, self.leases, self._publish, self.quota, lease,
                             on_fenced=self._fenced, max_batch=MAX_BATCH if self.group_commit else 1)
        self.writer.indexer = self.index.indexer
        self.writer.start()
        self.index.lead(self)
        self._tasks.append(asyncio.create_task(self._expire_leases(), name="lease-expiry"))
        if self.state.compact_rev > 0:
            self._start_compaction(self.state.compact_rev)
        compacted = self.state.compact_rev
        log.info("shard leader: revision %d, %s, %d leases, term %d", self.state.committed,
                 f"compacted at {compacted}" if compacted >= 0 else "never compacted",
                 len(self.leases.live), self.state.term)

    async def step_down(self, why: str) -> None:
        """Stop writing: queued and later writes fail with NOT_LEADER (nothing applied)."""
        writer, self.writer = self.writer, None
        if self.lease is not None:
            self.lease.drop()
        self.index.stop()
        tasks, self._tasks = [*self._tasks, self._compaction], []
        self._compaction = None
        for task in tasks:
            if task:
                task.cancel()
        if writer is not None:
            log.warning("shard no longer the writer (term %d): %s", self.state.term, why)
            await writer.abort(errors.NOT_LEADER)

    def _fenced(self, why: str) -> None:
        asyncio.get_running_loop().create_task(self.step_down(why))

    async def _keep_leading(self, campaign: Campaign) -> None:
        """Embedded mode: lead again once a lost lease can be taken again."""
        while True:
            await asyncio.sleep(self.lease_s * RENEW_EVERY)
            if self.is_leader:
                continue
            try:
                row = await campaign.read()
                if campaign.vacancy(row) is None:
                    continue
                lease = await campaign.take(row)
                if lease is not None:
                    await self.lead(lease)
            except Exception as exc:
                log.warning("cannot take the shard's lease again yet: %s", exc)

    async def close(self) -> None:
        self.index.stop()
        for task in [*self._tasks, self._compaction, self._keeper]:
            if task:
                task.cancel()
        if self.writer:
            await self.writer.stop()
            if self.lease is not None and self.lease.valid():
                await self.lease.resign(self.store)
        if self.lease is not None:
            self.lease.drop()
        await self.store.close()

    @property
    def feed_committed(self) -> int:
        """Listeners hear of every commit as it happens: the feed is at the closed revision."""
        return self.state.committed

    async def refresh_compaction(self) -> int:
        """This process runs the compactions: state.compact_rev is always current."""
        return self.state.compact_rev

    def _writer(self) -> Writer:
        if self.writer is None:
            raise errors.NOT_LEADER
        return self.writer

    async def _acting(self) -> Writer:
        """The writer, for an answer from memory: only while the lease is valid, so a leader
        whose lease ran out first renews it (an empty write: NOT_LEADER when another replica
        took over meanwhile)."""
        writer = self._writer()
        if not self.lease.valid():
            await writer.submit(_nothing, None)
        return writer

    def _publish(self, published, committed: int) -> None:
        self._refresh_size()
        for listener in self.listeners:
            listener(published, committed)

    def _refresh_size(self) -> None:
        self.quota.measure(self.store.size()[0], *self.store.disk_space())

    # ---- KV ----

    async def range(self, req: pb.RangeRequest, sync_rev: int = 0) -> pb.RangeResponse:
        """sync_rev > 0 (cross-shard reads, DESIGN §3.5): first make the shard's closed revision
        at least sync_rev, so a read at that revision is a consistent snapshot."""
        checks.check_range(req)
        if sync_rev > self.state.committed:
            await self.sync(sync_rev)
        writer, single = self.writer, self.store.single_statement_reads
        if (single is not None and writer is not None and not writer.committing
                and one_statement(req)):
            # the writer's memory is the database's state while no COMMIT is in flight, so the
            # head needs no statement, and one statement is a snapshot of its own
            head = self.state.committed
            resp = await execute_range(single, req, head, self.state.compact_rev)
            self.state.fill(resp.header, head)
            return resp
        async with self.store.snapshot() as cur:
            # the snapshot is established: everything committed before now is in it
            head = await self.read_head(cur)
            resp = await execute_range(cur, req, head, self.state.compact_rev)
        self.state.fill(resp.header, head)
        return resp

    async def read_head(self, cur) -> int:
        """The revision a read on snapshot `cur` reports: exactly what the snapshot holds.

        SQLite reads never interleave with a commit (they run synchronously on the loop), so the
        closed revision is the snapshot's, or more while a COMMIT is in flight. On a server
        database a commit can land between the snapshot and this call, so the head is read from
        the snapshot itself (the clock row every batch writes)."""
        writer = self.writer
        if writer is None:  # a replica: learn the leader's progress from the database
            meta = dict(await cur.rows("meta_all", {}))
            newest = await cur.scalar("max_rev", {}) or 0
            self.state.observe(newest, meta)
            self.quota.apply(meta)
            return max(newest, meta.get(schema.META_CLOCK, 0))
        if self.store.reads_interleave_commits:
            clock = await cur.scalar("meta_value", {"name": schema.META_CLOCK})
            return clock if clock is not None else await cur.scalar("max_rev", {}) or 0
        if writer.committing:
            return max(self.state.committed, await cur.scalar("max_rev", {}) or 0)
        return self.state.committed

    async def query(self, req, sync_rev: int = 0):
        """The Query API on this shard (kubefabric.query): requirements over a range at a revision."""
        return await run_query(self, req, sync_rev)

    async def indexes(self) -> list:
        """The shard's label and field indexes and their readiness (kubefabric.index)."""
        async with self.store.snapshot() as cur:
            return await self.index.statuses(cur)

    async def put(self, req: pb.PutRequest, sync_rev: int = 0) -> pb.PutResponse:
        checks.check_put(req)
        checks.check_key_sizes((req.key,), self.store.max_key_bytes, self.store.dialect_name)
        self.quota.check_corrupt()
        self.quota.check(req.ByteSize())
        resp = await self._writer().submit(Applier.put, req, sync_rev)
        self.state.fill(resp.header, resp.header.revision)
        return resp

    async def delete_range(self, req: pb.DeleteRangeRequest, sync_rev: int = 0) -> pb.DeleteRangeResponse:
        checks.check_delete(req)
        self.quota.check_corrupt()
        resp = await self._writer().submit(Applier.delete_range, req, sync_rev)
        self.state.fill(resp.header, resp.header.revision)
        return resp

    async def txn(self, req: pb.TxnRequest, sync_rev: int = 0) -> pb.TxnResponse:
        checks.check_txn(req, self.max_txn_ops)
        checks.check_key_sizes(checks.put_keys(req), self.store.max_key_bytes, self.store.dialect_name)
        if not checks.read_only(req):  # etcd serves read-only txns outside its applier
            self.quota.check_corrupt()
        self.quota.check(txn_cost(req))
        resp = await self._writer().submit(Applier.txn, req, sync_rev)
        self.state.fill(resp.header, resp.header.revision)
        return resp

    async def sync(self, sync_rev: int) -> int:
        """Move the clock to at least sync_rev, in order with the writes (DESIGN §3.2)."""
        if sync_rev <= self.state.committed:
            return self.state.committed
        return await self._writer().submit(_sync, sync_rev)

    # ---- compaction ----

    async def compact(self, revision: int, physical: bool = False, sync_rev: int = 0) -> pb.CompactionResponse:
        self.quota.check_corrupt()
        rev, previous = await self._writer().submit(_mark_compacted, revision, sync_rev)
        self._start_compaction(rev, previous)
        if physical:
            await asyncio.shield(self._compaction)
        resp = pb.CompactionResponse()
        self.state.fill(resp.header)
        return resp

    def _start_compaction(self, rev: int, hash_from: int | None = None) -> None:
        """hash_from: the previous compact revision, when this compaction's hash is to be kept
        (not after a restart: etcd keeps none for a compaction resumed after an interruption)."""
        previous = self._compaction
        self._compaction = asyncio.create_task(self._compact_rows(rev, previous, hash_from),
                                               name="compaction")

    async def _compact_rows(self, rev: int, previous: asyncio.Task | None,
                            hash_from: int | None = None) -> None:
        """Delete the rows compaction at `rev` made unreachable, in short writer batches; first
        hash what it is about to compact, as etcd does."""
        if previous and not previous.done():
            await asyncio.shield(previous)
        if hash_from is not None:
            async with self.store.snapshot() as cur:
                value = await hashkv.compute(cur, rev, hash_from, keep_tombstone_at=rev)
            self.hashes = [*self.hashes, hashkv.KVHash(value, hash_from, rev)][-hashkv.STORED_HASHES:]
        lo, deleted = 0, 0
        while lo < rev:
            hi = min(lo + COMPACT_WINDOW, rev)
            n = await self._writer().submit(_compact_step, (lo, hi, rev, self.index.active))
            deleted += n
            if n < COMPACT_BATCH:
                lo = hi
        log.info("compaction at revision %d removed %d rows", rev, deleted)

    # ---- leases ----

    async def lease_grant(self, lease_id: int, ttl: int, sync_rev: int = 0) -> tuple[int, int]:
        ttl = self.leases.effective_ttl(ttl)
        self.quota.check_corrupt()
        self.quota.check(16)
        return await self._writer().submit(_grant, (lease_id, ttl), sync_rev)

    async def lease_revoke(self, lease_id: int, sync_rev: int = 0) -> int:
        """Revoke a lease and delete its keys; returns the header revision."""
        self.quota.check_corrupt()
        return await self._writer().submit(_revoke, lease_id, sync_rev)

    async def lease_renew(self, lease_id: int) -> int:
        """Restart the lease's TTL; returns it, or 0 when the lease does not exist."""
        await self._acting()
        return self.leases.renew(lease_id)

    async def lease_time_to_live(self, lease_id: int, keys: bool) -> tuple[int, int, list[bytes]]:
        """(remaining seconds, granted TTL, keys); remaining is -1 when the lease does not exist."""
        await self._acting()
        lease = self.leases.get(lease_id)
        if lease is None:
            return -1, 0, []
        attached = await self.lease_keys(lease_id) if keys else []
        return lease.remaining(time.monotonic()), lease.ttl, attached

    async def lease_list(self) -> list[int]:
        """Live leases, soonest expiry first (etcd's order)."""
        await self._acting()
        return [l.id for l in sorted(self.leases.live.values(), key=lambda l: l.deadline)]

    async def lease_keys(self, lease_id: int) -> list[bytes]:
        async with self.store.snapshot() as cur:
            return [r[0] for r in await cur.rows("lease_rows", {"lease": lease_id})]

    async def _expire_leases(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            for lease_id in self.leases.expired():
                if lease_id not in self._revoking:
                    self._revoking.add(lease_id)
                    asyncio.create_task(self._expire(lease_id))

    async def _expire(self, lease_id: int) -> None:
        try:
            await self.lease_revoke(lease_id)
            log.info("lease %x expired", lease_id)
        except errors.EtcdError:
            pass
        finally:
            self._revoking.discard(lease_id)

    # ---- history and status ----

    async def history(self, rng: KeyRange, lo: int, hi: int) -> list[Event]:
        """Events of revisions lo..hi in `rng`, oldest first, each with its prev_kv."""
        return await read_history(self.store, self.state.compact_rev, rng, lo, hi)

    # ---- bulk import (kubefabric migrate; kubefabric.shard.importer) ----

    async def check_empty(self) -> None:
        """importer.NotEmpty unless the shard never held a change."""
        async with self.store.snapshot() as cur:
            await importer.check_empty(cur)

    async def import_batch(self, batch: "importer.Batch", tracker: "importer.Tracker") -> None:
        """Changes of an imported history, in revision order, with their own revisions."""
        await self._writer().submit(importer.apply_batch, (batch, tracker))

    async def hash_kv(self, revision: int, crc: int | None = None,
                      sync_rev: int = 0) -> tuple[hashkv.KVHash, int]:
        """etcd's HashKV at `revision` (0: now) and the current revision. crc: continue that
        hash (several shards as one history; no kept compaction hash applies then)."""
        if sync_rev:
            await self.sync(sync_rev)
        async with self.store.snapshot() as cur:
            head = await self.read_head(cur)
            compact = self.state.compact_rev
            if 0 < revision < compact:
                raise errors.COMPACTED
            if revision > head:
                raise errors.FUTURE_REV
            rev = revision or head
            # etcd looks its kept hashes up by the requested revision: never for 0 ("now")
            kept = next((h for h in self.hashes if h.revision == revision), None)
            if kept is not None and crc is None:
                return kept, head
            value = await hashkv.compute(cur, rev, compact, crc=crc)
        return hashkv.KVHash(value, compact, rev), head

    async def auth_apply(self, method: str, request, caller: str | None):
        """An Auth request (etcd's RPC name and request) made by user `caller` (None: no
        identity): (response, auth state, generation) — see kubefabric.shard.authstore."""
        self._writer()
        return await self.auth.apply(self._writer, method, request, caller)

    async def auth_read(self, generation: int = -1):
        """(auth state, generation) as committed; None when `generation` is the current one."""
        self._writer()
        if generation == self.auth.generation:
            return None
        return self.auth.state, self.auth.generation

    def auth_now(self, generation: int):
        """(auth state, generation) when the committed auth store moved past `generation`, else
        None: without waiting, for a guard that checks it on every call (the writer's memory
        is the committed store)."""
        if self.writer is None or generation == self.auth.generation:
            return None
        return self.auth.state, self.auth.generation

    async def defragment(self) -> None:
        """The store's defragmentation. One that holds the database's write lock (SQLite's
        VACUUM) runs with the writer idle, under a lease first extended to DEFRAGMENT_LEASE_S:
        no renewal can happen meanwhile, and replicas must not take the lease (nor stop this
        process, see kubefabric.shard.leadership) while it works."""
        writer = self._writer()
        if not self.store.defragment_blocks_writes:
            await self.store.defragment()
        else:
            async with writer.lock:
                cur = await self.store.begin()
                try:
                    renewal = await self.lease.extend(cur, DEFRAGMENT_LEASE_S)
                    if renewal is None:
                        raise errors.NOT_LEADER
                    await self.store.commit()
                except BaseException:
                    await self.store.rollback()
                    raise
                self.lease.confirm(renewal, DEFRAGMENT_LEASE_S)
                await self.store.defragment()
        self._refresh_size()

    def db_size(self) -> tuple[int, int]:
        return self.store.size()

    async def status(self) -> shard_pb.StatusResponse:
        size, in_use = self.store.size()
        state = self.state
        return shard_pb.StatusResponse(
            committed_rev=state.committed, compact_rev=state.compact_rev, db_size=size,
            db_size_in_use=in_use,
            role="leader" if self.leading else "replica",
            db_size_quota=self.quota.quota_bytes, alarms=self.quota.members(),
            cluster_id=state.cluster_id, member_id=state.member_id, term=state.term)

    async def alarm(self, req: pb.AlarmRequest) -> list[pb.AlarmMember]:
        """etcd's Alarm: activate, deactivate or list; returns the alarms the response lists.
        A change is persisted (meta rows) by the writer before it takes effect."""
        await self._acting()
        listed, changes = self.quota.alarm(req)
        if changes:
            await self._writer().submit(_persist_meta, changes)
            self.quota.apply(changes)
        return listed


# ---- writer handlers: run inside a batch, return the request's result ----

async def _nothing(applier: Applier, arg) -> None:
    """A batch that only renews the lease."""


async def _sync(applier: Applier, sync_rev: int) -> int:
    applier.sync_to(sync_rev)
    return applier.clock


async def _persist_meta(applier: Applier, rows: dict[str, int]) -> None:
    applier.meta_updates.update(rows)


async def _mark_compacted(applier: Applier, revision: int) -> tuple[int, int]:
    """(the new compact revision, the previous one)."""
    if revision <= applier.compact_rev:
        raise errors.COMPACTED
    if revision > applier.clock:
        raise errors.FUTURE_REV
    previous = applier.compact_rev
    applier.compact_rev = revision
    applier.meta_updates[schema.META_COMPACT_REV] = revision
    return revision, previous


async def _compact_step(applier: Applier, window: tuple[int, int, int, bool]) -> int:
    lo, hi, rev, indexed = window
    rows = await applier.cur.rows("compact_candidates",
                                  {"lo": lo, "hi": hi, "compact": rev, "limit": COMPACT_BATCH})
    gone = [{"key": k, "rev": r, "sub": s} for k, r, s in rows]
    await applier.cur.executemany("compact_delete", gone)
    if indexed:  # index rows go with their log rows (kubefabric.index)
        await applier.cur.executemany("index_delete_row", gone)
    return len(rows)


async def _grant(applier: Applier, arg: tuple[int, int]) -> tuple[int, int]:
    lease_id, ttl = arg
    leases = applier.leases
    if lease_id == 0:
        lease_id = leases.new_id()
    elif leases.exists(lease_id):
        raise errors.LEASE_EXIST
    await applier.cur.execute("lease_insert", {"id": lease_id, "ttl": ttl, "expires_at": 0})
    leases.stage_grant(lease_id, ttl)
    return lease_id, ttl


async def _revoke(applier: Applier, lease_id: int) -> int:
    leases = applier.leases
    if not leases.exists(lease_id):
        raise errors.LEASE_NOT_FOUND
    rows = await applier.cur.rows("lease_rows", {"lease": lease_id})
    if rows:
        await applier.delete_rows(rows)
    await applier.cur.execute("lease_delete", {"id": lease_id})
    leases.stage_revoke(lease_id)
    return applier.head
