"""The lease registry of one shard: granted leases and their deadlines, kept in memory.

Like etcd, a deadline is not persisted on every keep-alive: when a shard opens (or a new leader
takes over), every lease gets a full TTL again. Grants and revocations change the registry only
when their database transaction commits (`stage` then `commit_staged`/`drop_staged`).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

from kubefabric.etcd import errors

MAX_TTL = 9_000_000_000  # seconds; etcd's MaxLeaseTTL


@dataclass(slots=True)
class Lease:
    id: int
    ttl: int
    deadline: float  # time.monotonic() at which it expires

    def remaining(self, now: float) -> int:
        return max(0, int(self.deadline - now))


class Leases:
    def __init__(self, min_ttl: int = 2):
        self.min_ttl = min_ttl
        self.live: dict[int, Lease] = {}
        self._granted: dict[int, Lease] = {}
        self._revoked: set[int] = set()

    def load(self, rows) -> None:
        now = time.monotonic()
        self.live = {r[0]: Lease(r[0], r[1], now + r[1]) for r in rows}

    def exists(self, lease_id: int) -> bool:
        if lease_id in self._revoked:
            return False
        return lease_id in self.live or lease_id in self._granted

    def get(self, lease_id: int) -> Lease | None:
        return self.live.get(lease_id)

    def new_id(self) -> int:
        while True:
            candidate = random.getrandbits(63)
            if candidate and not self.exists(candidate):
                return candidate

    def effective_ttl(self, ttl: int) -> int:
        if ttl > MAX_TTL:
            raise errors.LEASE_TTL_TOO_LARGE
        return max(ttl, self.min_ttl)

    # ---- staged changes of the writer's open transaction ----

    def stage_grant(self, lease_id: int, ttl: int) -> Lease:
        lease = Lease(lease_id, ttl, time.monotonic() + ttl)
        self._granted[lease_id] = lease
        self._revoked.discard(lease_id)
        return lease

    def stage_revoke(self, lease_id: int) -> None:
        self._granted.pop(lease_id, None)
        self._revoked.add(lease_id)

    def commit_staged(self) -> None:
        for lease_id in self._revoked:
            self.live.pop(lease_id, None)
        self.live.update(self._granted)
        self.drop_staged()

    def drop_staged(self) -> None:
        self._granted = {}
        self._revoked = set()

    # ---- keep-alive and expiry ----

    def renew(self, lease_id: int) -> int:
        """Restart the lease's TTL; returns it, or 0 when the lease does not exist."""
        lease = self.live.get(lease_id)
        if lease is None:
            return 0
        lease.deadline = time.monotonic() + lease.ttl
        return lease.ttl

    def expired(self) -> list[int]:
        now = time.monotonic()
        return [l.id for l in self.live.values() if l.deadline <= now]

    def next_deadline(self) -> float:
        return min((l.deadline for l in self.live.values()), default=math.inf)
