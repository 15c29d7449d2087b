"""Which replica of a shard service a call goes to, and what kv-router does about a replica that
stops answering without closing its connection (SIGSTOP, a stall, a partition): its calls would
otherwise wait for their deadline.

Invariants:
- Reads go round robin to the replicas that answer. A read still unanswered after HEDGE_S is
  sent to the next replica too; the first answer wins and the other call is cancelled. Any
  replica's answer is right: each reads the shard's database, which holds everything committed,
  on a snapshot taken after the call was sent. A replica that left a read unanswered that long
  is skipped until it answers a Status again (checked every REVIVE_S).
- Calls for the leader go to the replica last known as leader. While one stays unanswered past
  SUSPECT_S, the router asks every replica for its Status (one such probe at a time per shard).
  A replica reports itself leader only while its lease is valid, and leases never overlap, so a
  leader other than the call's target means that target lost its lease: the call is abandoned
  (LeaderChanged) and later calls go to the new leader. The caller retries an idempotent call
  there and fails a write with etcd's "request timed out, possibly due to previous leader
  failure" (UNAVAILABLE: its outcome is unknown, the old leader may have committed it before
  it stopped).
"""
from __future__ import annotations

import asyncio
import logging

import grpc

from kubefabric.etcd.errors import EtcdError
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb

log = logging.getLogger("kubefabric.shard.client")

HEDGE_S = 0.25        # a read unanswered this long is also sent to another replica
SUSPECT_S = 0.3       # a write unanswered this long makes the router look for another leader
REVIVE_S = 0.5        # how often replicas skipped as unresponsive are asked for their Status
STATUS_TIMEOUT_S = 0.5
LEADER_FAILED = EtcdError(grpc.StatusCode.UNAVAILABLE,
                          "etcdserver: request timed out, possibly due to previous leader failure")


class LeaderChanged(Exception):
    """Another replica leads now: a call left at the old leader was abandoned."""

    def __init__(self, leader: int):
        super().__init__(f"replica {leader} leads now")
        self.leader = leader


class Replicas:
    """The replicas of one shard service, seen from a router: `stubs()` gives their Shard API
    stubs (replaced when TLS files change), index i is always the same replica. `call(i,
    method, request, timeout)` makes a call to replica i (default: the unary call on its stub;
    RemoteShard's sends reads on a stream, kubefabric.shardsvc.replicareads)."""

    def __init__(self, stubs, name: str, call=None):
        self.stubs = stubs
        self.name = name
        self.call = call or self._unary
        self.leader = 0               # index of the replica last known as leader
        self.term = 0                 # the highest term a leader reported
        self.unresponsive: set[int] = set()
        self._next = 0
        self._probe: asyncio.Task | None = None
        self._reviver: asyncio.Task | None = None

    def close(self) -> None:
        for task in (self._probe, self._reviver):
            if task is not None:
                task.cancel()

    async def _unary(self, target: int, method: str, request, timeout: float):
        return await getattr(self.stubs()[target], method)(request, timeout=timeout)

    # ---- choosing ----

    def reader(self, avoid: int | None = None) -> int:
        """The next replica for a read, round robin, skipping unresponsive ones (and `avoid`)
        unless no other is left."""
        n = len(self.stubs())
        for _ in range(n):
            i, self._next = self._next % n, self._next + 1
            if i not in self.unresponsive and i != avoid:
                return i
        return (avoid + 1) % n if avoid is not None and n > 1 else self._next % n

    # ---- calls ----

    async def read(self, method: str, request, target: int, timeout: float):
        """`method` on replica `target`, hedged on another replica after HEDGE_S."""
        if len(self.stubs()) == 1:
            return await self.call(target, method, request, timeout)
        first = asyncio.ensure_future(self.call(target, method, request, timeout))
        calls = {first}
        try:
            done, _ = await asyncio.wait(calls, timeout=HEDGE_S)
            if done:
                return first.result()
            self._set_unresponsive(target)
            other = self.reader(avoid=target)
            if other != target:
                calls.add(asyncio.ensure_future(self.call(other, method, request, timeout)))
            failure = None
            while calls:
                done, calls = await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
                for call in done:
                    if call.exception() is None:
                        if call is first:
                            self.unresponsive.discard(target)
                        return call.result()
                    failure = call.exception()
            raise failure
        finally:
            for call in calls:
                call.cancel()

    async def write(self, method: str, request, target: int, timeout: float):
        """`method` on replica `target` (the leader); LeaderChanged when it was abandoned because
        another replica leads."""
        if len(self.stubs()) == 1:  # no other replica can lead: nothing to suspect, no task to watch
            return await self.call(target, method, request, timeout)
        call = asyncio.ensure_future(self.call(target, method, request, timeout))
        try:
            while True:
                done, _ = await asyncio.wait((call,), timeout=SUSPECT_S)
                if done:
                    return call.result()
                leader = await self.probe()
                if leader is not None and leader != target:
                    raise LeaderChanged(leader)
        finally:
            call.cancel()

    # ---- finding the leader ----

    async def probe(self) -> int | None:
        """Ask every replica for its Status at once; the leader with the highest term (also
        remembered), or None. Concurrent callers share one probe."""
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self._ask_all())
        return await asyncio.shield(self._probe)

    async def _ask_all(self) -> int | None:
        """Statuses as they come: the first replica that reports itself leader ends the probe
        (leases do not overlap: no other replica can be a valid leader meanwhile). Replicas
        known to be unresponsive are left to the reviver, unless no other is left."""
        stubs = self.stubs()
        asked = [i for i in range(len(stubs)) if i not in self.unresponsive] or range(len(stubs))
        calls = {asyncio.ensure_future(stubs[i].Status(spb.StatusRequest(), timeout=STATUS_TIMEOUT_S)): i
                 for i in asked}
        pending = set(calls)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for call in done:
                    i, err = calls[call], call.exception()
                    if err is not None:
                        if isinstance(err, grpc.aio.AioRpcError) and \
                                err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                            self._set_unresponsive(i)
                        continue
                    self.unresponsive.discard(i)
                    status = call.result()
                    if status.role == "leader":
                        if i != self.leader:
                            log.info("shard %s: the leader is replica %d (term %d)", self.name, i,
                                     status.term)
                        self.leader, self.term = i, max(self.term, status.term)
                        return i
            return None
        finally:
            for call in pending:
                call.cancel()

    # ---- unresponsive replicas ----

    def _set_unresponsive(self, i: int) -> None:
        if i not in self.unresponsive:
            self.unresponsive.add(i)
            log.warning("shard %s: replica %d does not answer; calls go to the others", self.name, i)
        if self._reviver is None or self._reviver.done():
            self._reviver = asyncio.ensure_future(self._revive())

    async def _revive(self) -> None:
        while self.unresponsive:
            await asyncio.sleep(REVIVE_S)
            stubs = self.stubs()
            for i in list(self.unresponsive):
                try:
                    await stubs[i].Status(spb.StatusRequest(), timeout=STATUS_TIMEOUT_S)
                except grpc.aio.AioRpcError as err:
                    if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                        continue  # still silent; a refused connection is a restart: try it again
                self.unresponsive.discard(i)
                log.info("shard %s: replica %d answers again", self.name, i)
