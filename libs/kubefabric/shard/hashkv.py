"""Maintenance.HashKV: etcd's hash of the MVCC history, computed from a shard's log.

etcd hashes its bbolt `key` bucket: CRC-32C (Castagnoli) over the bucket name, then each row's
key and value in key order, where a row's key is its revision (8-byte big-endian main revision,
'_', 8-byte big-endian sub revision, plus 't' for a deletion) and its value the marshalled
mvccpb.KeyValue (a deletion: the key alone). Rows above the hashed revision R are left out; rows
at or below the compact revision C are those etcd's compaction keeps (each key's newest row at or
below C if it is not a deletion), and of those only the ones that are still the newest at R,
unless no key is live at R (then all of them: etcd skips rows "scheduled for deletion" only when
its keep set is non-empty); a deletion at exactly C never counts.

etcd also keeps the hash its compaction computed (CompactRevision = the previous compaction)
and answers HashKV at that revision with it: the shard does the same for its last 10
compactions, computing the hash before compaction deletes any row.

The log holds exactly what that needs: one row per change, with its revision, its position in
the txn (`sub`, etcd's sub revision), create revision, version, lease and value.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import google_crc32c

from kubefabric.proto.mvccpb.kv_pb2 import KeyValue

PAGE = 5_000            # rows per read
STORED_HASHES = 10      # etcd's hashStorageMaxSize
BUCKET = b"key"

_REV = struct.Struct(">Q")


def rev_bytes(main: int, sub: int, tombstone: bool) -> bytes:
    """etcd's bucket key of a revision (schema.RevToBytes, plus the tombstone mark)."""
    return _REV.pack(main) + b"_" + _REV.pack(sub) + (b"t" if tombstone else b"")


def kv_bytes(key: bytes, rev: int, create_rev: int, version: int, lease: int, value: bytes,
             deleted: bool) -> bytes:
    """The bucket value etcd writes for a change: the KeyValue (a deletion: the key alone)."""
    if deleted:
        return KeyValue(key=key).SerializeToString()
    return KeyValue(key=key, create_revision=create_rev, mod_revision=rev, version=version,
                    value=value, lease=lease).SerializeToString()


@dataclass(frozen=True)
class KVHash:
    hash: int
    compact_revision: int
    revision: int


class Hasher:
    """etcd's kvHasher fed with rows already filtered to what it would hash."""

    def __init__(self, crc: int | None = None):
        self.crc = google_crc32c.extend(0, BUCKET) if crc is None else crc

    def row(self, r) -> None:
        """r: (rev, sub, key, create_rev, version, lease, deleted, value)."""
        rev, sub, key, create_rev, version, lease, deleted, value = r
        self.crc = google_crc32c.extend(self.crc, rev_bytes(rev, sub, bool(deleted)))
        self.crc = google_crc32c.extend(
            self.crc, kv_bytes(key, rev, create_rev, version, lease, value, bool(deleted)))


async def _pages(cur, name: str, values: dict):
    """Rows of a keyset-paged hash statement, in (rev, sub) order."""
    values = {**values, "lo": -1, "sub": -1, "limit": PAGE}
    while True:
        rows = await cur.rows(name, values, limited=True)
        for r in rows:
            yield r
        if len(rows) < PAGE:
            return
        values["lo"], values["sub"] = rows[-1][0], rows[-1][1]


async def compute(cur, revision: int, compact_rev: int, keep_tombstone_at: int | None = None,
                  crc: int | None = None) -> int:
    """The hash of rows up to `revision` with compact revision `compact_rev`, on snapshot `cur`.

    keep_tombstone_at: a compaction's own hash (etcd's keep set then also holds a deletion at
    the compaction revision, which decides whether the set is empty). crc: continue from this
    CRC instead of starting with the bucket name (several shards hashed as one history)."""
    h = Hasher(crc)
    if compact_rev >= 0:
        live = await cur.scalar("at_count", {"start": b"", "rev": revision}, "unbounded")
        keep_nonempty = bool(live)
        if not keep_nonempty and keep_tombstone_at is not None:
            keep_nonempty = bool(await cur.scalar("hash_tombstones_at", {"rev": keep_tombstone_at}))
        # kept rows at or below C: still the newest at R when etcd's keep set is non-empty
        upto = revision if keep_nonempty else compact_rev
        async for r in _pages(cur, "hash_kept", {"compact": compact_rev, "rev": upto}):
            h.row(r)
    async for r in _pages(cur, "hash_rows", {"compact": max(compact_rev, 0), "hi": revision}):
        h.row(r)
    return h.crc
