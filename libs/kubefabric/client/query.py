"""kv-router's Query API (proto/kubefabric/query/v1): the objects of a key range that satisfy
label and field requirements, one page at a time at one revision."""
from __future__ import annotations

from dataclasses import dataclass

from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb

from .connection import Connection

LabelRequirement = qpb.LabelRequirement
FieldRequirement = qpb.FieldRequirement


@dataclass(frozen=True)
class QueryPage:
    kvs: list          # mvccpb.KeyValue, in key order
    revision: int      # the revision read (continue the query at it)
    more: bool         # more matches follow from next_key
    next_key: bytes
    indexed: bool      # every shard answered from its index


class Query:
    def __init__(self, conn: Connection):
        self._conn = conn

    async def page(self, key: bytes, range_end: bytes, *, revision: int = 0, limit: int = 0,
                   labels=(), fields=(), keys_only: bool = False) -> QueryPage:
        """One page of matches; raises Compacted when `revision` is compacted."""
        r = await self._conn.call("Query", "Query", qpb.QueryRequest(
            key=key, range_end=range_end, revision=revision, limit=limit, labels=list(labels),
            fields=list(fields), keys_only=keys_only), what=f"Query {key!r}")
        return QueryPage(list(r.kvs), r.header.revision, r.more, r.next_key, r.indexed)
