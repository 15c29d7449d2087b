"""The one normalisation the fuzz runner adds to harness/normalise.py: the order of
ties in a sorted Range.

etcd sorts a Range by VERSION, CREATE, MOD or VALUE with Go's sort.Sort (pdqsort, not stable
beyond 12 elements), so the order among keys with equal sort values is not something a client can
rely on; the project compares it as groups (test_sort_order_of_ties_is_compared_as_groups). Here a
sorted Range's kvs become their groups of equal sort values, in order, each group sorted by key;
when `more` is set the last group may be cut by the limit, and which of its tied keys made the cut
is just as unspecified, so only its size is kept. With keys_only and a VALUE sort the values are
not in the response: all kvs form one group. Everything else stays compared field by field.
"""
from __future__ import annotations

from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from harness.normalise import to_plain

R = pb.RangeRequest
_SORT_VALUE = {R.VERSION: lambda kv: kv.version, R.CREATE: lambda kv: kv.create_revision,
               R.MOD: lambda kv: kv.mod_revision, R.VALUE: lambda kv: kv.value}


def range_plain(req: pb.RangeRequest, resp: pb.RangeResponse):
    """A RangeResponse as plain data, its kvs as tie groups when req sorts by a non-key target."""
    sort_value = _SORT_VALUE.get(req.sort_target)
    if sort_value is None or not resp.kvs:
        return resp
    groups: list[list] = []
    last = object()
    for kv in resp.kvs:
        if sort_value(kv) != last:
            groups.append([])
            last = sort_value(kv)
        groups[-1].append(kv)
    plain = to_plain(resp)
    plain["kvs"] = [[to_plain(kv) for kv in sorted(g, key=lambda kv: kv.key)] for g in groups]
    if resp.more:
        plain["kvs"][-1] = {"cut tie group of": len(groups[-1])}
    return plain


def txn_plain(req: pb.TxnRequest, resp: pb.TxnResponse):
    """A TxnResponse as plain data, with every Range in it (nested Txns too) as range_plain."""
    branch = req.success if resp.succeeded else req.failure
    plain = None
    for i, (op, r) in enumerate(zip(branch, resp.responses)):
        if op.HasField("request_range"):
            sub, field = range_plain(op.request_range, r.response_range), "response_range"
        elif op.HasField("request_txn"):
            sub, field = txn_plain(op.request_txn, r.response_txn), "response_txn"
        else:
            continue
        if not isinstance(sub, dict):
            continue
        plain = plain if plain is not None else to_plain(resp)
        plain["responses"][i][field] = sub
    return plain if plain is not None else resp
