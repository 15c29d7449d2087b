"""A shard service's KV writes (Put, DeleteRange, Txn) from kv-router on one WriteBatches stream
to its leader (kubefabric.shardsvc.writes) instead of a unary call each: a message on an open
stream costs both ends far less CPU than a call, and the writes waiting to be sent share one.

Invariants:
- A write goes on a stream only while one is open to the stub of the replica last known as
  leader (open: the server's handler answered its initial metadata). Otherwise (no stream yet,
  one opening, broken, another leader, channels replaced by a TLS reload) `write` returns None
  and the caller sends it unary, with the unary path's leader search and retries; a stream to
  the current leader is then opened in the background, at most one attempt per REOPEN_S.
- With tracing on, every write is unary: a call carries its span's context in its metadata,
  a stream only once for all its writes.
- Once sent, a write fails as its unary call would: NOT_LEADER or SHARD_NOT_READY from the
  server mean it was not applied (returns None: the caller sends it unary); the stream breaking
  before its answer (the leader killed) gives LEADER_FAILED, outcome unknown; unanswered past
  SUSPECT_S while another replica leads (a frozen leader) gives LEADER_FAILED and drops the
  stream; unanswered for CALL_TIMEOUT_S gives DEADLINE_EXCEEDED.
- Writes of one caller keep its order: each is sent before the caller's next begins, and the
  leader applies the stream's writes in the order it reads them, as it does unary calls.
- A stream replaced by another is half-closed: the writes it carries are still answered; it is
  cut after CALL_TIMEOUT_S.
"""
from __future__ import annotations

import asyncio
import logging
from time import perf_counter

import grpc

from kubefabric.etcd import errors
from kubefabric.etcd.errors import EtcdError
from kubefabric.telemetry import tracing

from .mux import CallCounts, MuxStream, StreamSlot
from .replicas import LEADER_FAILED, SUSPECT_S
from .writes import WriteStream

log = logging.getLogger("kubefabric.shard.client")

REOPEN_S = 0.5        # at most one attempt to open a stream to the same stub this often
OPEN_TIMEOUT_S = 2.0  # a stream whose server has not answered its metadata by then is dropped
CALL_TIMEOUT_S = 60.0  # as a unary write's deadline
DEADLINE = errors.from_status(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
# the Shard API method of each write, for the metrics the unary calls also count in
METHODS = {"put": "Put", "delete_range": "DeleteRange", "txn": "Txn"}


class LeaderWrites:
    """`shard`: the RemoteShard (its `stubs`, `replicas`, `name` and `state` are read as they
    are at each write: stubs change on a TLS reload, the leader on a failover)."""

    def __init__(self, shard):
        self.shard = shard
        self.slot = StreamSlot(WriteStream, shard.name, REOPEN_S, OPEN_TIMEOUT_S, CALL_TIMEOUT_S,
                               shard.lane_of)
        self._counts = CallCounts(shard.name)

    async def write(self, field: str, request):
        """The Shard API response to `request`, or None: it was not applied, send it unary."""
        if tracing.ENABLED:
            return None
        target = self.shard.replicas.leader
        stream = self.slot.ready(target, self.shard.stubs[target])
        if stream is None:
            return None
        started = perf_counter()
        method = METHODS[field]
        try:
            answer = await stream.send(field, request, reopen=False)
        except MuxStream.NotSent:
            return None
        try:
            resp = await self._answer(answer, stream, target)
        except EtcdError as err:
            if err is errors.NOT_LEADER or err is errors.SHARD_NOT_READY:
                return None
            self._counts.count(method, err.code, started)
            raise
        except asyncio.CancelledError:
            self._counts.count(method, grpc.StatusCode.CANCELLED, started)
            raise
        finally:
            answer.cancel()  # a no-op once answered
        self._counts.count(method, grpc.StatusCode.OK, started)
        return resp

    async def _answer(self, answer: asyncio.Future, stream: MuxStream, target: int):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CALL_TIMEOUT_S
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise DEADLINE
            # with one replica no other can lead: nothing to suspect (as Replicas.write)
            wait = min(SUSPECT_S, left) if len(self.shard.stubs) > 1 else left
            done, _ = await asyncio.wait((answer,), timeout=wait)
            if done:
                return answer.result()
            if wait < SUSPECT_S:
                continue
            leader = await self.shard.replicas.probe()
            if leader is not None and leader != target:
                self.shard.state.term = max(self.shard.state.term, self.shard.replicas.term)
                log.warning("shard %s: replica %d leads now (term %d); the Writes stream to "
                            "replica %d is dropped, its writes' outcomes unknown", self.shard.name,
                            leader, self.shard.replicas.term, target)
                self.slot.drop(stream)  # every write still waiting on it: LEADER_FAILED
                raise LEADER_FAILED

    def close(self) -> None:
        self.slot.close()
