"""Applies one write request (Put, DeleteRange or Txn) inside the writer's open database
transaction, the way etcd's apply layer does.

Invariants:
- A request that changes anything writes all its rows at one revision, `rev` (= clock + 1);
  a request that changes nothing takes no revision.
- A Txn's compare results, including those of nested txns, are decided on the state before the
  txn (etcd's "txn path"), then every op on that path is checked (missing keys for ignore_*,
  unknown leases, revisions of ranges) before the first write: a failing check leaves no row.
- Ops inside a txn see the txn's earlier writes (they run on the same database transaction).
"""
from __future__ import annotations

from kubefabric.etcd import compare, errors
from kubefabric.etcd.keyrange import KeyRange
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.mvccpb.kv_pb2 import Event, KeyValue
from kubefabric.store import schema
from kubefabric.store.statements import shape_of

from .reads import execute_range, range_values, to_kv
from .state import FLOOR_STEP

PUT, DELETE = Event.PUT, Event.DELETE


class Applier:
    """Applies requests of one writer batch. `clock` is the last revision taken so far."""

    def __init__(self, cur, clock: int, compact_rev: int, leases, floor: int = 0):
        self.cur = cur
        self.clock = clock
        self.floor = floor  # the persisted clock floor (see state.py)
        self.compact_rev = compact_rev
        self.leases = leases
        self.rev = 0
        self.events: list[Event] = []
        self.wrote = False
        self.meta_updates: dict[str, int] = {}  # written to kf_meta with this batch

    def sync_to(self, sync_rev: int) -> None:
        """clock = max(clock, sync_rev) (DESIGN §3.2); a clock above the persisted floor moves
        the floor ahead in steps, written with this batch."""
        if sync_rev > self.clock:
            self.clock = sync_rev
            floor = self.meta_updates.get(schema.META_CLOCK_FLOOR, self.floor)
            if sync_rev > floor:
                self.meta_updates[schema.META_CLOCK_FLOOR] = sync_rev + FLOOR_STEP

    # ---- one request ----

    def begin(self) -> None:
        self.rev = self.clock + 1
        self.events = []
        self.wrote = False  # a row of this request was written (see writer.WITHOUT_SAVEPOINT)
        self.before: dict[bytes, tuple | None] = {}  # key -> its row before this request

    def end(self) -> tuple[int, list[Event]]:
        """(header revision, events) of the request just applied."""
        events = self.events
        if events:
            self.clock = self.rev
        return self.clock, events

    def discard(self) -> None:
        """Forget the events of a request that was rolled back. (Handlers change meta_updates
        and staged leases only after their last write, so those need no undo.)"""
        self.events = []
        self.before = {}

    def _before(self, key: bytes, current):
        """The key's row before this request: an event's prev_kv is the key at rev - 1 (etcd),
        not an earlier write of the same txn."""
        return self.before.setdefault(key, current)

    @property
    def head(self) -> int:
        return self.rev if self.events else self.clock

    # ---- reads of the current state ----

    async def latest(self, key: bytes):
        rows = await self.cur.rows("latest_rows", {"start": key}, "single")
        return rows[0] if rows else None

    async def latest_range(self, rng: KeyRange) -> list:
        if rng.empty:
            return []
        return await self.cur.rows("latest_rows", range_values(rng), shape_of(rng.end))

    # ---- Put ----

    async def check_put_state(self, req: pb.PutRequest, lease_first: bool = False) -> None:
        """etcd checks a Put's lease before its key, a Txn's puts the other way round."""
        if lease_first and req.lease and not self.leases.exists(req.lease):
            raise errors.LEASE_NOT_FOUND
        if (req.ignore_value or req.ignore_lease) and await self.latest(req.key) is None:
            raise errors.KEY_NOT_FOUND
        if req.lease and not self.leases.exists(req.lease):
            raise errors.LEASE_NOT_FOUND

    async def put(self, req: pb.PutRequest, checked: bool = False) -> pb.PutResponse:
        if not checked:
            await self.check_put_state(req, lease_first=True)
        prev = await self.latest(req.key)
        if prev is None and (req.ignore_value or req.ignore_lease):
            raise errors.KEY_NOT_FOUND  # deleted earlier in the same txn
        rev = self.rev
        value = prev[5] if req.ignore_value else req.value
        lease = prev[4] if req.ignore_lease else req.lease
        if prev is None:
            create_rev, version = rev, 1
        else:
            create_rev, version = prev[1], prev[3] + 1
        before = self._before(req.key, prev)
        row = {"key": req.key, "rev": rev, "sub": len(self.events), "create_rev": create_rev,
               "prev_rev": before[2] if before else 0,
               "version": version, "lease": lease, "deleted": 0, "value": value}
        self.wrote = True
        await self.cur.execute("insert_log", row)
        row["mod_rev"] = rev
        await self.cur.execute("upsert_kv", row)
        kv = KeyValue(key=req.key, create_revision=create_rev, mod_revision=rev, version=version,
                      lease=lease, value=value)
        # a creation has no prev_kv, even when the txn deleted the key first (etcd)
        created = create_rev == rev
        self.events.append(Event(type=PUT, kv=kv,
                                 prev_kv=to_kv(before) if before and not created else None))
        resp = pb.PutResponse()
        resp.header.revision = rev
        if req.prev_kv and prev is not None:
            resp.prev_kv.CopyFrom(to_kv(prev))
        return resp

    # ---- DeleteRange ----

    async def delete_rows(self, rows: list) -> None:
        """Delete the given kv rows at this request's revision."""
        rev = self.rev
        first = len(self.events)
        befores = [self._before(r[0], r) for r in rows]
        self.wrote = True
        await self.cur.executemany("insert_log", [
            {"key": r[0], "rev": rev, "sub": first + i, "create_rev": 0,
             "prev_rev": b[2] if b else 0, "version": 0, "lease": 0, "deleted": 1, "value": b""}
            for i, (r, b) in enumerate(zip(rows, befores))])
        await self.cur.executemany("delete_kv", [{"key": r[0]} for r in rows])
        for r, b in zip(rows, befores):
            self.events.append(Event(type=DELETE, kv=KeyValue(key=r[0], mod_revision=rev),
                                     prev_kv=to_kv(b) if b else None))

    async def delete_range(self, req: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        rows = await self.latest_range(KeyRange.of(req.key, req.range_end))
        if rows:
            await self.delete_rows(rows)
        resp = pb.DeleteRangeResponse(deleted=len(rows))
        resp.header.revision = self.head
        if req.prev_kv:
            resp.prev_kvs.extend(to_kv(r) for r in rows)
        return resp

    # ---- Range inside a txn ----

    async def range(self, req: pb.RangeRequest) -> pb.RangeResponse:
        return await execute_range(self.cur, req, self.head, self.compact_rev)

    # ---- Txn ----

    async def txn(self, req: pb.TxnRequest) -> pb.TxnResponse:
        path = await compare.decide_path(req, self._compare)
        await self._check_path(req, iter(path))
        resp = await self._run(req, iter(path))
        resp.header.revision = self.head
        return resp

    async def _check_path(self, req: pb.TxnRequest, path) -> None:
        for op in (req.success if next(path) else req.failure):
            kind = op.WhichOneof("request")
            if kind == "request_put":
                await self.check_put_state(op.request_put)
            elif kind == "request_range":
                compare.check_range_revision(op.request_range, self.clock, self.compact_rev)
            elif kind == "request_txn":
                await self._check_path(op.request_txn, path)

    async def _run(self, req: pb.TxnRequest, path) -> pb.TxnResponse:
        ok = next(path)
        resp = pb.TxnResponse(succeeded=ok)
        resp.header.SetInParent()
        for op in (req.success if ok else req.failure):
            kind = op.WhichOneof("request")
            out = resp.responses.add()
            if kind == "request_range":
                out.response_range.CopyFrom(await self.range(op.request_range))
            elif kind == "request_put":
                out.response_put.CopyFrom(await self.put(op.request_put, checked=True))
            elif kind == "request_delete_range":
                out.response_delete_range.CopyFrom(await self.delete_range(op.request_delete_range))
            elif kind == "request_txn":
                out.response_txn.CopyFrom(await self._run(op.request_txn, path))
        return resp

    async def _compare(self, cmp: pb.Compare) -> bool:
        return compare.holds(cmp, await self.latest_range(KeyRange.of(cmp.key, cmp.range_end)))
