"""etcd's request checks: what etcd refuses before looking at any state, in etcd's order, with
etcd's errors. The shard runs them before a request reaches the writer (a bad request never
costs the writer time); kv-router runs them before routing (etcd's request errors come before
any routing refusal)."""
from __future__ import annotations

from typing import NamedTuple

from kubefabric.etcd import errors
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

_SORT_ORDERS = set(pb.RangeRequest.SortOrder.values())
_SORT_TARGETS = set(pb.RangeRequest.SortTarget.values())


def check_range(req: pb.RangeRequest) -> None:
    if not req.key:
        raise errors.EMPTY_KEY
    if req.sort_order not in _SORT_ORDERS or req.sort_target not in _SORT_TARGETS:
        raise errors.INVALID_SORT_OPTION


def check_put(req: pb.PutRequest) -> None:
    if not req.key:
        raise errors.EMPTY_KEY
    if req.ignore_value and req.value:
        raise errors.VALUE_PROVIDED
    if req.ignore_lease and req.lease:
        raise errors.LEASE_PROVIDED


def check_key_sizes(puts, limit: int | None, database: str) -> None:
    """Keys longer than the database's index can hold are refused before the writer sees them."""
    if limit is None:
        return
    for key in puts:
        if len(key) > limit:
            raise errors.key_too_large(limit, database)


def put_keys(req: pb.TxnRequest):
    """Every key a txn may put, in both branches and nested txns."""
    for op in (*req.success, *req.failure):
        kind = op.WhichOneof("request")
        if kind == "request_put":
            yield op.request_put.key
        elif kind == "request_txn":
            yield from put_keys(op.request_txn)


def check_delete(req: pb.DeleteRangeRequest) -> None:
    if not req.key:
        raise errors.EMPTY_KEY


def check_txn(req: pb.TxnRequest, max_ops: int) -> None:
    """etcd's txn checks: op counts and each op (nested txns get the budget left over), then
    duplicate keys across the whole tree."""
    _check_ops(req, max_ops)
    _intervals(req.success)
    _intervals(req.failure)


def _check_ops(req: pb.TxnRequest, max_ops: int) -> None:
    count = max(len(req.compare), len(req.success), len(req.failure))
    if count > max_ops:
        raise errors.TOO_MANY_OPS
    for cmp in req.compare:
        if not cmp.key:
            raise errors.EMPTY_KEY
    for op in (*req.success, *req.failure):
        kind = op.WhichOneof("request")
        if kind == "request_range":
            check_range(op.request_range)
        elif kind == "request_put":
            check_put(op.request_put)
        elif kind == "request_delete_range":
            check_delete(op.request_delete_range)
        elif kind == "request_txn":
            _check_ops(op.request_txn, max_ops - count)
        else:
            raise errors.KEY_NOT_FOUND  # an empty RequestOp


class _Span(NamedTuple):
    """A delete's keys as etcd's duplicate check sees them: [key, range_end) taken literally
    (so range_end "\0" is an empty span here), or the single key when range_end is empty."""
    key: bytes
    end: bytes

    def contains(self, k: bytes) -> bool:
        return k == self.key if not self.end else self.key <= k < self.end


def _intervals(ops) -> tuple[set[bytes], list[_Span]]:
    """Puts and delete spans of one op list (children included). A put may not repeat a put or
    fall inside a delete span of the same list or of an enclosing one; the two branches of a
    nested txn exclude each other, so they may share put keys."""
    dels = [_Span(op.request_delete_range.key, op.request_delete_range.range_end)
            for op in ops if op.WhichOneof("request") == "request_delete_range"]
    puts: set[bytes] = set()

    def deleted(key: bytes) -> bool:
        return any(d.contains(key) for d in dels)

    for op in ops:
        if op.WhichOneof("request") != "request_txn":
            continue
        then_puts, then_dels = _intervals(op.request_txn.success)
        else_puts, else_dels = _intervals(op.request_txn.failure)
        for key in then_puts:
            if key in puts or deleted(key):
                raise errors.DUPLICATE_KEY
            puts.add(key)
        for key in else_puts:
            if (key in puts and key not in then_puts) or deleted(key):
                raise errors.DUPLICATE_KEY
            puts.add(key)
        dels += then_dels + else_dels
    for op in ops:
        if op.WhichOneof("request") != "request_put":
            continue
        key = op.request_put.key
        if key in puts or deleted(key):
            raise errors.DUPLICATE_KEY
        puts.add(key)
    return puts, dels


def read_only(req: pb.TxnRequest) -> bool:
    """etcd's IsTxnReadonly: no put or delete on either branch, nested txns included."""
    for op in (*req.success, *req.failure):
        kind = op.WhichOneof("request")
        if kind in ("request_put", "request_delete_range"):
            return False
        if kind == "request_txn" and not read_only(op.request_txn):
            return False
    return True
