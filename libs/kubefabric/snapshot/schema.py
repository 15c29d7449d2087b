"""etcd's backend schema (go.etcd.io/etcd/server/v3 storage/schema and mvcc), as bucket entries.

- `key`: one entry per change, keyed by revision: 8-byte big-endian main revision, '_', 8-byte
  big-endian sub revision (the change's position in its txn), plus 't' for a deletion; the value
  is the marshalled mvccpb.KeyValue (a deletion: the key alone).
- `meta`: consistent_index and term (8-byte big-endian), scheduledCompactRev and
  finishedCompactRev (a revision key with sub 0), storageVersion (text, etcd 3.6+).
- `lease`: 8-byte big-endian lease ID -> leasepb.Lease {ID, TTL, RemainingTTL}.
- `auth`: authEnabled (one byte, 1 or 0), authRevision (8-byte big-endian); `authUsers` and
  `authRoles`: name -> authpb.User / authpb.Role.
- `alarm`, `cluster`, `members`, `members_removed`: present (etcdutl's restore deletes from the
  member buckets and fails when one is missing); KubeFabric writes them empty, a restore fills
  them for the new cluster.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import google_crc32c
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

KEY, META, LEASE, ALARM, CLUSTER = b"key", b"meta", b"lease", b"alarm", b"cluster"
MEMBERS, MEMBERS_REMOVED = b"members", b"members_removed"
AUTH, AUTH_USERS, AUTH_ROLES = b"auth", b"authUsers", b"authRoles"
ALL_BUCKETS = (KEY, META, LEASE, ALARM, CLUSTER, MEMBERS, MEMBERS_REMOVED, AUTH, AUTH_USERS, AUTH_ROLES)

CONSISTENT_INDEX, TERM = b"consistent_index", b"term"
SCHEDULED_COMPACT, FINISHED_COMPACT = b"scheduledCompactRev", b"finishedCompactRev"
STORAGE_VERSION_KEY = b"storageVersion"
AUTH_ENABLED, AUTH_REVISION = b"authEnabled", b"authRevision"
# The storage version written: what etcd 3.6 writes; etcd 3.6 and 3.7 restore and serve it
# (3.7 migrates it up on start). etcd 3.5 ignores the key.
STORAGE_VERSION = "3.6.0"
# meta keys etcd's Maintenance.Hash leaves out (schema.DefaultIgnores)
HASH_IGNORES = {CONSISTENT_INDEX, TERM, STORAGE_VERSION_KEY}

_U64 = struct.Struct(">Q")
_REV_LEN = 17


def u64(n: int) -> bytes:
    return _U64.pack(n & 0xFFFF_FFFF_FFFF_FFFF)


def read_u64(b: bytes) -> int:
    return _U64.unpack(b[:8])[0]


def rev_key(main: int, sub: int, tombstone: bool = False) -> bytes:
    return u64(main) + b"_" + u64(sub) + (b"t" if tombstone else b"")


def parse_rev_key(b: bytes) -> tuple[int, int, bool]:
    """(main, sub, tombstone) of a `key` bucket key; ValueError when it is not one."""
    if len(b) not in (_REV_LEN, _REV_LEN + 1) or b[8:9] != b"_" or (len(b) > _REV_LEN and b[-1:] != b"t"):
        raise ValueError(f"not an etcd revision key: {b[:20]!r}")
    return read_u64(b), read_u64(b[9:17]), len(b) > _REV_LEN


def _lease_class():
    """leasepb.Lease (go.etcd.io/etcd/server/v3/lease/leasepb), built from its descriptor:
    KubeFabric has no other use for etcd's lease protos."""
    f = descriptor_pb2.FileDescriptorProto(name="kubefabric_leasepb.proto", package="leasepb", syntax="proto3")
    m = f.message_type.add(name="Lease")
    for number, name in enumerate(("ID", "TTL", "RemainingTTL"), start=1):
        m.field.add(name=name, number=number, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
                    label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("leasepb.Lease"))


Lease = _lease_class()


@dataclass
class Contents:
    """What a snapshot holds, bucket by bucket: sorted (key, value) entries."""
    revision: int
    compact_rev: int
    buckets: dict[bytes, list[tuple[bytes, bytes]]] = field(default_factory=dict)

    def sorted_buckets(self) -> list[tuple[bytes, list[tuple[bytes, bytes]]]]:
        return sorted(self.buckets.items())


def meta_entries(revision: int, compact_rev: int, term: int) -> list[tuple[bytes, bytes]]:
    """The meta bucket. consistent_index is the snapshot's revision and term the shard's: etcd's
    raft index and term have no KubeFabric counterpart, and `etcdutl snapshot restore`
    overwrites both for the new cluster (UpdateConsistentIndexForce) - any non-zero value restores."""
    out = [(CONSISTENT_INDEX, u64(max(revision, 1))), (TERM, u64(max(term, 1))),
           (STORAGE_VERSION_KEY, STORAGE_VERSION.encode())]
    if compact_rev > 0:
        out += [(SCHEDULED_COMPACT, rev_key(compact_rev, 0)), (FINISHED_COMPACT, rev_key(compact_rev, 0))]
    return sorted(out)


def lease_entries(leases: list[tuple[int, int, int]]) -> list[tuple[bytes, bytes]]:
    """leases: (ID, granted TTL, remaining TTL); etcd honours RemainingTTL when it is > 0."""
    return sorted((u64(i), Lease(ID=i, TTL=ttl, RemainingTTL=max(left, 0)).SerializeToString())
                  for i, ttl, left in leases)


def auth_entries(state) -> dict[bytes, list[tuple[bytes, bytes]]]:
    """The auth buckets of a kubefabric.auth.state.AuthState."""
    return {
        AUTH: [(AUTH_ENABLED, b"\x01" if state.enabled else b"\x00"), (AUTH_REVISION, u64(state.revision))],
        AUTH_USERS: sorted((u.name, u.SerializeToString()) for u in state.users.values()),
        AUTH_ROLES: sorted((r.name, r.SerializeToString()) for r in state.roles.values()),
    }


def etcd_hash(contents: Contents) -> int:
    """etcd's Maintenance.Hash over these buckets: CRC-32C of each bucket's name, then its keys
    and values in order, buckets in name order, HASH_IGNORES left out of meta."""
    crc = 0
    for name, entries in contents.sorted_buckets():
        crc = google_crc32c.extend(crc, name)
        for k, v in entries:
            if name == META and k in HASH_IGNORES:
                continue
            crc = google_crc32c.extend(crc, k)
            crc = google_crc32c.extend(crc, v)
    return crc
