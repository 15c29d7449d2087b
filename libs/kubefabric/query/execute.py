"""Shard.query: one shard answers a QueryRequest on one snapshot, from its index when a ready
index covers the range and keeps what the requirements read, else by a scan (logged).

Invariants: the header revision is the revision the query read (the request's, or the
snapshot's newest when it asked for 0), so a caller continues a paged query at exactly that
revision; `more` is set when a match beyond `limit` exists, and `next_key` is then the key
right after the last one returned. Both paths return the same rows (tests/index).
"""
from __future__ import annotations

import logging
import time

from prometheus_client import Counter

from kubefabric.etcd.keyrange import KeyRange
from kubefabric.index import plan
from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb
from kubefabric.shard.reads import add_kvs, resolve_rev
from kubefabric.topology.model import show

from .requirements import parse
from .scan import scan

log = logging.getLogger("kubefabric.query")

SCAN_LOG_EVERY_S = 60.0  # a fallback reason is logged at most this often

queries_total = Counter("kubefabric_queries", "Query API calls a shard answered, by how: "
                        "from its index or by a scan of the range.", ("path",))


class _Throttle:
    def __init__(self):
        self.last: dict[str, float] = {}

    def due(self, what: str) -> bool:
        now = time.monotonic()
        if now - self.last.get(what, -SCAN_LOG_EVERY_S) < SCAN_LOG_EVERY_S:
            return False
        if len(self.last) > 1000:
            self.last.clear()
        self.last[what] = now
        return True


_THROTTLE = _Throttle()


async def run_query(shard, req: qpb.QueryRequest, sync_rev: int = 0) -> qpb.QueryResponse:
    reqs = parse(req)
    rng = KeyRange.of(req.key, req.range_end)
    if sync_rev > shard.state.committed:
        await shard.sync(sync_rev)
    async with shard.store.snapshot() as cur:
        head = await shard.read_head(cur)
        rev = resolve_rev(req.revision, head, shard.state.compact_rev)
        if rng.empty:
            return response(shard.state, [], rev, req, indexed=True)
        why = await plan.why_not(cur, shard.index.rules, rng, reqs)
        if why is None:
            shape, values = plan.statement(rng, reqs, rev, head, req.limit)
            rows = await cur.rows("index_query", values, shape, limited=req.limit > 0)
        else:
            rows = await scan(cur, rng, rev, head, reqs, req.limit)
    queries_total.labels("index" if why is None else "scan").inc()
    if why is not None and _THROTTLE.due(why):
        end = "+inf" if rng.end == b"" else show(rng.end) if rng.end is not None else None
        where = f"[{show(rng.start)}, {end})" if end else show(rng.start)
        log.info("shard %s: query on %s read the range and filtered it: %s (logged at most "
                 "once a minute per reason)", shard.index.shard_name, where, why)
    return response(shard.state, rows, rev, req, indexed=why is None)


def response(state, rows: list, rev: int, req: qpb.QueryRequest, indexed: bool) -> qpb.QueryResponse:
    """rows: at most limit + 1 matches in key order."""
    resp = qpb.QueryResponse(indexed=indexed)
    state.fill(resp.header, rev)
    if 0 < req.limit < len(rows):
        del rows[req.limit:]
        resp.more = True
        resp.next_key = rows[-1][0] + b"\x00"
    add_kvs(resp.kvs, rows, req.keys_only)
    return resp
