"""etcd's concurrency recipe on the router's own KV and leases, for the Lock and Election services.

etcd serves v3lock and v3election with its client library (clientv3/concurrency) over an
in-process client that carries the caller's credentials; these are the same steps on the
router's shard surface, with the caller's permissions checked on every KV step (AuthGuard, as
the KV service checks them):

- a contender owns the key <name>/<lease in hex>, created with its lease in a txn that compares
  the key's create revision with 0 (an existing key of the same lease is taken over as is);
- the owner is the key under <name>/ with the lowest create revision; the others wait for the
  deletion of every key under the prefix created before theirs (`wait_deletes`), one at a time,
  newest first, each wait a watch (kv_router.keywatch), never a poll.

Errors reach the client as etcd's in-process client returns them: gRPC code UNKNOWN with the
message of the underlying error (`client_errors`), which etcd clients match on (e.g. the Rust
etcd-client refreshes its token on UNKNOWN "etcdserver: invalid auth token").
"""
from __future__ import annotations

import asyncio
import functools
import logging
from contextlib import aclosing
from typing import NamedTuple

from grpc import StatusCode

from kubefabric.etcd import errors
from kubefabric.etcd.checks import check_delete
from kubefabric.etcd.errors import EtcdError
from kubefabric.etcd.keyrange import KeyRange, prefix_end
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.mvccpb.kv_pb2 import Event
from kubefabric.shard.surface import ShardSurface

from .authguard import AuthGuard
from .keywatch import KeyWatch
from .kv import RAFT_ENVELOPE_BYTES

log = logging.getLogger("kubefabric.router.concurrency")

SESSION_TTL_S = 60  # the lease etcd's session grants when the request names none (lease 0)


def client_errors(method):
    """etcd's answer for an error of an underlying KV or lease call: UNKNOWN, same message.
    A server that is stopping keeps its UNAVAILABLE (clients retry elsewhere)."""
    @functools.wraps(method)
    async def wrapper(self, request, context):
        try:
            return await method(self, request, context)
        except EtcdError as err:
            if err.code in (StatusCode.UNKNOWN, StatusCode.UNAVAILABLE):
                raise
            raise EtcdError(StatusCode.UNKNOWN, err.message) from None
    return wrapper


def owner_key(prefix: bytes, lease: int) -> bytes:
    """<prefix><lease in lower-case hex>, as Go's %x prints an int64 lease ID."""
    return prefix + format(lease, "x").encode()


def first_created(prefix: bytes) -> pb.RangeRequest:
    """clientv3.WithFirstCreate: the key under prefix with the lowest create revision."""
    return pb.RangeRequest(key=prefix, range_end=prefix_end(prefix), limit=1,
                           sort_order=pb.RangeRequest.ASCEND, sort_target=pb.RangeRequest.CREATE)


def created_rev_is(key: bytes, rev: int) -> pb.Compare:
    return pb.Compare(key=key, target=pb.Compare.CREATE, result=pb.Compare.EQUAL, create_revision=rev)


class Queued(NamedTuple):
    prefix: bytes             # <name>/
    key: bytes                # <name>/<lease hex>: this session's place in the queue
    lease: int
    resp: pb.TxnResponse      # the joining txn's (succeeded: the key was created by it)


class Recipe:
    """The KV, lease and watch steps both services are made of, checked as the caller."""

    def __init__(self, shard: ShardSurface, auth: AuthGuard, watch: KeyWatch,
                 max_request_bytes: int) -> None:
        self.shard = shard
        self.auth = auth
        self.watch = watch
        self.max_request_bytes = max_request_bytes
        self.waits: set[asyncio.Task] = set()  # waits in progress: close_all ends them
        self.stopped: set[asyncio.Task] = set()  # waits close_all ended
        self.closing = False  # the server is stopping: no new wait starts
        self.cleanups: set[asyncio.Task] = set()  # deletions after a cancelled call

    # ---- KV and lease steps ----

    async def session_lease(self, context, lease: int) -> int:
        """etcd's concurrency.NewSession: the request's lease, or with 0 a new lease of 60 s
        (never kept alive: the server orphans the session)."""
        if lease != 0:
            return lease
        self.auth.require(context)
        lease_id, _ = await self.shard.lease_grant(0, SESSION_TTL_S)
        return lease_id

    async def txn(self, context, req: pb.TxnRequest) -> pb.TxnResponse:
        if req.ByteSize() + RAFT_ENVELOPE_BYTES > self.max_request_bytes:
            raise errors.REQUEST_TOO_LARGE
        await self.auth.check_txn(context, req)
        return await self.shard.txn(req)

    async def range(self, context, req: pb.RangeRequest) -> pb.RangeResponse:
        self.auth.check_range(context, req)
        return await self.shard.range(req)

    async def delete(self, context, key: bytes) -> pb.DeleteRangeResponse:
        req = pb.DeleteRangeRequest(key=key)
        check_delete(req)
        self.auth.check_delete(context, req)
        return await self.shard.delete_range(req)

    async def join_queue(self, context, name: bytes, lease: int, value: bytes = b"",
                         also: pb.RequestOp | None = None) -> Queued:
        """The first step of a Lock and of a Campaign: the session's lease, and its key under
        <name>/ created with that lease unless it exists already (a session that queues keeps
        its place: the failure branch reads the key). `also` runs in both branches, last."""
        lease = await self.session_lease(context, lease)
        prefix = name + b"/"
        key = owner_key(prefix, lease)
        extra = [also] if also is not None else []
        resp = await self.txn(context, pb.TxnRequest(
            compare=[created_rev_is(key, 0)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=value, lease=lease)), *extra],
            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key)), *extra]))
        return Queued(prefix, key, lease, resp)

    def header(self, revision: int) -> pb.ResponseHeader:
        hdr = pb.ResponseHeader()
        self.shard.state.fill(hdr, revision)
        return hdr

    # ---- waits ----

    async def wait_delete(self, key: bytes, rev: int) -> None:
        """Until `key` (present at revision rev) is deleted."""
        async with aclosing(self.watch.events(KeyRange.of(key, b""), rev)) as batches:
            async for _, events in batches:
                if any(ev.type == Event.DELETE for ev in events):
                    return

    async def wait_deletes(self, context, prefix: bytes, max_create_rev: int) -> None:
        """Until no key under prefix has a create revision <= max_create_rev: wait for the
        newest such key's deletion, then look again (etcd's waitDeletes)."""
        req = pb.RangeRequest(key=prefix, range_end=prefix_end(prefix), limit=1,
                              sort_order=pb.RangeRequest.DESCEND, sort_target=pb.RangeRequest.CREATE,
                              max_create_revision=max_create_rev)
        while True:
            resp = await self.range(context, req)
            if not resp.kvs:
                return
            await self.waiting(self.wait_delete(resp.kvs[0].key, resp.header.revision))

    async def waiting(self, work):
        """Run a wait so that close_all (shutdown) can end it with etcd's 'server stopped'."""
        if self.closing:
            work.close()
            raise errors.STOPPING
        task = asyncio.ensure_future(work)
        self.waits.add(task)
        try:
            return await task
        except asyncio.CancelledError:
            task.cancel()
            if task in self.stopped:
                raise errors.STOPPING from None
            raise
        finally:
            self.waits.discard(task)
            self.stopped.discard(task)

    def close_all(self) -> None:
        self.closing = True
        for task in list(self.waits):
            self.stopped.add(task)
            task.cancel()

    def cleanup(self, what: str, work) -> None:
        """Run `work` after the caller's call was cancelled (etcd deletes the contender's key
        then), without holding up the cancellation; a failure is logged, not raised."""
        async def run():
            try:
                await work
            except Exception as exc:
                log.info("%s after a cancelled call failed: %s", what, exc)
        task = asyncio.get_running_loop().create_task(run(), name=what)
        self.cleanups.add(task)
        task.add_done_callback(self.cleanups.discard)
