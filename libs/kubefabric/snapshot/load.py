"""An etcd snapshot file (`etcdctl snapshot save`, or a member's member/snap/db) read back: the
inverse of kubefabric.snapshot.take.

`open_snapshot` checks the file before anything is imported: the SHA-256 etcd appends (when the
size says one is there: etcdutl's rule, size % 512 == 32) must match, the rest must be a bbolt
file with etcd's `key` and `meta` buckets. Every refusal is a SnapshotError with one line.

What it yields is the whole MVCC history the file holds, in revision order: each change with
its key, create/mod revision, version and lease (a deletion: the key alone), so an import keeps
every resourceVersion kube-apiserver handed out and watches can resume from any revision
above the compaction point. `revision` is where etcd itself would start serving: the newest
change, or the compact revision when that is higher.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from kubefabric.auth.state import AuthState
from kubefabric.bbolt.reader import Reader
from kubefabric.bbolt.layout import BoltError
from kubefabric.proto.authpb import auth_pb2 as authpb
from kubefabric.proto.mvccpb.kv_pb2 import KeyValue

from . import schema

SHA_LEN = 32


class SnapshotError(ValueError):
    """A file that cannot be imported; the message is one line for users."""


@dataclass(frozen=True)
class Change:
    rev: int
    sub: int
    key: bytes
    create_rev: int
    version: int
    lease: int
    deleted: bool
    value: bytes


@dataclass
class EtcdSnapshot:
    path: Path
    reader: Reader
    revision: int
    compact_rev: int            # -1: never compacted
    changes_count: int
    leases: list[tuple[int, int]] = field(default_factory=list)  # (ID, TTL)
    auth: AuthState = field(default_factory=AuthState)

    def changes(self) -> Iterator[Change]:
        """The key bucket in revision order."""
        for k, v in self.reader.items(schema.KEY):
            main, sub, tombstone = schema.parse_rev_key(k)
            kv = KeyValue.FromString(v)
            if tombstone:
                yield Change(main, sub, kv.key, 0, 0, 0, True, b"")
            else:
                yield Change(main, sub, kv.key, kv.create_revision, kv.version, kv.lease, False, kv.value)

    def close(self) -> None:
        self.reader.close()


def _bolt_size(path: Path, size: int) -> int:
    """The size of the bbolt part, after checking the SHA-256 that follows it, if any."""
    if size % 512 != SHA_LEN:
        return size
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        left = size - SHA_LEN
        while left:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        if digest.digest() != f.read(SHA_LEN):
            raise SnapshotError(f"{path}: SHA-256 mismatch: the file is corrupt or was cut short "
                                f"(it does not match the checksum etcd appended)")
    return size - SHA_LEN


def open_snapshot(path: str | Path) -> EtcdSnapshot:
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise SnapshotError(f"{path}: {err.strerror}") from None
    try:
        reader = Reader(path, _bolt_size(path, size))
    except BoltError as err:
        raise SnapshotError(str(err)) from None
    try:
        return _read(path, reader)
    except BoltError as err:
        reader.close()
        raise SnapshotError(str(err)) from None
    except (ValueError, UnicodeDecodeError) as err:  # a bad revision key, an unparsable message
        reader.close()
        raise SnapshotError(f"{path}: not an etcd snapshot: {err}") from None
    except BaseException:
        reader.close()
        raise


def _read(path: Path, reader: Reader) -> EtcdSnapshot:
    names = set(reader.buckets())
    missing = {schema.KEY, schema.META} - names
    if missing:
        raise SnapshotError(f"{path}: a bbolt file without etcd's "
                            f"{' and '.join(sorted(m.decode() for m in missing))} bucket - not an etcd snapshot")
    meta = dict(reader.items(schema.META))
    compact = -1
    for name in (schema.FINISHED_COMPACT, schema.SCHEDULED_COMPACT):
        if name in meta:  # scheduled above finished: a compaction etcd had not finished; it counts
            compact = max(compact, schema.parse_rev_key(meta[name])[0])
    newest, count = 0, 0
    for k, _ in reader.items(schema.KEY):
        newest = schema.parse_rev_key(k)[0]
        count += 1
    leases = []
    for _, v in reader.items(schema.LEASE):
        lease = schema.Lease.FromString(v)
        leases.append((lease.ID, lease.TTL))
    auth = dict(reader.items(schema.AUTH))
    state = AuthState(
        enabled=auth.get(schema.AUTH_ENABLED) == b"\x01",
        revision=schema.read_u64(auth[schema.AUTH_REVISION]) if schema.AUTH_REVISION in auth else 1,
        users={k.decode(): authpb.User.FromString(v) for k, v in reader.items(schema.AUTH_USERS)},
        roles={k.decode(): authpb.Role.FromString(v) for k, v in reader.items(schema.AUTH_ROLES)})
    return EtcdSnapshot(path, reader, max(newest, compact, 1), compact, count, leases, state)
