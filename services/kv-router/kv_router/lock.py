"""etcd's Lock service (v3lockpb.Lock): etcd's concurrency.Mutex on the router's KV
(kv_router.concurrency says how).

Lock returns once the caller's key <name>/<lease hex> has the lowest create revision under
<name>/; while it waits, a client that goes away (or whose deadline passes) has its key deleted,
as etcd's server does, so the next contender is not held up by it until the lease expires.
"""
from __future__ import annotations

import asyncio

from grpc import StatusCode

from kubefabric.etcd.errors import EtcdError
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.v3lockpb import v3lock_pb2 as lpb
from kubefabric.proto.v3lockpb import v3lock_pb2_grpc as lrpc
from kubefabric.rpc.handlers import etcd_unary

from .concurrency import Recipe, client_errors, first_created

SESSION_EXPIRED = EtcdError(StatusCode.UNKNOWN, "mutex: session is expired")


class LockService(lrpc.LockServicer):
    def __init__(self, recipe: Recipe) -> None:
        self.c = recipe

    @etcd_unary
    @client_errors
    async def Lock(self, request: lpb.LockRequest, context) -> lpb.LockResponse:
        owner = pb.RequestOp(request_range=first_created(request.name + b"/"))
        prefix, key, _, resp = await self.c.join_queue(context, request.name, request.lease, also=owner)
        my_rev = resp.header.revision
        if not resp.succeeded:  # the lease's key exists already: it contends as it is
            my_rev = resp.responses[0].response_range.kvs[0].create_revision
        holder = resp.responses[1].response_range.kvs
        if not holder or holder[0].create_revision == my_rev:
            return lpb.LockResponse(header=resp.header, key=key)
        try:
            await self.c.wait_deletes(context, prefix, my_rev - 1)
            got = await self.c.range(context, pb.RangeRequest(key=key))
        except (asyncio.CancelledError, Exception):
            # etcd's Mutex.Lock unlocks on a failed wait (the caller gone included)
            self.c.cleanup(f"unlock {key!r}", self.c.delete(context, key))
            raise
        if not got.kvs:  # the key went with its lease while waiting
            raise SESSION_EXPIRED
        return lpb.LockResponse(header=got.header, key=key)

    @etcd_unary
    @client_errors
    async def Unlock(self, request: lpb.UnlockRequest, context) -> lpb.UnlockResponse:
        resp = await self.c.delete(context, request.key)
        return lpb.UnlockResponse(header=resp.header)
