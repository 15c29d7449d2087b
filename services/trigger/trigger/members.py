"""Replicas sharing the triggers (DESIGN §9): each holds a lease and a member
record under /kubefabric/trigger/members/; object keys are spread over the live members by
rendezvous hashing, so a member joining or leaving moves only its share.

Invariants:
- `owner(key)` is a pure function of the member set: every replica that sees the same set
  agrees on every key's owner.
- A replica acts only while its lease is held: `lost` is set (by the lease keep-alive) no later
  than the server could expire the lease and give its keys to others.
- Hand-over barrier: when the set changes, every replica stops its deliveries, records its
  watermarks, then acks the new set (its member record carries the set's fingerprint); a
  replica starts delivering under a set only once every live member has acked it, so the
  old owner of a key has stopped before the new owner starts (per-object order kept).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging

from kubefabric.client import ClientError, EtcdClient, prefix_end

from . import metrics
from .records import MEMBERS, member_key

log = logging.getLogger("kubefabric.trigger.members")


def fingerprint(members) -> str:
    return hashlib.sha256("\n".join(sorted(members)).encode()).hexdigest()[:16]


def _score(member: str, key: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(key, digest_size=8, key=member.encode()[:64]).digest(), "big")


def owner_of(members, key: bytes) -> str | None:
    """The rendezvous-hashing owner of `key` among `members`."""
    best, best_score = None, -1
    for m in members:
        s = _score(m, key)
        if s > best_score or (s == best_score and m < best):
            best, best_score = m, s
    return best


class Membership:
    def __init__(self, client: EtcdClient, name: str, ttl: int):
        self.client = client
        self.name = name
        self.ttl = ttl
        self.acks: dict[str, str] = {}       # live member -> fingerprint it acked
        self.changed = asyncio.Event()       # the member set changed
        self.acked = asyncio.Event()         # some member record changed
        self.keepalive = None
        self._watch_task: asyncio.Task | None = None
        self.revision = 0

    @property
    def members(self) -> list[str]:
        return sorted(self.acks)

    def owns(self, key: bytes, members=None) -> bool:
        return owner_of(members if members is not None else self.members, key) == self.name

    async def join(self) -> None:
        """Take a lease, write the member record, follow the others."""
        lease = await self.client.leases.grant(self.ttl)
        self.keepalive = self.client.leases.keep_alive(lease)
        await self.client.kv.put(member_key(self.name), json.dumps({"ack": ""}).encode(), lease=lease.id)
        kvs, rev = await self.client.kv.list(MEMBERS)
        self.acks = {kv.key[len(MEMBERS):].decode(): _ack(kv.value) for kv in kvs}
        self.revision = rev
        self._watch_task = asyncio.get_running_loop().create_task(self._follow(rev), name="members")
        log.info("joined as %s (lease %x, TTL %ds); members: %s", self.name, lease.id, self.ttl,
                 ", ".join(self.members))
        metrics.members.set(len(self.acks))

    @property
    def lost(self) -> asyncio.Event:
        return self.keepalive.lost

    async def _follow(self, rev: int) -> None:
        async with self.client.watch(MEMBERS, prefix_end(MEMBERS), start_revision=rev + 1) as w:
            async for batch in w:
                before = set(self.acks)
                for e in batch.events:
                    name = e.kv.key[len(MEMBERS):].decode()
                    if e.type == 1:
                        self.acks.pop(name, None)
                    else:
                        self.acks[name] = _ack(e.kv.value)
                self.revision = max(self.revision, batch.revision)
                if set(self.acks) != before:
                    log.info("members now: %s", ", ".join(self.members) or "(none)")
                    metrics.members.set(len(self.acks))
                    self.changed.set()
                self.acked.set()

    async def ack(self, members) -> None:
        """Record that this replica runs under the set `members` (and stopped everything of
        the sets before)."""
        value = json.dumps({"ack": fingerprint(members)}).encode()
        while True:
            try:
                await self.client.kv.put(member_key(self.name), value, lease=self.keepalive.lease.id)
                return
            except ClientError as err:
                log.warning("cannot record this replica's member set (%s); retrying", err)
                await asyncio.sleep(1)

    async def barrier(self, members) -> bool:
        """Wait until every live member acked `members`; False if the set changed meanwhile."""
        want = fingerprint(members)
        while True:
            if set(self.acks) != set(members):
                return False
            if all(a == want for a in self.acks.values()):
                return True
            self.acked.clear()
            await self.acked.wait()

    async def leave(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
        if self.keepalive is not None:
            await self.keepalive.stop(revoke=True)


def _ack(value: bytes) -> str:
    try:
        return json.loads(value).get("ack", "")
    except (ValueError, AttributeError):
        return ""
