"""An in-memory model of etcd's MVCC store, written from etcd's behaviour (not the shard's code):
a log of rows (key, rev, sub, kv-or-tombstone), the live state, leases and the compact revision.
Its methods take etcd requests and return etcd responses, or raise etcd's errors; a request that
raises changes nothing. Watch events carry etcd's prev_kv: the key at mod_revision - 1, none for
a creating PUT (checked against etcd 3.4).
"""
from __future__ import annotations

from dataclasses import dataclass

from kubefabric.etcd import errors
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.mvccpb.kv_pb2 import Event, KeyValue

PUT, DELETE = Event.PUT, Event.DELETE
C = pb.Compare


def in_range(key: bytes, start: bytes, end: bytes) -> bool:
    """etcd's (key, range_end): single key, b"\\0" = from key on, else [key, range_end)."""
    if not end:
        return key == start
    if end == b"\x00":
        return key >= start
    return start <= key < end


def prefix_end(prefix: bytes) -> bytes:
    p = prefix.rstrip(b"\xff")
    return p[:-1] + bytes([p[-1] + 1]) if p else b"\x00"


@dataclass(frozen=True)
class KV:
    key: bytes
    create: int
    mod: int
    version: int
    lease: int
    value: bytes

    def pb(self, keys_only: bool = False) -> KeyValue:
        return KeyValue(key=self.key, create_revision=self.create, mod_revision=self.mod,
                        version=self.version, lease=self.lease, value=b"" if keys_only else self.value)


@dataclass(frozen=True)
class Row:
    key: bytes
    rev: int
    sub: int
    kv: KV | None  # None: a tombstone


class Model:
    def __init__(self):
        self.head = 1
        self.compacted = -1
        self.rows: list[Row] = []
        self.live: dict[bytes, KV] = {}
        self.leases: set[int] = set()
        self.events: list[tuple[int, list[Event]]] = []

    def state_at(self, rev: int) -> dict[bytes, KV]:
        state: dict[bytes, KV] = {}
        for r in self.rows:
            if r.rev > rev:
                break
            if r.kv is None:
                state.pop(r.key, None)
            else:
                state[r.key] = r.kv
        return state

    def log_rows(self) -> int:
        """Rows left once compaction at self.compacted has run: every row above it, and per
        key the newest row at or below it unless that is a tombstone."""
        newest: dict[bytes, Row] = {}
        kept = 0
        for r in self.rows:
            if r.rev <= self.compacted:
                newest[r.key] = r
            else:
                kept += 1
        return kept + sum(r.kv is not None for r in newest.values())

    def history(self, lo: int, hi: int) -> list[Event]:
        return [e for rev, evs in self.events if lo <= rev <= hi for e in evs]

    # -- reads --

    def range(self, req: pb.RangeRequest, view: dict | None = None) -> pb.RangeResponse:
        if req.revision > self.head:
            raise errors.FUTURE_REV
        if req.revision <= 0:
            state = self.live if view is None else view
        elif req.revision < self.compacted:
            raise errors.COMPACTED
        else:
            state = self.state_at(req.revision)
        assert req.sort_target == pb.RangeRequest.KEY, "the generators sort by key only"
        items = [state[k] for k in sorted(state) if in_range(k, req.key, req.range_end)]
        resp = pb.RangeResponse(count=len(items))
        resp.header.revision = self.head
        if req.count_only:
            return resp
        items = [kv for kv in items if _passes(req, kv)]
        if req.sort_order == pb.RangeRequest.DESCEND:
            items.reverse()
        if 0 < req.limit < len(items):
            items, resp.more = items[:req.limit], True
        resp.kvs.extend(kv.pb(req.keys_only) for kv in items)
        return resp

    def _compare(self, cmp: pb.Compare) -> bool:
        kvs = [self.live[k] for k in sorted(self.live) if in_range(k, cmp.key, cmp.range_end)]
        if not kvs:
            if cmp.target == C.VALUE:
                return False
            kvs = [KV(cmp.key, 0, 0, 0, 0, b"")]
        for kv in kvs:
            have, given = {C.VERSION: (kv.version, cmp.version), C.CREATE: (kv.create, cmp.create_revision),
                           C.MOD: (kv.mod, cmp.mod_revision), C.VALUE: (kv.value, cmp.value),
                           C.LEASE: (kv.lease, cmp.lease)}[cmp.target]
            if not {C.EQUAL: have == given, C.NOT_EQUAL: have != given, C.GREATER: have > given,
                    C.LESS: have < given}[cmp.result]:
                return False
        return True

    # -- writes: every check first, then _Change, committed only when nothing failed --

    def put(self, req: pb.PutRequest) -> pb.PutResponse:
        change = _Change(self)
        change.check_put(req, lease_first=True)
        resp = change.put(req)
        change.commit()
        return resp

    def delete_range(self, req: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        change = _Change(self)
        resp = change.delete(req)
        change.commit()
        return resp

    def txn(self, req: pb.TxnRequest) -> pb.TxnResponse:
        ok = all(self._compare(c) for c in req.compare)
        ops = req.success if ok else req.failure
        change = _Change(self)
        for op in ops:
            if op.WhichOneof("request") == "request_put":
                change.check_put(op.request_put)
            elif op.WhichOneof("request") == "request_range":
                if op.request_range.revision > self.head:
                    raise errors.FUTURE_REV
                if 0 < op.request_range.revision < self.compacted:
                    raise errors.COMPACTED
        resp = pb.TxnResponse(succeeded=ok)
        for op in ops:
            out = resp.responses.add()
            kind = op.WhichOneof("request")
            if kind == "request_put":
                out.response_put.CopyFrom(change.put(op.request_put))
            elif kind == "request_delete_range":
                out.response_delete_range.CopyFrom(change.delete(op.request_delete_range))
            else:
                out.response_range.CopyFrom(self.range(op.request_range, view=change.view))
        resp.header.revision = change.head
        change.commit()
        return resp

    def lease_grant(self, lease_id: int) -> int:
        if lease_id in self.leases:
            raise errors.LEASE_EXIST
        self.leases.add(lease_id)
        return lease_id

    def lease_revoke(self, lease_id: int) -> int:
        if lease_id not in self.leases:
            raise errors.LEASE_NOT_FOUND
        change = _Change(self)
        for key in sorted(self.live):
            if self.live[key].lease == lease_id:
                change.row(key, None)
        change.commit()
        self.leases.discard(lease_id)
        return self.head

    def compact(self, rev: int) -> pb.CompactionResponse:
        if rev <= self.compacted:
            raise errors.COMPACTED
        if rev > self.head:
            raise errors.FUTURE_REV
        self.compacted = rev
        resp = pb.CompactionResponse()
        resp.header.revision = self.head
        return resp

    def sync(self, rev: int) -> int:
        self.head = max(self.head, rev)
        return self.head


def _passes(req: pb.RangeRequest, kv: KV) -> bool:
    return not ((req.max_mod_revision and kv.mod > req.max_mod_revision)
                or (req.min_mod_revision and kv.mod < req.min_mod_revision)
                or (req.max_create_revision and kv.create > req.max_create_revision)
                or (req.min_create_revision and kv.create < req.min_create_revision))


class _Change:
    """One request's writes: all at revision head + 1, visible to its later ops."""

    def __init__(self, m: Model):
        self.m = m
        self.rev = m.head + 1
        self.view = dict(m.live)
        self.rows: list[Row] = []
        self.events: list[Event] = []

    @property
    def head(self) -> int:
        return self.rev if self.rows else self.m.head

    def check_put(self, req: pb.PutRequest, lease_first: bool = False) -> None:
        """etcd checks a plain Put's lease before its key, a txn's put the other way round."""
        lease_missing = req.lease and req.lease not in self.m.leases
        if lease_first and lease_missing:
            raise errors.LEASE_NOT_FOUND
        if (req.ignore_value or req.ignore_lease) and req.key not in self.m.live:
            raise errors.KEY_NOT_FOUND
        if lease_missing:
            raise errors.LEASE_NOT_FOUND

    def put(self, req: pb.PutRequest) -> pb.PutResponse:
        prev = self.view.get(req.key)
        if prev is None and (req.ignore_value or req.ignore_lease):
            raise errors.KEY_NOT_FOUND  # deleted earlier in the same txn (etcd panics here)
        kv = KV(req.key, prev.create if prev else self.rev, self.rev, prev.version + 1 if prev else 1,
                prev.lease if req.ignore_lease else req.lease, prev.value if req.ignore_value else req.value)
        self.row(req.key, kv)
        resp = pb.PutResponse()
        resp.header.revision = self.rev
        if req.prev_kv and prev:
            resp.prev_kv.CopyFrom(prev.pb())
        return resp

    def delete(self, req: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        prevs = [self.view[k] for k in sorted(self.view) if in_range(k, req.key, req.range_end)]
        for p in prevs:
            self.row(p.key, None)
        resp = pb.DeleteRangeResponse(deleted=len(prevs))
        resp.header.revision = self.head
        if req.prev_kv:
            resp.prev_kvs.extend(p.pb() for p in prevs)
        return resp

    def row(self, key: bytes, kv: KV | None) -> None:
        self.rows.append(Row(key, self.rev, len(self.rows), kv))
        if kv is None:
            self.view.pop(key, None)
            ev = Event(type=DELETE, kv=KeyValue(key=key, mod_revision=self.rev))
        else:
            self.view[key] = kv
            ev = Event(type=PUT, kv=kv.pb())
        before = self.m.live.get(key)  # etcd: prev_kv is the key at mod_revision - 1
        if before is not None and not (kv is not None and kv.create == self.rev):
            ev.prev_kv.CopyFrom(before.pb())
        self.events.append(ev)

    def commit(self) -> None:
        if self.rows:
            m = self.m
            m.head, m.live = self.rev, self.view
            m.rows.extend(self.rows)
            m.events.append((self.rev, self.events))
