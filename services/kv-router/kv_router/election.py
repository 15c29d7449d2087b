"""etcd's Election service (v3electionpb.Election): etcd's concurrency.Election on the router's
KV (kv_router.concurrency says how).

A leadership is a LeaderKey (name, key, create revision, lease): Proclaim and Resign act only
while the key still has that create revision. Observe streams the leader's key-value, then each
new value it proclaims, then the next leader's, until the client goes away.
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing

import grpc
from grpc import StatusCode

from kubefabric.etcd import errors
from kubefabric.etcd.errors import EtcdError
from kubefabric.etcd.keyrange import KeyRange, prefix_end
from kubefabric.logs import causes
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.mvccpb.kv_pb2 import Event, KeyValue
from kubefabric.proto.v3electionpb import v3election_pb2 as epb
from kubefabric.proto.v3electionpb import v3election_pb2_grpc as erpc
from kubefabric.rpc.handlers import etcd_unary
from kubefabric.rpc.wire import Malformed

from .concurrency import Recipe, client_errors, created_rev_is, first_created

NOT_LEADER = EtcdError(StatusCode.UNKNOWN, "election: not leader")
NO_LEADER = EtcdError(StatusCode.UNKNOWN, "election: no leader")
log = logging.getLogger("kubefabric.router.election")

MISSING_LEADER_KEY = EtcdError(StatusCode.UNKNOWN, '"leader" field must be provided')


class ElectionService(erpc.ElectionServicer):
    def __init__(self, recipe: Recipe) -> None:
        self.c = recipe
        self.observers: set[asyncio.Task] = set()  # Observe streams: close_all ends them
        self.closing = False

    @etcd_unary
    @client_errors
    async def Campaign(self, request: epb.CampaignRequest, context) -> epb.CampaignResponse:
        prefix, key, lease, resp = await self.c.join_queue(context, request.name, request.lease,
                                                           request.value)
        rev = resp.header.revision
        if not resp.succeeded:  # this lease campaigns already: its candidacy goes on
            kv = resp.responses[0].response_range.kvs[0]
            rev = kv.create_revision
            if kv.value != request.value:
                try:
                    await self._proclaim(context, key, rev, lease, request.value)
                except Exception:
                    await self._resign(context, key, rev)
                    raise
        try:
            await self.c.wait_deletes(context, prefix, rev - 1)
        except asyncio.CancelledError:  # the caller gave up: etcd resigns for it
            self.c.cleanup(f"resign {key!r}", self._resign(context, key, rev))
            raise
        # the header of the candidacy's txn, as etcd answers (not that of a later wait)
        return epb.CampaignResponse(header=resp.header, leader=epb.LeaderKey(
            name=request.name, key=key, rev=rev, lease=lease))

    @etcd_unary
    @client_errors
    async def Proclaim(self, request: epb.ProclaimRequest, context) -> epb.ProclaimResponse:
        leader, lease = await self._leader(request, context)
        header = await self._proclaim(context, leader.key, leader.rev, lease, request.value)
        return epb.ProclaimResponse(header=header)

    @etcd_unary
    @client_errors
    async def Resign(self, request: epb.ResignRequest, context) -> epb.ResignResponse:
        leader, _ = await self._leader(request, context)  # etcd opens a session here too
        header = await self._resign(context, leader.key, leader.rev)
        return epb.ResignResponse(header=header)

    async def _leader(self, request, context) -> tuple[epb.LeaderKey, int]:
        """A Proclaim's or Resign's leader key, and its session's lease (etcd opens a session)."""
        if not request.HasField("leader"):
            raise MISSING_LEADER_KEY
        return request.leader, await self.c.session_lease(context, request.leader.lease)

    @etcd_unary
    @client_errors
    async def Leader(self, request: epb.LeaderRequest, context) -> epb.LeaderResponse:
        resp = await self.c.range(context, first_created(request.name + b"/"))
        if not resp.kvs:
            raise NO_LEADER
        return epb.LeaderResponse(header=resp.header, kv=resp.kvs[0])

    async def Observe(self, request: epb.LeaderRequest, context):
        """etcd's Election.Observe: the stream ends, without an error, when a read fails."""
        if isinstance(request, Malformed):
            await context.abort(request.error.code, request.error.message)
        prefix = request.name + b"/"
        task = asyncio.current_task()
        self.observers.add(task)
        try:
            while True:
                resp = await self.c.range(context, first_created(prefix))
                if resp.kvs:
                    header, kv = resp.header, resp.kvs[0]
                else:
                    header, kv = await self._first_candidate(prefix, resp.header.revision)
                yield epb.LeaderResponse(header=header, kv=kv)
                # closed here, not when collected: the stream may be cancelled at a yield
                async with aclosing(self._leader_values(kv.key, header.revision + 1)) as values:
                    async for rev, kv in values:
                        yield epb.LeaderResponse(header=self.c.header(rev), kv=kv)
        except EtcdError:
            return
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # a shard that cannot answer: etcd ends the stream the same way
            log.warning("Observe of %r ended: %s", request.name, causes(exc))
            return
        except asyncio.CancelledError:
            if self.closing:  # shutdown: the client re-observes elsewhere
                await context.abort(errors.STOPPING.code, errors.STOPPING.message)
            raise
        finally:
            self.observers.discard(task)

    def close_all(self) -> None:
        self.closing = True
        for task in list(self.observers):
            task.cancel()

    # ---- steps ----

    async def _proclaim(self, context, key: bytes, rev: int, lease: int,
                        value: bytes) -> pb.ResponseHeader:
        resp = await self.c.txn(context, pb.TxnRequest(
            compare=[created_rev_is(key, rev)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=value, lease=lease))]))
        if not resp.succeeded:
            raise NOT_LEADER
        return resp.header

    async def _resign(self, context, key: bytes, rev: int) -> pb.ResponseHeader:
        resp = await self.c.txn(context, pb.TxnRequest(
            compare=[created_rev_is(key, rev)],
            success=[pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key))]))
        return resp.header

    async def _first_candidate(self, prefix: bytes, rev: int) -> tuple[pb.ResponseHeader, KeyValue]:
        """The first key put under prefix from revision rev on (no candidate yet at rev)."""
        rng = KeyRange.of(prefix, prefix_end(prefix))
        async with aclosing(self.c.watch.events(rng, rev)) as batches:
            async for _, events in batches:
                for ev in events:
                    if ev.type == Event.PUT:
                        return self.c.header(ev.kv.mod_revision), ev.kv
        raise EtcdError(StatusCode.UNAVAILABLE, "kubefabric: the watch ended")

    async def _leader_values(self, key: bytes, rev: int):
        """The leader key's new values from rev on, until it is deleted."""
        async with aclosing(self.c.watch.events(KeyRange.of(key, b""), rev)) as batches:
            async for batch_rev, events in batches:
                for ev in events:
                    if ev.type == Event.DELETE:
                        return
                    yield batch_rev, ev.kv
