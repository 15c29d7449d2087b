"""etcd Lease service."""
from __future__ import annotations

import asyncio
import time

from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.etcdserverpb import rpc_pb2_grpc as rpc

from .handlers import etcd_unary
from .wire import Malformed


async def _pump(request_iterator, queue: asyncio.Queue) -> None:
    """Move a stream's requests into a queue; None marks its end."""
    try:
        async for req in request_iterator:
            queue.put_nowait(req)
    except Exception:  # the client went away: same as the end of the stream
        pass
    queue.put_nowait(None)


class LeaseService(rpc.LeaseServicer):
    def __init__(self, shard):
        self.shard = shard
        self.streams: set[asyncio.Queue] = set()

    @etcd_unary
    async def LeaseGrant(self, request: pb.LeaseGrantRequest, context) -> pb.LeaseGrantResponse:
        lease_id, ttl = await self.shard.lease_grant(request.ID, request.TTL)
        resp = pb.LeaseGrantResponse(ID=lease_id, TTL=ttl)
        self.shard.state.fill(resp.header)
        return resp

    @etcd_unary
    async def LeaseRevoke(self, request: pb.LeaseRevokeRequest, context) -> pb.LeaseRevokeResponse:
        rev = await self.shard.lease_revoke(request.ID)
        resp = pb.LeaseRevokeResponse()
        self.shard.state.fill(resp.header, rev)
        return resp

    async def LeaseKeepAlive(self, request_iterator, context):
        """Renew on every request; the stream ends when the client ends it or on shutdown."""
        requests: asyncio.Queue = asyncio.Queue()
        self.streams.add(requests)
        reader = asyncio.create_task(_pump(request_iterator, requests))
        try:
            while (req := await requests.get()) is not None:
                if isinstance(req, Malformed):  # etcd ends the stream with INTERNAL
                    await context.abort(req.error.code, req.error.message)
                ttl = self.shard.lease_renew(req.ID)
                resp = pb.LeaseKeepAliveResponse(ID=req.ID, TTL=ttl)
                self.shard.state.fill(resp.header)
                yield resp
        finally:
            reader.cancel()
            self.streams.discard(requests)

    def close_all(self) -> None:
        for requests in list(self.streams):
            requests.put_nowait(None)

    @etcd_unary
    async def LeaseTimeToLive(self, request: pb.LeaseTimeToLiveRequest, context) -> pb.LeaseTimeToLiveResponse:
        lease = self.shard.leases.get(request.ID)
        resp = pb.LeaseTimeToLiveResponse(ID=request.ID)
        if lease is None:
            resp.TTL = -1
        else:
            resp.TTL = lease.remaining(time.monotonic())
            resp.grantedTTL = lease.ttl
            if request.keys:
                resp.keys.extend(await self.shard.lease_keys(request.ID))
        self.shard.state.fill(resp.header)
        return resp

    @etcd_unary
    async def LeaseLeases(self, request: pb.LeaseLeasesRequest, context) -> pb.LeaseLeasesResponse:
        by_expiry = sorted(self.shard.leases.live.values(), key=lambda l: l.deadline)  # etcd's order
        resp = pb.LeaseLeasesResponse(leases=[pb.LeaseStatus(ID=l.id) for l in by_expiry])
        self.shard.state.fill(resp.header)
        return resp
