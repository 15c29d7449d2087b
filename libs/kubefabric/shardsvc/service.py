"""The Shard gRPC API (proto/kubefabric/shard/v1) over one ShardNode.

Every handler has one shape: take the local shard (UNAVAILABLE until the database is reachable
and the role known) → on a replica, forward writes to the leader unchanged → apply the caller's
sync_rev → call the core → answer with the shard's committed revision. Errors keep etcd's code
and message end to end, including those the leader returns to a forwarding replica.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import grpc

from kubefabric.auth.state import REQUESTS, to_message
from kubefabric.etcd import errors
from kubefabric.etcd.errors import EtcdError
from kubefabric.etcd.keyrange import EVERY_KEY, KeyRange
from kubefabric.logs import causes
from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2_grpc
from kubefabric.rpc.channel import status_error
from kubefabric.rpc.handlers import error_of, etcd_unary
from kubefabric.shard.history import commits_of
from kubefabric.telemetry import tracing

from . import mux, writes
from .node import ShardNode

log = logging.getLogger("kubefabric.shard.service")

FEED_HEARTBEAT_S = 0.1      # DESIGN §5: idle shards publish their closed revision
FEED_MAX_BACKLOG = 10_000   # commits queued for one slow feed before it is cut (it resumes)
FEED_MESSAGE_BYTES = 1 << 20  # queued commits merge into one Feed message up to about this size


def on_leader(method):
    """Runs `method(self, shard, request, sync_rev)` on the leader (sync_rev: the caller's clock,
    applied in the same writer batch as the request); a replica forwards the request."""
    name = method.__name__

    @functools.wraps(method)
    async def handler(self, request, context):
        shard = self.node.local()
        if not shard.is_leader:
            return await self.forward(name, request)
        clock = getattr(request, "clock", None)
        return await method(self, shard, request, clock.sync_rev if clock is not None else 0)
    return etcd_unary(handler)


def on_replica(name: str, method):
    """The unary handler `name` of a read: ShardService.read (`method` on this replica)."""
    async def handler(self, request, context):
        return await self.read(name, method, request)
    handler.__name__ = handler.__qualname__ = name
    return etcd_unary(handler)


def _kv_write(name: str, field: str):
    """The handler of a KV write (Put, DeleteRange, Txn): writes.apply_kv_write on the leader."""
    async def write(self, shard, request, sync_rev):
        return await writes.apply_kv_write(shard, field, request)
    write.__name__ = write.__qualname__ = name
    return on_leader(write)


class ShardService(shard_pb2_grpc.ShardServicer):
    def __init__(self, node: ShardNode, is_unavailable=lambda exc: False):
        """is_unavailable(exc): the store's classification of "the database cannot be reached"
        (the store class's static method), for etcd_unary's answer to clients."""
        self.node = node
        self.is_unavailable = is_unavailable
        self.feeds: set[asyncio.Queue] = set()
        # set at shutdown: every Writes, WriteBatches and ReadBatches stream stops reading,
        # answers what it runs, and ends
        self.streams_ending = asyncio.Event()
        self.lane = ""  # the batch lane's advertised address (lane.LaneServer), "" without one

    async def forward(self, name: str, request):
        try:
            return await getattr(self.node.leader_stub(), name)(request, timeout=30)
        except grpc.aio.AioRpcError as err:
            error = status_error(err)
            if error.code == grpc.StatusCode.UNAVAILABLE and error is not errors.NOT_LEADER:
                raise errors.NOT_LEADER from None  # the leader went away: nothing was applied
            raise error from None

    # ---- reads: any replica ----

    async def read(self, name: str, method, request):
        """`method(self, shard, request, sync_rev)` on this replica, a read; a request that
        carries a clock (sync_rev) is forwarded by a replica (as the unary `name`), as only the
        leader can move the clock."""
        shard = self.node.local()
        if request.clock.sync_rev and not shard.is_leader:
            return await self.forward(name, request)
        return await method(self, shard, request, request.clock.sync_rev)

    async def read_range(self, shard, request: spb.RangeRequest, sync_rev) -> spb.RangeResponse:
        resp = await shard.range(request.range, sync_rev)
        # the snapshot may hold a commit the writer's state has not caught up with yet
        return spb.RangeResponse(range=resp, committed_rev=max(shard.state.committed,
                                                                resp.header.revision))

    async def read_query(self, shard, request: spb.QueryRequest, sync_rev) -> spb.QueryResponse:
        resp = await shard.query(request.query, sync_rev)
        return spb.QueryResponse(query=resp, committed_rev=shard.state.committed)

    Range = on_replica("Range", read_range)
    Query = on_replica("Query", read_query)
    # ReadRequest.op -> the unary read it stands for
    STREAM_READS: dict[str, tuple[str, Any]] = {"range": ("Range", read_range), "query": ("Query", read_query)}

    # ReadBatches' messages, for mux.serve: the reads a message carries, the message of answers
    READS_COALESCED = (lambda msg: msg.requests, lambda answers: spb.ReadResponses(responses=answers))

    async def _stream_read(self, field: str, request):
        if field not in self.STREAM_READS:
            raise mux.NO_OPERATION
        return await self.read(*self.STREAM_READS[field], request)

    async def ReadBatches(self, request_iterator, context):
        """Range and Query on one stream with coalesced messages (kubefabric.shardsvc.mux,
        replicareads), each answered as its unary call would be."""
        async for answers in self._stream(request_iterator, context, "ReadBatches"):
            yield answers

    def stream_kind(self, name: str):
        """How the mux stream `name` is served, on gRPC and on the batch lane (lane.py):
        (request message type, run, response, failure, coalesced) for mux.serve; None for a
        name that is not one."""
        kind: tuple
        if name == "ReadBatches":
            kind = (spb.ReadRequests, self._stream_read, spb.ReadResponse, self.READS_COALESCED)
        elif name in ("WriteBatches", "Writes"):
            kind = (spb.WriteRequests if name == "WriteBatches" else spb.WriteRequest,
                    functools.partial(writes.on_leader, self.node), spb.WriteResponse,
                    writes.COALESCED if name == "WriteBatches" else None)
        else:
            return None
        request_type, run, response, coalesced = kind
        return (request_type, run, response,
                functools.partial(error_of, self, what=f"{name}: a request"), coalesced)

    async def _stream(self, request_iterator, context, name: str):
        """A mux stream's answers. The initial metadata goes out first: the caller's
        MuxStream.open() waits for it."""
        await context.send_initial_metadata(())
        _, run, response, failure, coalesced = self.stream_kind(name)
        async for answer in mux.serve(request_iterator, run, response, failure, self.streams_ending,
                                      coalesced):
            yield answer

    @etcd_unary
    async def Indexes(self, request, context):
        return qpb.IndexesResponse(indexes=await self.node.local().indexes())

    async def History(self, request: spb.HistoryRequest, context):
        try:
            shard = self.node.local()
            if not shard.leading:  # a replica: everything committed so far, not what it last saw
                async with shard.store.snapshot() as cur:
                    await shard.read_head(cur)
            rng = KeyRange.of(request.key, request.range_end)
            hi = shard.state.committed
            if request.end_rev:
                hi = min(hi, request.end_rev)
            events = await shard.history(rng, request.start_rev, hi)
        except EtcdError as err:
            await context.abort(err.code, err.message)
        except Exception as exc:
            if not self.is_unavailable(exc):
                raise
            log.warning("History failed: the database is unavailable: %s", causes(exc))
            await context.abort(errors.DB_UNAVAILABLE.code, errors.DB_UNAVAILABLE.message)
        for msg in commits_of(events):
            if not request.prev_kv:
                for ev in msg.events:
                    ev.ClearField("prev_kv")
            yield msg

    @etcd_unary
    async def Status(self, request, context) -> spb.StatusResponse:
        shard = self.node.local()
        if shard.is_leader:
            await shard.sync(request.clock.sync_rev)
        else:
            async with shard.store.snapshot() as cur:
                await shard.read_head(cur)
        resp = await shard.status()
        resp.leader = self.node.leader_address if not shard.is_leader else self.node.address
        resp.name = self.node.name
        resp.lane = self.lane
        return resp

    # ---- writes and leases: the leader ----

    Put = _kv_write("Put", "put")
    DeleteRange = _kv_write("DeleteRange", "delete_range")
    Txn = _kv_write("Txn", "txn")

    async def Writes(self, request_iterator, context):
        """Put, DeleteRange and Txn on one stream (kubefabric.shardsvc.writes)."""
        async for answer in self._stream(request_iterator, context, "Writes"):
            yield answer

    async def WriteBatches(self, request_iterator, context):
        """Writes with coalesced messages (kubefabric.shardsvc.writes)."""
        async for answer in self._stream(request_iterator, context, "WriteBatches"):
            yield answer

    @on_leader
    async def Compact(self, shard, request: spb.CompactRequest, sync_rev) -> spb.CompactResponse:
        await shard.compact(request.revision, request.physical, sync_rev=sync_rev)
        return spb.CompactResponse(committed_rev=shard.state.committed,
                                   compact_rev=shard.state.compact_rev)

    @on_leader
    async def LeaseGrant(self, shard, request: spb.LeaseGrantRequest, sync_rev) -> spb.LeaseGrantResponse:
        lease_id, ttl = await shard.lease_grant(request.id, request.ttl, sync_rev)
        return spb.LeaseGrantResponse(id=lease_id, ttl=ttl, committed_rev=shard.state.committed)

    @on_leader
    async def LeaseRevoke(self, shard, request: spb.LeaseRevokeRequest, sync_rev) -> spb.LeaseRevokeResponse:
        rev = await shard.lease_revoke(request.id, sync_rev)
        return spb.LeaseRevokeResponse(committed_rev=rev)

    @on_leader
    async def LeaseRenew(self, shard, request: spb.LeaseRenewRequest, sync_rev) -> spb.LeaseRenewResponse:
        ttl = await shard.lease_renew(request.id)
        return spb.LeaseRenewResponse(id=request.id, ttl=ttl, committed_rev=shard.state.committed)

    @on_leader
    async def LeaseTimeToLive(self, shard, request, sync_rev) -> spb.LeaseTimeToLiveResponse:
        ttl, granted, keys = await shard.lease_time_to_live(request.id, request.keys)
        return spb.LeaseTimeToLiveResponse(id=request.id, ttl=ttl, granted_ttl=granted, keys=keys,
                                           committed_rev=shard.state.committed)

    @on_leader
    async def LeaseList(self, shard, request, sync_rev) -> spb.LeaseListResponse:
        return spb.LeaseListResponse(ids=await shard.lease_list(), committed_rev=shard.state.committed)

    @on_leader
    async def Alarm(self, shard, request: spb.AlarmRequest, sync_rev) -> spb.AlarmResponse:
        return spb.AlarmResponse(alarms=await shard.alarm(request.alarm),
                                 committed_rev=shard.state.committed)

    @on_leader
    async def HashKV(self, shard, request: spb.HashKVRequest, sync_rev) -> spb.HashKVResponse:
        h, head = await shard.hash_kv(request.revision, request.crc if request.chained else None,
                                      sync_rev)
        return spb.HashKVResponse(hash=h.hash, compact_revision=h.compact_revision,
                                  hash_revision=h.revision, committed_rev=head)

    @on_leader
    async def AuthApply(self, shard, request: spb.AuthApplyRequest, sync_rev) -> spb.AuthApplyResponse:
        kind = REQUESTS.get(request.method)
        if kind is None:
            raise EtcdError(grpc.StatusCode.INVALID_ARGUMENT, f"unknown auth method {request.method!r}")
        resp, state, generation = await shard.auth_apply(
            request.method, kind.FromString(request.request),
            request.caller if request.has_caller else None)
        return spb.AuthApplyResponse(response=resp.SerializeToString(),
                                     store=to_message(state, generation))

    @on_leader
    async def AuthRead(self, shard, request: spb.AuthReadRequest, sync_rev) -> spb.AuthStore:
        current = await shard.auth_read(request.generation)
        if current is None:
            return spb.AuthStore(unchanged=True, generation=request.generation)
        return to_message(*current)

    @on_leader
    async def Defragment(self, shard, request, sync_rev) -> spb.DefragmentResponse:
        await shard.defragment()
        return spb.DefragmentResponse()

    # ---- the feed: the leader's committed txns, gap-free ----

    async def Feed(self, request: spb.FeedRequest, context):
        """History from start_rev up to the committed revision at subscription, then live
        commits (subscribed before reading history, so nothing falls between the two)."""
        try:
            shard = self.node.local()
            if not shard.is_leader:
                raise errors.NOT_LEADER
            await shard.sync(request.clock.sync_rev)
        except EtcdError as err:
            await context.abort(err.code, err.message)
        queue: asyncio.Queue = asyncio.Queue()
        listener = lambda published, committed: queue.put_nowait((published, committed))  # noqa: E731
        shard.listeners.append(listener)
        self.feeds.add(queue)
        try:
            committed = shard.state.committed
            start = request.start_rev or committed + 1
            if start <= shard.state.compact_rev:
                await context.abort(errors.COMPACTED.code, errors.COMPACTED.message)
            if start <= committed:
                for msg in commits_of(await shard.history(EVERY_KEY, start, committed)):
                    yield spb.FeedResponse(commits=[msg], committed_rev=msg.rev,
                                           compact_rev=shard.state.compact_rev)
            next_rev = max(start, committed + 1)
            yield spb.FeedResponse(committed_rev=committed, compact_rev=shard.state.compact_rev)
            ended = False
            while not ended:
                if queue.empty():  # (a timeout only when waiting: wait_for costs a task per call)
                    try:
                        async with asyncio.timeout(FEED_HEARTBEAT_S):
                            item = await queue.get()
                    except TimeoutError:
                        if shard is not self.node.shard or not shard.is_leader:
                            await context.abort(errors.NOT_LEADER.code, errors.NOT_LEADER.message)
                        yield spb.FeedResponse(committed_rev=committed, compact_rev=shard.state.compact_rev)
                        continue
                else:
                    item = queue.get_nowait()
                if item is None:
                    return
                if queue.qsize() > FEED_MAX_BACKLOG:
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                        "kubefabric: feed consumer too slow; resubscribe from its last revision")
                # the commits queued while the previous message was written go out together, in
                # revision order, up to about FEED_MESSAGE_BYTES a message
                published, committed = item
                commits = _feed_commits(published, next_rev)
                size = sum(c.ByteSize() for c in commits)
                while size < FEED_MESSAGE_BYTES and not queue.empty():
                    more = queue.get_nowait()
                    if more is None:
                        ended = True
                        break
                    published, committed = more
                    added = _feed_commits(published, next_rev)
                    size += sum(c.ByteSize() for c in added)
                    commits += added
                if commits:
                    next_rev = commits[-1].rev + 1
                yield spb.FeedResponse(commits=commits, committed_rev=committed,
                                       compact_rev=shard.state.compact_rev)
        finally:
            self.feeds.discard(queue)
            if listener in shard.listeners:
                shard.listeners.remove(listener)

    def end_streams(self) -> None:
        """At shutdown, before in-flight requests are waited for: a Writes, WriteBatches or
        ReadBatches stream is one long call, which the server's stop would otherwise wait for
        until its grace ran out. Each ends once its running requests are answered; its caller
        sends later ones unary, which the closed gate refuses as any new call (etcd's 'server
        stopped')."""
        self.streams_ending.set()

    def close_feeds(self) -> None:
        for queue in list(self.feeds):
            queue.put_nowait(None)


def _feed_commits(published, next_rev: int) -> list:
    """A listener call's commits (revision, events) at or after `next_rev`, as Feed messages'."""
    return [tracing.traced_commit(rev, events, spb.HistoryResponse)
            for rev, events in published if rev >= next_rev]
