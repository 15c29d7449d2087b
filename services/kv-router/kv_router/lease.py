"""etcd Lease service."""
from __future__ import annotations

import asyncio

from kubefabric.etcd.errors import EtcdError
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.etcdserverpb import rpc_pb2_grpc as rpc

from kubefabric.rpc.handlers import etcd_unary
from kubefabric.rpc.wire import Malformed
from kubefabric.shard.surface import ShardSurface

from .authguard import AuthGuard


async def _pump(request_iterator, queue: asyncio.Queue) -> None:
    """Move a stream's requests into a queue; None marks its end."""
    try:
        async for req in request_iterator:
            queue.put_nowait(req)
    except Exception:  # the client went away: same as the end of the stream
        pass
    queue.put_nowait(None)


class LeaseService(rpc.LeaseServicer):
    def __init__(self, shard: ShardSurface, auth: AuthGuard) -> None:
        self.shard = shard
        self.auth = auth  # AuthGuard
        self.streams: set[asyncio.Queue] = set()

    @etcd_unary
    async def LeaseGrant(self, request: pb.LeaseGrantRequest, context) -> pb.LeaseGrantResponse:
        self.auth.require(context)
        lease_id, ttl = await self.shard.lease_grant(request.ID, request.TTL)
        resp = pb.LeaseGrantResponse(ID=lease_id, TTL=ttl)
        self.shard.state.fill(resp.header)
        return resp

    @etcd_unary
    async def LeaseRevoke(self, request: pb.LeaseRevokeRequest, context) -> pb.LeaseRevokeResponse:
        await self.auth.check_lease_revoke(context, request.ID)
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
                try:
                    await self.auth.check_lease_renew(context, req.ID)
                except EtcdError as err:  # etcd ends the stream with the auth error
                    await context.abort(err.code, err.message)
                ttl = await self.shard.lease_renew(req.ID)
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
        await self.auth.check_lease_ttl(context, request)
        ttl, granted, keys = await self.shard.lease_time_to_live(request.ID, request.keys)
        resp = pb.LeaseTimeToLiveResponse(ID=request.ID, TTL=ttl, grantedTTL=granted, keys=keys)
        self.shard.state.fill(resp.header)
        return resp

    @etcd_unary
    async def LeaseLeases(self, request: pb.LeaseLeasesRequest, context) -> pb.LeaseLeasesResponse:
        ids = await self.shard.lease_list()
        await self.auth.check_lease_list(context, ids)
        resp = pb.LeaseLeasesResponse(leases=[pb.LeaseStatus(ID=i) for i in ids])
        self.shard.state.fill(resp.header)
        return resp
