"""Fuzz operations and the runner that plays a sequence of them as a differential test body.

Operations are frozen dataclasses whose repr is valid Python (only non-default fields), so a
failing sequence printed by hypothesis pastes straight into a regression test:

    def test_x(differential):
        differential(body_of([Put(b'a'), Watch(b'a', start=Back(1))]))

Revisions are relative where that matters: `Back(n)` is "the current revision minus n" when the
operation runs (negative n: the future), so a shrunk sequence keeps its meaning.

Every response is recorded. Watches share one stream; the runner keeps a model of the live keys
(and their leases) and of every event, computed from the side's own requests and responses, only
to know how many events each watcher must have received after each operation: it waits for them
before going on (so a compaction never races a watcher's catch-up, and prev_kv is read in a fixed
state), and at the end records each watcher's flat list: its control responses (created,
compaction) and events in arrival order. The model is checked against etcd: where etcd does not
send what the model expects, the etcd side fails ("model") and the model must be fixed.
Sorted Ranges are recorded with their ties as groups (harness/fuzz/ties.py).
"""
from __future__ import annotations

import dataclasses
import time
from collections import deque
from dataclasses import dataclass

from harness.fuzz.ties import range_plain, txn_plain
from harness.client import Failure
from harness.stream import NoResponse, WatchStream
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.mvccpb import kv_pb2

LEASES = (101, 102, 103)      # granted (TTL 600 s) before every sequence
ALL_LEASES = LEASES + (104,)  # 104 is never granted up front
TTL = 600
PUT, DELETE = kv_pb2.Event.PUT, kv_pb2.Event.DELETE
NOPUT, NODELETE = pb.WatchCreateRequest.NOPUT, pb.WatchCreateRequest.NODELETE


class _Op:
    def __repr__(self):
        args = []
        for i, f in enumerate(dataclasses.fields(self)):
            v = getattr(self, f.name)
            if i == 0:
                args.append(repr(v))
            elif v != f.default:
                args.append(f"{f.name}={v!r}")
        return f"{type(self).__name__}({', '.join(args)})"

    def _repr_pretty_(self, p, cycle):  # hypothesis prints failing examples with this
        p.text(repr(self))


@dataclass(frozen=True, repr=False)
class Back(_Op):
    n: int

    def at(self, current: int) -> int:
        return current - self.n


def resolve(value, current: int) -> int:
    return value.at(current) if isinstance(value, Back) else value


@dataclass(frozen=True, repr=False)
class Put(_Op):
    key: bytes
    value: bytes = b""
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False

    def request(self, current):
        return pb.PutRequest(key=self.key, value=self.value, lease=self.lease, prev_kv=self.prev_kv,
                             ignore_value=self.ignore_value, ignore_lease=self.ignore_lease)


@dataclass(frozen=True, repr=False)
class Delete(_Op):
    key: bytes
    end: bytes = b""
    prev_kv: bool = False

    def request(self, current):
        return pb.DeleteRangeRequest(key=self.key, range_end=self.end, prev_kv=self.prev_kv)


@dataclass(frozen=True, repr=False)
class Get(_Op):
    key: bytes
    end: bytes = b""
    limit: int = 0
    rev: int | Back = 0
    order: int = 0
    target: int = 0
    keys_only: bool = False
    count_only: bool = False
    min_mod: int | Back = 0
    max_mod: int | Back = 0
    min_create: int | Back = 0
    max_create: int | Back = 0

    def request(self, current):
        r = lambda v: resolve(v, current)  # noqa: E731
        return pb.RangeRequest(key=self.key, range_end=self.end, limit=self.limit, revision=r(self.rev),
                               sort_order=self.order, sort_target=self.target,
                               keys_only=self.keys_only, count_only=self.count_only,
                               min_mod_revision=r(self.min_mod), max_mod_revision=r(self.max_mod),
                               min_create_revision=r(self.min_create),
                               max_create_revision=r(self.max_create))


@dataclass(frozen=True, repr=False)
class Cmp(_Op):
    key: bytes
    target: int = pb.Compare.VERSION
    result: int = pb.Compare.EQUAL
    operand: int | bytes | Back = 0
    end: bytes = b""

    def request(self, current):
        field = {pb.Compare.VERSION: "version", pb.Compare.CREATE: "create_revision",
                 pb.Compare.MOD: "mod_revision", pb.Compare.VALUE: "value",
                 pb.Compare.LEASE: "lease"}[self.target]
        operand = self.operand if isinstance(self.operand, bytes) else resolve(self.operand, current)
        return pb.Compare(key=self.key, range_end=self.end, target=self.target, result=self.result,
                          **{field: operand})


@dataclass(frozen=True, repr=False)
class Txn(_Op):
    compares: tuple = ()
    success: tuple = ()
    failure: tuple = ()

    def request(self, current):
        return pb.TxnRequest(compare=[c.request(current) for c in self.compares],
                             success=[_request_op(o, current) for o in self.success],
                             failure=[_request_op(o, current) for o in self.failure])


def _request_op(op, current) -> pb.RequestOp:
    field = {Put: "request_put", Delete: "request_delete_range", Get: "request_range",
             Txn: "request_txn"}[type(op)]
    return pb.RequestOp(**{field: op.request(current)})


@dataclass(frozen=True, repr=False)
class Compact(_Op):
    back: int       # compact at the current revision minus back
    physical: bool = False


@dataclass(frozen=True, repr=False)
class Grant(_Op):
    lease: int


@dataclass(frozen=True, repr=False)
class Revoke(_Op):
    lease: int


@dataclass(frozen=True, repr=False)
class Watch(_Op):
    key: bytes
    end: bytes = b""
    start: int | Back = 0
    prev_kv: bool = False
    noput: bool = False
    nodelete: bool = False


def in_range(k: bytes, key: bytes, end: bytes) -> bool:
    if end == b"":
        return k == key
    if end == b"\0":
        return k >= key
    return key <= k < end


@dataclass
class Watcher:
    op: Watch
    key: bytes
    start: int                # the start revision sent
    first: int | None = None  # first revision it reports; None: no events, ever
    controls_expected: int = 1  # created (+ compaction response for a start below it)
    items: list = dataclasses.field(default_factory=list)
    events: int = 0
    controls: int = 0

    def wants(self, rev: int, key: bytes, kind: int) -> bool:
        return (self.first is not None and rev >= self.first and in_range(key, self.key, self.op.end)
                and not (kind == PUT and self.op.noput) and not (kind == DELETE and self.op.nodelete))


class Runner:
    """Plays a sequence of operations against one server, recording every response."""

    def __init__(self, c, record):
        self.c, self.record = c, record
        self.strict = getattr(record, "strict", c.kind == "etcd")
        # how long to wait for expected watch responses: a model error against etcd, a difference
        # against KubeFabric (recorded, then later waits are short)
        self.wait = 10.0 if self.strict else 2.0
        self.rev, self.compact_rev = 1, -1        # etcd's compactMainRev starts at -1
        self.keys: dict[bytes, int] = {}          # live key -> lease
        self.log: list[tuple[int, bytes, int]] = []
        self.stream: WatchStream | None = None
        self.watchers: list[Watcher] = []
        self.creating: deque[Watcher] = deque()
        self.by_id: dict[int, Watcher] = {}
        self.other: list = []                     # responses for no known watcher
        self.late = False                         # a non-strict side already missed a wait

    def run(self, ops) -> None:
        for lease in LEASES:
            self.record(f"grant {lease}", self.call(self.c.lease.LeaseGrant,
                                                    pb.LeaseGrantRequest(ID=lease, TTL=TTL)))
        try:
            for i, op in enumerate(ops):
                self.record(f"#{i} {op!r}", self.step(op))
                self.sync(f"after #{i}")
            self.finish()
        finally:
            if self.stream is not None:
                self.stream.close()

    def call(self, method, request):
        resp = self.c.call(method, request)
        if not isinstance(resp, Failure):
            self.rev = max(self.rev, resp.header.revision)
        return resp

    def step(self, op):
        kv, now = self.c.kv, self.rev
        if isinstance(op, Put):
            resp = self.call(kv.Put, op.request(now))
            if not isinstance(resp, Failure):
                self._put(op, resp.header.revision)
        elif isinstance(op, Delete):
            resp = self.call(kv.DeleteRange, op.request(now))
            if not isinstance(resp, Failure):
                self._delete(op, resp.header.revision, resp.deleted)
        elif isinstance(op, Get):
            resp = self.call(kv.Range, req := op.request(now))
            if not isinstance(resp, Failure):
                return range_plain(req, resp)  # ties of a sort compared as groups (harness/fuzz/ties.py)
        elif isinstance(op, Txn):
            resp = self.call(kv.Txn, req := op.request(now))
            if not isinstance(resp, Failure):
                self._txn(op, resp, resp.header.revision)
                return txn_plain(req, resp)
        elif isinstance(op, Compact):
            rev = now - op.back
            resp = self.call(kv.Compact, pb.CompactionRequest(revision=rev, physical=op.physical))
            if not isinstance(resp, Failure):
                self.compact_rev = rev
        elif isinstance(op, Grant):
            resp = self.call(self.c.lease.LeaseGrant, pb.LeaseGrantRequest(ID=op.lease, TTL=TTL))
        elif isinstance(op, Revoke):
            resp = self.call(self.c.lease.LeaseRevoke, pb.LeaseRevokeRequest(ID=op.lease))
            if not isinstance(resp, Failure):
                gone = sorted(k for k, lease in self.keys.items() if lease == op.lease)
                self._forget(gone, resp.header.revision)
        elif isinstance(op, Watch):
            resp = self.open_watch(op)
        else:
            raise TypeError(op)
        return resp

    # The model: live keys with their leases, and every event.
    def _put(self, op: Put, rev: int) -> None:
        self.keys[op.key] = self.keys.get(op.key, 0) if op.ignore_lease else op.lease
        self.log.append((rev, op.key, PUT))

    def _delete(self, op: Delete, rev: int, deleted: int | None = None) -> None:
        gone = sorted(k for k in self.keys if in_range(k, op.key, op.end))
        if deleted is not None:
            self.check(len(gone) == deleted, f"{op!r} deleted {deleted} keys, model has {gone}")
        self._forget(gone, rev)

    def _forget(self, keys, rev: int) -> None:
        for k in keys:
            del self.keys[k]
            self.log.append((rev, k, DELETE))

    def _txn(self, op: Txn, resp, rev: int) -> None:
        branch = op.success if resp.succeeded else op.failure
        for sub, r in zip(branch, resp.responses):
            if isinstance(sub, Put):
                self._put(sub, rev)
            elif isinstance(sub, Delete):
                self._delete(sub, rev, r.response_delete_range.deleted)
            elif isinstance(sub, Txn):
                self._txn(sub, r.response_txn, rev)

    def check(self, ok: bool, what: str) -> None:
        if not ok and self.strict:
            raise AssertionError(f"model: {what}")

    # Watches: one stream, watchers in creation order.
    def open_watch(self, op: Watch):
        if self.stream is None:
            self.stream = WatchStream(self.c, timeout=3600)
        now, start = self.rev, resolve(op.start, self.rev)
        w = Watcher(op, op.key or b"\0", start)  # etcd watches "\0" for the empty key
        # etcd: key >= range_end is refused (created and canceled at once); start 0 or in the
        # future is synced from max(now + 1, start); any other start below compactMainRev is
        # cancelled as compacted after `created`; a negative one reads no history.
        if op.end not in (b"", b"\0") and w.key >= op.end:
            pass
        elif start == 0 or start > now:
            w.first = max(now + 1, start)
        elif start >= self.compact_rev:
            w.first = now + 1 if start < 0 else start
        else:
            w.controls_expected = 2
        self.watchers.append(w)
        self.creating.append(w)
        filters = [f for f, on in ((NOPUT, op.noput), (NODELETE, op.nodelete)) if on]
        self.stream.create(op.key, op.end, start_revision=start, prev_kv=op.prev_kv, filters=filters)
        self.sync(f"creating {op!r}")
        if w.first is not None and start != 0 and start <= now and self.expected(w)[0] == 0:
            # etcd moves such a watcher to its synced group on the next pass of a 100 ms loop,
            # which nothing announces: "now" for a negative start is that pass, a compaction
            # before it cancels the watcher, and one pass with a negative and a positive start
            # reads no history for either. Let that pass happen before the next operation.
            time.sleep(0.4)
        return w.items[0][1] if w.items else Failure("NONE", "no created response")

    def expected(self, w: Watcher) -> tuple[int, int]:
        """(events, control responses) the watcher must have received by now."""
        return sum(1 for rev, k, kind in self.log if w.wants(rev, k, kind)), w.controls_expected

    def behind(self) -> list[Watcher]:
        return [w for w in self.watchers
                if any(got < want for got, want in zip((w.events, w.controls), self.expected(w)))]

    def sync(self, when: str) -> None:
        if self.stream is None:
            return
        deadline = time.monotonic() + (0.5 if self.late else self.wait)
        while lagging := self.behind():
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise NoResponse("timeout")
                self.dispatch(self.stream.recv(left))
            except NoResponse:
                detail = "; ".join(f"{w.op!r} has {w.events} events, {w.controls} responses, "
                                   f"expects {self.expected(w)}" for w in lagging)
                self.check(False, f"{when}: {detail}; log {self.log}; items "
                                  f"{[w.items for w in lagging]}")
                self.late = True
                return

    def dispatch(self, r) -> None:
        if isinstance(r, Failure):
            self.other.append(r)
            raise NoResponse(f"watch stream ended: {r}")
        if r.created and self.creating:
            w = self.creating.popleft()
            self.by_id.setdefault(r.watch_id, w)
        else:
            w = self.by_id.get(r.watch_id)
        if w is None:
            self.other.append(r)
            return
        if r.events:
            w.items.extend(("event", e) for e in r.events)
            w.events += len(r.events)
        if not r.events or r.created or r.canceled or r.compact_revision:
            control = pb.WatchResponse()
            control.CopyFrom(r)
            del control.events[:]
            w.items.append(("response", control))
            w.controls += 1

    def finish(self) -> None:
        if self.stream is None:
            return
        self.sync("at the end")
        try:
            for r in self.stream.pending(0.3):
                self.dispatch(r)
        except NoResponse:
            pass
        for i, w in enumerate(self.watchers):
            self.record(f"watch {i} {w.op!r} (start {w.start})", [{kind: v} for kind, v in w.items])
        self.record("watch responses for no watcher", self.other)


def body_of(ops):
    """A differential test body that plays `ops`."""
    def body(c, record):
        Runner(c, record).run(ops)
    return body
