"""The backend quota and alarms of a shard (etcd's --quota-backend-bytes and NOSPACE alarm).

etcd's rules kept: a mutating request whose size would take the database to the quota raises the
NOSPACE alarm and fails with 'etcdserver: mvcc: database space exceeded'; while the alarm is
active, Put, a Txn with any put and LeaseGrant fail the same way, while reads, deletes,
compaction and defragmentation still work; the alarm stays until an operator disarms it
(Alarm DEACTIVATE, `etcdctl alarm disarm`).

Beyond etcd: the free space of the data directory's filesystem counts too. A write that would
leave less than a reserve (what the store may need for itself, plus a tenth of the filesystem
up to 64 MiB) raises the alarm early, so deletes and compaction still find room to run; the
database refusing a write because the disk is full raises it as well.

Alarms raised by clients (Maintenance.Alarm) are etcd's too: an alarm is a (member id, type)
pair stored as given (member id 0 is a member id like any other: etcd keeps it as 0, and a list
shows it beside the same alarm raised for a member); any NOSPACE alarm caps writes as above, any
CORRUPT alarm refuses every write, compaction and lease grant or revoke with etcd's
'etcdserver: corrupt cluster' (DATA_LOSS) while reads and read-only txns go on. Client alarms are
persisted in the shard's meta table (`alarm.<TYPE>.<member id>`), so they survive a restart and
a leader change, as etcd's alarm bucket does.
"""
from __future__ import annotations

import logging

from kubefabric.etcd import errors
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

log = logging.getLogger("kubefabric.quota")

DEFAULT_QUOTA_BYTES = 2 * 1024 ** 3  # etcd's default
ALARM_META_PREFIX = "alarm."


def meta_name(member: int, alarm: pb.AlarmType) -> str:
    """The meta row of a client alarm: alarm.<TYPE>.<member id in decimal> (at most 33 chars)."""
    return f"{ALARM_META_PREFIX}{pb.AlarmType.Name(alarm)}.{member}"


def parse_meta_name(name: str) -> tuple[int, pb.AlarmType] | None:
    """(member id, alarm type) of an alarm meta row; None for any other row."""
    if not name.startswith(ALARM_META_PREFIX):
        return None
    kind, _, member = name[len(ALARM_META_PREFIX):].partition(".")
    try:
        return int(member), pb.AlarmType.Value(kind)
    except ValueError:
        return None


def txn_cost(req: pb.TxnRequest) -> int:
    """Bytes the txn may add: the larger branch's puts (etcd's cost model)."""
    return max(_ops_cost(req.success), _ops_cost(req.failure))


def _ops_cost(ops) -> int:
    total = 0
    for op in ops:
        kind = op.WhichOneof("request")
        if kind == "request_put":
            total += op.request_put.ByteSize()
        elif kind == "request_txn":
            total += txn_cost(op.request_txn)
    return total


class Quota:
    def __init__(self, quota_bytes: int = DEFAULT_QUOTA_BYTES):
        self.quota_bytes = quota_bytes if quota_bytes > 0 else DEFAULT_QUOTA_BYTES
        self.size = 0                      # database bytes, refreshed after each commit
        self.free: int | None = None       # free bytes on the data filesystem (None: unknown)
        self.reserve = 0
        self.alarms: set[tuple[int, pb.AlarmType]] = set()  # (member id, AlarmType)
        self.member_id = 0

    @property
    def nospace(self) -> bool:
        return any(a == pb.NOSPACE for _, a in self.alarms)

    @property
    def corrupt(self) -> bool:
        return any(a == pb.CORRUPT for _, a in self.alarms)

    def check_corrupt(self) -> None:
        """etcd's corrupt applier: with a CORRUPT alarm active, no write is applied."""
        if self.corrupt:
            raise errors.CORRUPT

    def check(self, cost: int) -> None:
        """Refuse a request that would add `cost` bytes (0: not mutating, always allowed)."""
        if cost == 0:
            return
        if self.nospace:
            raise errors.NO_SPACE
        if self.size + cost >= self.quota_bytes:
            self.raise_nospace(f"database size {self.size} + request {cost} bytes reaches the "
                               f"quota of {self.quota_bytes} bytes")
            raise errors.NO_SPACE
        if self.free is not None and self.free - cost < self.reserve:
            self.raise_nospace(f"{self.free} bytes free on the data filesystem, below the "
                               f"reserve of {self.reserve} bytes")
            raise errors.NO_SPACE

    def measure(self, size: int, writable: int, keep_free: int, fs_size: int) -> None:
        """size: database bytes allocated; writable: bytes the store can still write; keep_free:
        bytes the store itself may need (e.g. a WAL checkpoint); fs_size: filesystem size."""
        self.size = size
        self.free = writable
        self.reserve = keep_free + min(64 * 1024 ** 2, fs_size // 10)

    def raise_nospace(self, why: str) -> None:
        if not self.nospace:
            log.error("NOSPACE alarm raised: %s; writes are refused until space is freed "
                      "(compact, defragment) and the alarm is disarmed", why)
        self.alarms.add((self.member_id, pb.NOSPACE))

    def members(self) -> list[pb.AlarmMember]:
        return [pb.AlarmMember(memberID=m, alarm=a) for m, a in sorted(self.alarms)]

    def alarm(self, req: pb.AlarmRequest) -> tuple[list[pb.AlarmMember], dict[str, int]]:
        """etcd's Alarm request (its applier's rules): the alarms its response lists, and the
        meta rows that persist the change. ACTIVATE of NONE and unknown actions change nothing;
        DEACTIVATE of an alarm that is not raised lists nothing."""
        member, alarm = req.memberID, req.alarm
        changes: dict[str, int] = {}
        if req.action == pb.AlarmRequest.GET:
            listed = sorted(a for a in self.alarms if req.alarm in (pb.NONE, a[1]))
        elif req.action == pb.AlarmRequest.ACTIVATE and alarm != pb.NONE:
            if (member, alarm) not in self.alarms:
                changes[meta_name(member, alarm)] = 1
            listed = [(member, alarm)]
        elif req.action == pb.AlarmRequest.DEACTIVATE and (member, alarm) in self.alarms:
            changes[meta_name(member, alarm)] = 0
            listed = [(member, alarm)]
        else:
            listed = []
        return [pb.AlarmMember(memberID=m, alarm=a) for m, a in listed], changes

    def apply(self, changes: dict[str, int]) -> None:
        """Take persisted alarm rows (meta name -> 1 raised, 0 disarmed) into effect."""
        for name, raised in changes.items():
            parsed = parse_meta_name(name)
            if parsed is None:
                continue
            if raised:
                self.activate(*parsed)
            else:
                self.deactivate(*parsed)

    def activate(self, member: int, alarm: pb.AlarmType) -> None:
        if (member, alarm) not in self.alarms:
            log.warning("alarm %s raised for member %x", pb.AlarmType.Name(alarm), member)
        self.alarms.add((member, alarm))

    def deactivate(self, member: int, alarm: pb.AlarmType) -> bool:
        if (member, alarm) in self.alarms:
            self.alarms.discard((member, alarm))
            log.info("alarm %s disarmed", pb.AlarmType.Name(alarm))
            return True
        return False
