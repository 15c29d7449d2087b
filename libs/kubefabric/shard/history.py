"""A shard's log read as etcd events, and those events as the Shard API carries them.

Invariants: events come oldest first, the events of one txn together (they share its revision);
a page of the log never splits a txn; each event has its prev_kv unless that revision is
compacted (as in etcd).
"""
from __future__ import annotations

import functools
import itertools

from kubefabric.etcd.keyrange import KeyRange
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb
from kubefabric.proto.mvccpb.kv_pb2 import Event, KeyValue
from kubefabric.store.contract import Store
from kubefabric.store.statements import shape_of

HISTORY_PAGE = 10_000  # log rows read per snapshot


async def read_history(store: Store, compact_rev: int, rng: KeyRange, lo: int, hi: int) -> list[Event]:
    """Events of revisions lo..hi in `rng`, oldest first, each with its prev_kv."""
    out: list[Event] = []
    if rng.empty:
        return out
    shape = shape_of(rng.end)
    _event = functools.partial(_history_event, compact_rev)
    while lo <= hi:
        values = {"start": rng.start, "end": rng.end, "lo": lo, "hi": hi, "limit": HISTORY_PAGE}
        async with store.snapshot() as cur:
            rows = await cur.rows("history", values, shape, limited=True)
            if len(rows) == HISTORY_PAGE and rows[0][0] == rows[-1][0]:
                # one revision fills the page: read that revision whole
                values["hi"] = rows[0][0]
                rows = await cur.rows("history", values, shape)
        if len(rows) < HISTORY_PAGE or rows[0][0] == rows[-1][0]:
            out.extend(_event(r) for r in rows)
            if len(rows) < HISTORY_PAGE:
                return out
            lo = rows[-1][0] + 1
            continue
        last = rows[-1][0]  # may be incomplete: read it again with the next page
        out.extend(_event(r) for r in rows if r[0] != last)
        lo = last
    return out


def _history_event(compact_rev: int, r) -> Event:
    """An event from a history row. Like etcd, prev_kv is the key at revision rev - 1 and is
    left out when that revision is compacted (even before compaction removed the row)."""
    rev, key, create_rev, prev_rev, version, lease, deleted, value = r[:8]
    if deleted:
        ev = Event(type=Event.DELETE, kv=KeyValue(key=key, mod_revision=rev))
    else:
        ev = Event(type=Event.PUT, kv=KeyValue(key=key, create_revision=create_rev, mod_revision=rev,
                                                 version=version, lease=lease, value=value))
    created = not deleted and create_rev == rev  # a creation has no prev_kv (etcd)
    if prev_rev and r[9] is not None and rev - 1 >= compact_rev and not created:
        ev.prev_kv.CopyFrom(KeyValue(key=key, create_revision=r[8], mod_revision=prev_rev,
                                     version=r[9], lease=r[10], value=r[11]))
    return ev


def commits_of(events: list[Event]) -> list[spb.HistoryResponse]:
    """Events (revision order) grouped into one message per txn revision."""
    return [spb.HistoryResponse(rev=rev, events=list(group))
            for rev, group in itertools.groupby(events, key=lambda e: e.kv.mod_revision)]
