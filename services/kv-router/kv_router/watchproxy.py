"""etcd Watch streams served by watch-hubs (`serve --watch-hub`): each client stream is relayed
to one hub stream, and moved to another hub (or the same, restarted) when it breaks.

Invariants:
- Responses reach the client in the hub's order; the proxy reads the hub only as fast as the
  client reads (bounded queue), so a slow client makes the hub cancel its watchers with a
  reason (the hub's buffer budget) instead of growing this process.
- Per watcher the proxy knows the next revision the client has not seen (after the last event
  or progress notification). When a hub stream breaks, every watcher is created again on a new
  stream with its own watch ID and that start revision; the new created responses are swallowed.
  The client sees one uninterrupted stream: no gap, no repeat (resumable, DESIGN §5).
- Creates and progress requests carry kubefabric_known_revision, the newest revision this
  router acknowledged: "now" for the hub is at least that (a client that wrote, then watched,
  does not see its write as new; a watch from an acknowledged revision replays it from history,
  batched like etcd), and a progress answer is never below it.
- fragment=true is done here, at this router's request limit: the hub is asked for whole
  responses, so one setting decides the split.
- No hub for HUB_LOST_S: the client stream ends with UNAVAILABLE (etcd clients re-watch).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque

import grpc

from kubefabric.etcd import errors
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.etcdserverpb import rpc_pb2_grpc as rpc
from kubefabric.rpc.channel import open_channel, parse_endpoints
from kubefabric.rpc.wire import Malformed
from kubefabric.watch.service import (DEFAULT_MAX_STREAMS_PER_CONNECTION, Authorize, StreamsPerPeer,
                                      responses)
from kubefabric.watch.stream import split_fragments

log = logging.getLogger("kubefabric.router.watchproxy")

HUB_LOST_S = 15.0
OUT_BUDGET_BYTES = 4 * 1024 * 1024  # responses relayed ahead of the client (at least one)


class HubLost(Exception):
    pass


class Tracked:
    """A watcher the client holds, as the proxy must re-create it."""
    __slots__ = ("request", "next_rev", "fragment")

    def __init__(self, request: pb.WatchCreateRequest, next_rev: int, fragment: bool):
        self.request = request    # as sent to the hub
        self.next_rev = next_rev  # the first revision the client has not seen
        self.fragment = fragment  # the client asked for fragmented responses


class WatchProxy(rpc.WatchServicer):
    def __init__(self, endpoints: str, state, max_response_bytes: int,
                 max_streams_per_connection: int = DEFAULT_MAX_STREAMS_PER_CONNECTION):
        """state: the router's shard state (committed: the newest acknowledged revision);
        max_response_bytes: where fragment=true splits a response."""
        self.max_bytes = max_response_bytes
        self.endpoints = parse_endpoints(endpoints)
        self.channels = [open_channel(e) for e in self.endpoints]
        self.stubs = [rpc.WatchStub(c) for c in self.channels]
        self._next = itertools.cycle(range(len(self.stubs)))
        self.state = state
        self.streams: set[ProxiedStream] = set()
        self.per_peer = StreamsPerPeer(max_streams_per_connection)
        self.authorize: Authorize | None = None  # refusal reason or None

    def hub_stub(self):
        return self.stubs[next(self._next)]

    async def Watch(self, request_iterator, context):
        peer = await self.per_peer.admit(context)
        stream = ProxiedStream(self)
        stream.context = context
        task = asyncio.create_task(stream.run(request_iterator))
        with self.per_peer.serving(peer, self.streams, stream, task):
            async for resp in responses(stream.out, stream.out.taken, context):
                yield resp

    def close_all(self) -> None:
        """Graceful shutdown: every client stream ends with UNAVAILABLE, as etcd's do (see
        WatchService.close_all), so clients re-watch on another router or this one restarted."""
        for stream in list(self.streams):
            stream.out.put_nowait(errors.STOPPING)

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


class ProxiedStream:
    def __init__(self, proxy: WatchProxy):
        self.proxy = proxy
        self.out = BoundedQueue(OUT_BUDGET_BYTES)
        self.watchers: dict[int, Tracked] = {}  # what the metrics sampler counts
        # creates sent and not answered yet: (request as sent, replayed, client asked fragment)
        self.pending: deque[tuple[pb.WatchCreateRequest, bool, bool]] = deque()
        self.progress_known = 0  # a progress request is pending, to be answered at or above it
        self.call: grpc.aio.StreamStreamCall | None = None
        self.requests: asyncio.Queue = asyncio.Queue()  # for the current hub call
        self.closed = False
        self.context = None  # the client's call (its credentials, for the auth checks)

    def close(self) -> None:
        self.closed = True
        if self.call is not None:
            self.call.cancel()

    # ---- the client's requests ----

    async def run(self, request_iterator) -> None:
        reader = asyncio.create_task(self._read(request_iterator))
        try:
            await self._relay()
        except Exception as exc:
            await self.out.put(exc)
        finally:
            reader.cancel()

    async def _read(self, request_iterator) -> None:
        async for req in request_iterator:
            if isinstance(req, Malformed):
                await self.out.put(req)
                return
            kind = req.WhichOneof("request_union")
            known = self.proxy.state.committed
            if kind == "create_request" and self.proxy.authorize is not None:
                refusal = self.proxy.authorize(self.context, req.create_request)
                if refusal is not None:  # etcd: created and canceled, watch id -1
                    resp = pb.WatchResponse(watch_id=-1, created=True, canceled=True,
                                            cancel_reason=refusal)
                    self.proxy.state.fill(resp.header)
                    await self.out.put(resp)
                    continue
            if kind == "create_request":
                create = pb.WatchCreateRequest()
                create.CopyFrom(req.create_request)
                create.kubefabric_known_revision = known
                create.fragment = False
                self.pending.append((create, False, req.create_request.fragment))
                req = pb.WatchRequest(create_request=create)
            elif kind == "cancel_request":
                self.watchers.pop(req.cancel_request.watch_id, None)
            elif kind == "progress_request":
                self.progress_known = max(self.progress_known, known)
                req = pb.WatchRequest(progress_request=pb.WatchProgressRequest(
                    kubefabric_known_revision=known))
            self.requests.put_nowait(req)

    # ---- the hub's responses ----

    async def _relay(self) -> None:
        loop = asyncio.get_running_loop()
        lost_since = None
        first = True
        while not self.closed:
            requests = self.requests if first else self._replay_requests()
            # requests are written by a pump task that lives exactly as long as this hub call
            # (a request iterator handed to grpc would leave its consumer task blocked on the
            # queue of a call that is gone, one per move)
            self.call = self.proxy.hub_stub().Watch()
            pump = asyncio.create_task(_pump(requests, self.call), name="watch-proxy-pump")
            try:
                async for resp in self.call:
                    lost_since = None
                    await self._on_response(resp)
                if self.closed:
                    return
                raise HubLost("the hub ended the stream")
            except (grpc.aio.AioRpcError, HubLost) as err:
                if self.closed:
                    return
                if isinstance(err, grpc.aio.AioRpcError) and err.code() not in (
                        grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                        grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                    raise RuntimeError(err.details()) from None
                if lost_since is None:
                    lost_since = loop.time()
                    log.info("watch stream: hub stream broke (%s); moving %d watchers to another "
                             "hub", _details(err), len(self.watchers))
                elif loop.time() - lost_since > HUB_LOST_S:
                    log.warning("watch stream: no watch-hub reachable for %.0fs; ending the stream",
                                HUB_LOST_S)
                    raise RuntimeError("etcdserver: no watch-hub reachable; re-watch") from None
                first = False
                await asyncio.sleep(0.1)
            finally:
                self.call.cancel()
                await _stopped(pump)

    def _replay_requests(self) -> asyncio.Queue:
        """A new hub stream: every watcher again from its next revision, unanswered creates as
        they were, a pending progress request; later client requests follow on the same queue."""
        old, self.requests = self.requests, asyncio.Queue()
        unanswered = [(create, fragment) for create, replayed, fragment in self.pending if not replayed]
        self.pending.clear()
        for wid in sorted(self.watchers):  # 0 first: a hub picks 0 for watch_id 0 on a new stream
            tracked = self.watchers[wid]
            create = pb.WatchCreateRequest()
            create.CopyFrom(tracked.request)
            create.watch_id = wid
            create.start_revision = tracked.next_rev
            self.pending.append((create, True, tracked.fragment))
            self.requests.put_nowait(pb.WatchRequest(create_request=create))
        for create, fragment in unanswered:
            self.pending.append((create, False, fragment))
            self.requests.put_nowait(pb.WatchRequest(create_request=create))
        while not old.empty():  # client requests not sent yet: creates are in `unanswered`
            req = old.get_nowait()
            if req.WhichOneof("request_union") != "create_request":
                self.requests.put_nowait(req)
        if self.progress_known:
            self.requests.put_nowait(pb.WatchRequest(progress_request=pb.WatchProgressRequest(
                kubefabric_known_revision=self.progress_known)))
        return self.requests

    async def _on_response(self, resp: pb.WatchResponse) -> None:
        if resp.created:
            create, replayed, fragment = self.pending.popleft() if self.pending else (None, False, False)
            if resp.watch_id >= 0 and not resp.canceled and create is not None and not replayed:
                start = create.start_revision if create.start_revision > 0 else resp.header.revision + 1
                self.watchers[resp.watch_id] = Tracked(create, start, fragment)
            if replayed:
                if resp.canceled:  # refused on the new hub (a limit): say so to the client
                    self.watchers.pop(create.watch_id, None)
                    await self.out.put(pb.WatchResponse(header=resp.header, watch_id=create.watch_id,
                                                        canceled=True, cancel_reason=resp.cancel_reason))
                return
        elif resp.canceled or resp.compact_revision or (not resp.events and not resp.header.revision):
            # a cancel, or a compaction answer (etcd leaves canceled unset for compact_revision
            # 0, with header revision 0): the watcher is gone either way
            self.watchers.pop(resp.watch_id, None)
        elif resp.watch_id == -1 and not resp.events:
            self.progress_known = 0
        else:
            tracked = self.watchers.get(resp.watch_id)
            if tracked is not None:
                if (not resp.events and resp.header.revision < tracked.next_rev
                        and resp.header.revision < self.proxy.state.committed):
                    # a periodic notification the hub sent before it heard of a newer revision
                    # this router acknowledged: no news for the client, and older than etcd's
                    return
                rev = resp.events[-1].kv.mod_revision if resp.events else resp.header.revision
                tracked.next_rev = max(tracked.next_rev, rev + 1)
                if tracked.fragment and len(resp.events) > 1 and resp.ByteSize() >= self.proxy.max_bytes:
                    for frag in split_fragments(resp, self.proxy.max_bytes):
                        await self.out.put(frag)
                    return
        await self.out.put(resp)


class BoundedQueue:
    """A FIFO whose put() waits while more than `budget` bytes of responses are queued."""

    def __init__(self, budget: int):
        self.budget = budget
        self.bytes = 0
        self.items: deque = deque()
        self.room = asyncio.Event()
        self.room.set()
        self.ready = asyncio.Event()

    async def put(self, item) -> None:
        await self.room.wait()
        self.put_nowait(item)

    def put_nowait(self, item) -> None:
        if isinstance(item, pb.WatchResponse):
            self.bytes += item.ByteSize()
            if self.bytes > self.budget:
                self.room.clear()
        self.items.append(item)
        self.ready.set()

    async def get(self):
        while not self.items:
            self.ready.clear()
            await self.ready.wait()
        return self.items.popleft()

    def taken(self, item) -> None:
        self.bytes -= item.ByteSize()
        if self.bytes <= self.budget:
            self.room.set()


async def _pump(queue: asyncio.Queue, call) -> None:
    """Write the queued requests to a hub call until it ends (or the task is cancelled)."""
    while True:
        req = await queue.get()
        try:
            await call.write(req)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
            return  # the call is over: _relay sees why and replays on the next one


async def _stopped(task: asyncio.Task) -> None:
    """Cancel `task` and wait until it is done, without swallowing our own cancellation."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled() and task.exception() is not None:
        log.debug("watch stream: request pump ended: %s", task.exception())


def _details(err: BaseException) -> str:
    if isinstance(err, grpc.aio.AioRpcError):
        return f"{err.code().name}: {err.details()}"
    return str(err)
