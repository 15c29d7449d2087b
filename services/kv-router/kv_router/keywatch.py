"""Watches kv-router keeps for itself: the Lock and Election services wait on them (a key's
deletion, an election's next leader) the way etcd's concurrency recipes wait on a client watch.

`KeyWatch.events(rng, start_rev)` yields (revision, events) for every committed txn at or after
start_rev that touches rng, oldest first, until the caller stops iterating (use it inside
`contextlib.aclosing`, or let the calling task be cancelled): the watcher is then gone, so a
client that gives up leaves nothing behind. Two transports, one behaviour:

- RegistryWatch: a watcher on the router's own WatcherRegistry (embedded, --shard, --topology
  without watch-hubs), replaying history from start_rev like any etcd watcher;
- HubWatch: a Watch stream on a watch-hub (--watch-hub), moved to another hub when it breaks,
  from the next revision not yet seen.

A watcher that cannot go on (its start revision compacted, the hubs gone) raises EtcdError.
"""
from __future__ import annotations

import asyncio
import logging
from typing import AsyncGenerator, Protocol

import grpc
from grpc import StatusCode

from kubefabric.etcd import errors
from kubefabric.etcd.errors import EtcdError
from kubefabric.etcd.keyrange import KeyRange
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.mvccpb.kv_pb2 import Event
from kubefabric.watch.registry import Watcher, WatcherRegistry

from .watchproxy import HUB_LOST_S  # no hub that long ends the wait with UNAVAILABLE, as a watch

log = logging.getLogger("kubefabric.router.keywatch")

Batch = tuple[int, list[Event]]


class KeyWatch(Protocol):
    def events(self, rng: KeyRange, start_rev: int) -> AsyncGenerator[Batch, None]: ...


class _Inbox:
    """The stream end of an in-process watcher: what the registry hands it, in a queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()

    def send_events(self, w: Watcher, revision: int, events: list, trace=None) -> None:
        self.queue.put_nowait((revision, list(events)))

    def send_progress(self, w: Watcher, revision: int) -> None:
        pass  # progress_notify is never asked for

    def cancel_compacted(self, w: Watcher, compact_rev: int) -> None:
        self.queue.put_nowait(errors.COMPACTED)

    def cancel_with_reason(self, w: Watcher, reason: str) -> None:
        self.queue.put_nowait(EtcdError(StatusCode.UNAVAILABLE, reason))

    def on_synced(self) -> None:
        pass


class RegistryWatch:
    def __init__(self, registry: WatcherRegistry) -> None:
        self.registry = registry

    async def events(self, rng: KeyRange, start_rev: int) -> AsyncGenerator[Batch, None]:
        inbox = _Inbox()
        w = Watcher(0, inbox, rng, pb.WatchCreateRequest())
        try:
            await self.registry.add(w, start_rev, self.registry.head)
            while True:
                item = await inbox.queue.get()
                if isinstance(item, EtcdError):
                    raise item
                yield item
        finally:
            self.registry.remove(w)


class HubWatch:
    def __init__(self, proxy) -> None:
        """proxy: the router's WatchProxy (its hubs, and the newest acknowledged revision)."""
        self.proxy = proxy

    async def events(self, rng: KeyRange, start_rev: int) -> AsyncGenerator[Batch, None]:
        loop = asyncio.get_running_loop()
        next_rev = start_rev
        lost_since: float | None = None
        while True:
            # KeyRange's end: None for one key, b"" for every key from start (etcd's "\0")
            end = b"" if rng.end is None else (rng.end or b"\x00")
            create = pb.WatchCreateRequest(key=rng.start, range_end=end, start_revision=next_rev,
                                           kubefabric_known_revision=self.proxy.state.committed)
            call = self.proxy.hub_stub().Watch()
            try:
                await call.write(pb.WatchRequest(create_request=create))
                async for resp in call:
                    lost_since = None
                    if resp.compact_revision:
                        raise errors.COMPACTED
                    if resp.canceled:
                        raise EtcdError(StatusCode.UNAVAILABLE, resp.cancel_reason or
                                        "kubefabric: the watch-hub canceled the watch")
                    if resp.events:
                        next_rev = resp.events[-1].kv.mod_revision + 1
                        yield resp.header.revision, list(resp.events)
                reason = "the hub ended the stream"
            except grpc.aio.AioRpcError as err:
                if err.code() not in (StatusCode.UNAVAILABLE, StatusCode.CANCELLED,
                                      StatusCode.INTERNAL, StatusCode.UNKNOWN):
                    raise EtcdError(err.code(), err.details() or "watch-hub error") from None
                reason = f"{err.code().name}: {err.details()}"
            finally:
                call.cancel()
            now = loop.time()
            if lost_since is None:
                lost_since = now
                log.info("a lock/election wait lost its watch-hub stream (%s); moving it", reason)
            elif now - lost_since > HUB_LOST_S:
                raise EtcdError(StatusCode.UNAVAILABLE, "etcdserver: no watch-hub reachable")
            await asyncio.sleep(0.1)
