"""A snapshot of a KubeFabric keyspace (one shard, or every shard of a topology) at ONE revision,
in etcd's backend layout (kubefabric.snapshot.schema), written as a bbolt file.

The `key` bucket comes from kubefabric.snapshot.keyrows: what etcd's would hold after the same
history, read through the shard surface with every shard first brought to the snapshot's
revision R (DESIGN §3.5), so the snapshot is consistent across shards. Its rows are written
into the file as they are read: memory holds the keys at the compact revision (read in pages,
then ordered by revision) and one history window, never the whole file.

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

from . import keyrows, schema

log = logging.getLogger("kubefabric.snapshot")

ATTEMPTS = 3
CHUNK = 32 * 1024       # etcd's snapshotSendBufferSize


class SnapshotMoved(Exception):
    """The keyspace was compacted while a snapshot read it."""


async def _leases(shard) -> list[tuple[int, int, int]]:
    out = []
    for lease_id in await shard.lease_list():
        left, granted, _ = await shard.lease_time_to_live(lease_id, False)
        if left >= 0:  # it may have expired since the list
            out.append((lease_id, granted, left))
    return out


async def _other_buckets(shard, revision: int, compact: int) -> dict[bytes, list[tuple[bytes, bytes]]]:
    """Every bucket but `key`: meta, lease, the auth buckets, and the empty member buckets."""
    b = {schema.META: schema.meta_entries(revision, compact, shard.state.term),
         schema.LEASE: schema.lease_entries(await _leases(shard))}
    auth = await shard.auth_read()
    b.update(schema.auth_entries(auth[0]))
    for name in schema.ALL_BUCKETS:
        if name != schema.KEY:
            b.setdefault(name, [])
    return b


async def _at_one_revision(shard, take):
    """take(revision, compact) with the keyspace held still: retried when a compaction moved."""
    for attempt in range(ATTEMPTS):
        compact = await shard.refresh_compaction()
        revision = await shard.sync(shard.state.committed)
        result = await take(revision, compact)
        if await shard.refresh_compaction() == compact:
            return result
        log.info("snapshot: compacted while reading it, taking it again (%d)", attempt + 1)
    raise RuntimeError(f"the keyspace was compacted during each of {ATTEMPTS} snapshot attempts")


async def collect(shard) -> schema.Contents:
    """The keyspace behind `shard` (a kubefabric.shard.surface.ShardSurface) at one revision,
    in memory (Maintenance.Hash)."""
    async def take(revision: int, compact: int) -> schema.Contents:
        contents = schema.Contents(revision, compact, await _other_buckets(shard, revision, compact))
        contents.buckets[schema.KEY] = [(r.key_bytes(), r.kv.SerializeToString())
                                        async for r in keyrows.iter_rows(shard, revision, compact)]
        return contents
    return await _at_one_revision(shard, take)


def write(contents: schema.Contents, out: BinaryIO) -> int:
    """The bbolt file of `contents` into `out`; its size."""
    w = Writer(out)
    values = [(name, w.bucket(entries)) for name, entries in contents.sorted_buckets()]
    return w.finish(values)


async def write_snapshot(shard, out: BinaryIO) -> tuple[int, int, int, int]:
    """The keyspace behind `shard` at one revision as a bbolt file into `out` (seekable, empty);
    (revision, compact revision, key rows, size)."""
    async def take(revision: int, compact: int):
        out.seek(0)
        out.truncate()
        w = Writer(out)
        key, rows = w.builder(), 0
        async for r in keyrows.iter_rows(shard, revision, compact):
            key.add(r.key_bytes(), r.kv.SerializeToString())
            rows += 1
        values = {schema.KEY: key.close()}
        for name, entries in (await _other_buckets(shard, revision, compact)).items():
            values[name] = w.bucket(entries)
        return revision, compact, rows, w.finish(sorted(values.items()))
    return await _at_one_revision(shard, take)


async def stream(shard) -> AsyncIterator[tuple[bytes, int, str]]:
    """(bytes, remaining bytes, storage version) as etcd's Maintenance.Snapshot sends them: the
    file in 32 KiB chunks, then its SHA-256 with remaining 0."""
    with tempfile.TemporaryFile(prefix="kubefabric-snapshot-") as f:
        revision, compact, rows, size = await write_snapshot(shard, f)
        log.info("snapshot at revision %d (compacted at %d): %d key rows, %d bytes",
                 revision, compact, rows, size)
        f.seek(0)
        digest, sent = hashlib.sha256(), 0
        while sent < size:
            chunk = f.read(min(CHUNK, size - sent))
            sent += len(chunk)
            digest.update(chunk)
            yield chunk, size - sent, schema.STORAGE_VERSION
    yield digest.digest(), 0, schema.STORAGE_VERSION
