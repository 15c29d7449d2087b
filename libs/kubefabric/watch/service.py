"""etcd Watch service: a bidirectional stream per client, served from a WatcherRegistry (in
kv-router without --watch-hub, in watch-hub otherwise).

Limits: a client connection (one TCP connection, known by its peer address) holds at most
`max_streams_per_connection` Watch streams at once; one more is refused with RESOURCE_EXHAUSTED
and a sentence naming the flag (etcd's clients end that watch with the error; they do not retry
it). Watchers per stream are limited by WatchStream.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Callable

import grpc

from kubefabric.etcd import errors
from kubefabric.etcd.errors import EtcdError
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.etcdserverpb import rpc_pb2_grpc as rpc
from kubefabric.watch.stream import DEFAULT_MAX_WATCHERS, WatchStream

from kubefabric.rpc.wire import Malformed

log = logging.getLogger("kubefabric.watch")

# (grpc context, WatchCreateRequest) -> the reason etcd refuses the watch with, or None (kv-router's
# auth checks)
Authorize = Callable[[Any, pb.WatchCreateRequest], str | None]

DEFAULT_MAX_STREAMS_PER_CONNECTION = 10_000


def too_many_streams(limit: int) -> str:
    return (f"kubefabric: too many watch streams on this connection: the limit is {limit} "
            "(--max-watch-streams-per-connection); put more watchers on one stream or open "
            "another connection")


async def responses(out, taken, context):
    """A watch stream's queued responses, in order, until None. A Malformed request ends the
    call with etcd's INTERNAL, an EtcdError with its own status, any other exception with
    UNAVAILABLE; taken(resp) as each one leaves."""
    while True:
        resp = await out.get()
        if resp is None:
            return
        if isinstance(resp, Malformed):  # etcd ends the stream with INTERNAL
            await context.abort(resp.error.code, resp.error.message)
        if isinstance(resp, EtcdError):
            await context.abort(resp.code, resp.message)
        if isinstance(resp, BaseException):
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(resp))
        taken(resp)
        yield resp


class StreamsPerPeer:
    """Open watch streams per client connection (known by its peer address), limited."""

    def __init__(self, limit: int):
        self.limit = limit
        self.open: dict[str, int] = {}  # no entry for 0

    async def admit(self, context) -> str:
        """Count a new stream of the caller's connection, or end the call: one too many."""
        peer = context.peer()
        if self.open.get(peer, 0) >= self.limit:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, too_many_streams(self.limit))
        self.open[peer] = self.open.get(peer, 0) + 1
        return peer

    def release(self, peer: str) -> None:
        left = self.open.pop(peer) - 1
        if left:
            self.open[peer] = left

    @contextlib.contextmanager
    def serving(self, peer: str, streams: set, stream, reader: asyncio.Task):
        """While a Watch call serves `stream` (admitted for `peer`), it is among `streams` (for
        close_all); when the call ends its request `reader` is cancelled, the stream closed and
        the peer's count released."""
        streams.add(stream)
        try:
            yield
        finally:
            reader.cancel()
            stream.close()
            streams.discard(stream)
            self.release(peer)


class WatchService(rpc.WatchServicer):
    def __init__(self, registry, fill_header, max_response_bytes: int, buffer_budget: int,
                 max_watchers_per_stream: int = DEFAULT_MAX_WATCHERS,
                 max_streams_per_connection: int = DEFAULT_MAX_STREAMS_PER_CONNECTION,
                 trust_known: bool = False):
        self.buffer_budget = buffer_budget
        self.registry = registry
        self.fill = fill_header
        self.max_bytes = max_response_bytes
        self.max_watchers = max_watchers_per_stream
        self.trust_known = trust_known  # see WatchStream
        self.streams: set[WatchStream] = set()
        self.per_peer = StreamsPerPeer(max_streams_per_connection)
        self.authorize: Authorize | None = None

    async def Watch(self, request_iterator, context):
        peer = await self.per_peer.admit(context)
        stream = WatchStream(self.registry, self.fill, self.max_bytes, self.buffer_budget,
                             self.max_watchers, self.trust_known)
        reader = asyncio.create_task(self._read(request_iterator, stream, context))
        with self.per_peer.serving(peer, self.streams, stream, reader):
            async for resp in responses(stream.out, stream.taken, context):
                yield resp

    async def _read(self, request_iterator, stream: WatchStream, context=None) -> None:
        try:
            async for req in request_iterator:
                if isinstance(req, Malformed):
                    stream.out.put_nowait(req)
                    return
                await stream.room.wait()  # backpressure: the client reads its responses first
                if self.authorize is not None and req.WhichOneof("request_union") == "create_request":
                    refusal = self.authorize(context, req.create_request)
                    if refusal is not None:
                        stream.refuse(refusal)
                        continue
                await stream.handle(req)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("watch stream ended: %s", exc)
        # the client half-closed: etcd keeps sending until the client goes away

    def close_all(self) -> None:
        """End every stream as etcd's do when it stops (graceful shutdown): after the responses
        already queued, with UNAVAILABLE "etcdserver: server stopped". etcd's clients (clientv3,
        etcdctl watch, kube-apiserver) retry UNAVAILABLE and re-watch from their last revision;
        a stream that ended with OK would count as finished and never come back."""
        for stream in list(self.streams):
            stream.out.put_nowait(errors.STOPPING)
