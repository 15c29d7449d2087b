"""etcd's `key` bucket rebuilt from any shard surface (one shard or a topology's, read at one
revision): what Maintenance.Snapshot writes and what HashKV of several shards hashes.

At or below the compact revision C the bucket holds each key's newest change if it is not a
deletion (what etcd's compaction keeps): a range at C. Above it, every change up to R: the
history C+1..R, read in windows. Sub revisions are each change's position among the changes
of its revision (a txn's order; on several shards, one shard's after the other's, as DESIGN §3.6
reads them as one txn); at or below C, where a range does not tell a txn's order, key order.
"""
from __future__ import annotations

from typing import AsyncIterator, NamedTuple

import google_crc32c

from kubefabric.etcd.keyrange import ALL, EVERY_KEY
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.mvccpb.kv_pb2 import Event, KeyValue
from kubefabric.shard.hashkv import BUCKET, rev_bytes

RANGE_PAGE = 1_000      # keys per range read at the compact revision
HISTORY_WINDOW = 250    # revisions per history read: a window is held in memory (with prev_kvs)


class Row(NamedTuple):
    main: int
    sub: int
    tombstone: bool
    kv: KeyValue  # a deletion: the key alone (what etcd stores)

    def key_bytes(self) -> bytes:
        return rev_bytes(self.main, self.sub, self.tombstone)


async def _kept(shard, compact: int) -> list[KeyValue]:
    """Each key's newest live change at or below `compact`, in revision order."""
    out: list[KeyValue] = []
    key = ALL
    while True:
        resp = await shard.range(pb.RangeRequest(key=key, range_end=ALL, revision=compact,
                                                 limit=RANGE_PAGE))
        out.extend(resp.kvs)
        if not resp.more or not resp.kvs:
            return sorted(out, key=lambda kv: kv.mod_revision)
        key = resp.kvs[-1].key + b"\0"


async def _changed(shard, lo: int, hi: int) -> set[bytes]:
    """The keys changed in revisions lo..hi."""
    out: set[bytes] = set()
    while lo <= hi:
        top = min(lo + HISTORY_WINDOW - 1, hi)
        out.update(ev.kv.key for ev in await shard.history(EVERY_KEY, lo, top))
        lo = top + 1
    return out


async def iter_rows(shard, revision: int, compact: int, hashkv: bool = False) -> AsyncIterator[Row]:
    """The bucket's rows up to `revision` with compact revision `compact` (-1: never), in
    order; the history is read window by window (only the keys at `compact` are held at once).
    hashkv: as etcd's HashKV counts them: a kept row superseded by `revision` is left out while
    some key is live at `revision` (kubefabric.shard.hashkv)."""
    kept = await _kept(shard, compact) if compact > 0 else []
    if hashkv and kept:
        live = await shard.range(pb.RangeRequest(key=ALL, range_end=ALL, revision=revision,
                                                 count_only=True))
        if live.count:
            changed = await _changed(shard, compact + 1, revision)
            kept = [kv for kv in kept if kv.key not in changed]
    last, sub = 0, 0
    for kv in kept:
        sub = sub + 1 if kv.mod_revision == last else 0
        last = kv.mod_revision
        yield Row(kv.mod_revision, sub, False, kv)
    del kept
    lo = max(compact, 0) + 1
    while lo <= revision:
        top = min(lo + HISTORY_WINDOW - 1, revision)
        for ev in await shard.history(EVERY_KEY, lo, top):
            main = ev.kv.mod_revision
            sub = sub + 1 if main == last else 0
            last = main
            if ev.type == Event.DELETE:
                yield Row(main, sub, True, KeyValue(key=ev.kv.key))
            else:
                yield Row(main, sub, False, ev.kv)
        lo = top + 1


async def hash_kv(shard, revision: int, compact: int) -> int:
    """etcd's HashKV of the rows at `revision`: CRC-32C of the bucket name, then each row's
    key and value in order. Equal to etcd's for the same history, except at a compaction
    revision, where etcd answers with the hash its compaction kept (no shard surface keeps one
    for several shards)."""
    crc = google_crc32c.extend(0, BUCKET)
    async for r in iter_rows(shard, revision, compact, hashkv=True):
        crc = google_crc32c.extend(crc, r.key_bytes())
        crc = google_crc32c.extend(crc, r.kv.SerializeToString())
    return crc
