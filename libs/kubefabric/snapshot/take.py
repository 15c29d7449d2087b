"""A snapshot of a KubeFabric keyspace (one shard, or every shard of a topology) at ONE revision,
in etcd's backend layout (kubefabric.snapshot.schema), written as a bbolt file.

What the `key` bucket holds is what etcd's would after the same history: every change above the
compact revision C up to the snapshot revision R, and at or below C each key's newest change if
it is not a deletion (the rows etcd's compaction keeps). It is read through the shard surface,
so one code path serves the embedded store and a routed topology: the kept rows are a range at
C, the later ones the history C+1..R, every shard first brought to R (DESIGN §3.5), so the
snapshot is consistent across shards. Sub revisions are each change's position among the
changes of its revision (the txn's order; on several shards, one shard's changes after the
other's, as DESIGN §3.6 reads them as one txn); at or below C, where a range does not tell a
txn's order, key order.

A compaction that lands while the snapshot is read would remove rows it needs: the compact
revision is read again at the end and the snapshot taken again when it moved (up to 3 times).

The bucket holds rows up to R; etcd restores its revision from the newest row (or the compact
revision), so a snapshot of shards whose clocks moved past their newest change without a write
(routed shards synced by a watch-hub) restores at that newest change, not at R.
"""
from __future__ import annotations

import hashlib
import logging
import tempfile
from typing import AsyncIterator, BinaryIO

from kubefabric.bbolt.writer import Writer
from kubefabric.etcd.keyrange import ALL, EVERY_KEY
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.mvccpb.kv_pb2 import Event, KeyValue

from . import schema

log = logging.getLogger("kubefabric.snapshot")

RANGE_PAGE = 1_000      # keys per range read at the compact revision
HISTORY_WINDOW = 1_000  # revisions per history read
ATTEMPTS = 3
CHUNK = 32 * 1024       # etcd's snapshotSendBufferSize


class SnapshotMoved(Exception):
    """The keyspace was compacted while a snapshot read it."""


async def _kept_rows(shard, compact: int) -> list[KeyValue]:
    """Each key's newest live change at or below `compact`, key order."""
    out: list[KeyValue] = []
    key = ALL
    while True:
        resp = await shard.range(pb.RangeRequest(key=key, range_end=ALL, revision=compact,
                                                 limit=RANGE_PAGE))
        out.extend(resp.kvs)
        if not resp.more or not resp.kvs:
            return out
        key = resp.kvs[-1].key + b"\0"


async def _key_entries(shard, revision: int, compact: int) -> list[tuple[bytes, bytes]]:
    entries: list[tuple[bytes, bytes]] = []
    last_main, sub = 0, 0

    def add(main: int, value: bytes, tombstone: bool) -> None:
        nonlocal last_main, sub
        sub = sub + 1 if main == last_main else 0
        last_main = main
        entries.append((schema.rev_key(main, sub, tombstone), value))

    if compact > 0:
        for kv in sorted(await _kept_rows(shard, compact), key=lambda kv: kv.mod_revision):
            add(kv.mod_revision, kv.SerializeToString(), False)
    lo = max(compact, 0) + 1
    while lo <= revision:
        hi = min(lo + HISTORY_WINDOW - 1, revision)
        for ev in await shard.history(EVERY_KEY, lo, hi):
            if ev.type == Event.DELETE:
                add(ev.kv.mod_revision, KeyValue(key=ev.kv.key).SerializeToString(), True)
            else:
                add(ev.kv.mod_revision, ev.kv.SerializeToString(), False)
        lo = hi + 1
    return entries


async def _leases(shard) -> list[tuple[int, int, int]]:
    out = []
    for lease_id in await shard.lease_list():
        left, granted, _ = await shard.lease_time_to_live(lease_id, False)
        if left >= 0:  # it may have expired since the list
            out.append((lease_id, granted, left))
    return out


async def _collect_once(shard) -> schema.Contents:
    compact = await shard.refresh_compaction()
    revision = await shard.sync(shard.state.committed)
    contents = schema.Contents(revision, compact)
    b = contents.buckets
    b[schema.KEY] = await _key_entries(shard, revision, compact)
    b[schema.META] = schema.meta_entries(revision, compact, shard.state.term)
    b[schema.LEASE] = schema.lease_entries(await _leases(shard))
    auth = await shard.auth_read()
    b.update(schema.auth_entries(auth[0]))
    for name in schema.ALL_BUCKETS:
        b.setdefault(name, [])
    if await shard.refresh_compaction() != compact:
        raise SnapshotMoved
    return contents


async def collect(shard) -> schema.Contents:
    """The keyspace behind `shard` (a kubefabric.shard.surface.ShardSurface) at one revision."""
    for attempt in range(ATTEMPTS):
        try:
            return await _collect_once(shard)
        except SnapshotMoved:
            log.info("snapshot: compacted while reading it, taking it again (%d)", attempt + 1)
    raise RuntimeError("the keyspace was compacted during each of 3 snapshot attempts")


def write(contents: schema.Contents, out: BinaryIO) -> int:
    """The bbolt file of `contents` into `out`; its size."""
    w = Writer(out)
    values = [(name, w.bucket(entries)) for name, entries in contents.sorted_buckets()]
    return w.finish(values)


async def stream(shard) -> AsyncIterator[tuple[bytes, int, str]]:
    """(bytes, remaining bytes, storage version) as etcd's Maintenance.Snapshot sends them: the
    file in 32 KiB chunks, then its SHA-256 with remaining 0."""
    contents = await collect(shard)
    with tempfile.TemporaryFile(prefix="kubefabric-snapshot-") as f:
        size = write(contents, f)
        log.info("snapshot at revision %d (compacted at %d): %d keys rows, %d bytes",
                 contents.revision, contents.compact_rev, len(contents.buckets[schema.KEY]), size)
        f.seek(0)
        digest, sent = hashlib.sha256(), 0
        while sent < size:
            chunk = f.read(min(CHUNK, size - sent))
            sent += len(chunk)
            digest.update(chunk)
            yield chunk, size - sent, schema.STORAGE_VERSION
    yield digest.digest(), 0, schema.STORAGE_VERSION
