"""A watch that survives its stream: when the connection drops, the server ends the stream or
cancels the watcher for a reason other than compaction, it is created again from the revision
after the last one it delivered, on the next endpoint if need be.

Invariants:
- `next_revision` is the first revision not yet delivered: every event below it was yielded
  exactly once, in revision order; a resumed watch starts there, so nothing is skipped and
  nothing repeats.
- A response never splits a revision (etcd cuts batches at revision boundaries, and fragmented
  responses are not requested), so after a batch the last event's revision is complete.
- A progress notification (no events, header revision R) means every event up to R was
  delivered: `next_revision` moves to R + 1.
- Compaction is never papered over: a watcher the server cancels because its start revision is
  compacted raises Compacted(compact_revision).
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field

import grpc

from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

from .connection import Connection
from .errors import ClientError, Compacted, from_rpc

log = logging.getLogger("kubefabric.client.watch")

_RETRIABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
              grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED,
              grpc.StatusCode.RESOURCE_EXHAUSTED)
LOG_EVERY_S = 30.0


@dataclass(frozen=True)
class WatchBatch:
    events: list        # mvccpb.Event, in revision order; empty for a progress notification
    revision: int       # the response header's revision
    progress: bool      # a progress notification: every event up to `revision` was delivered
    # W3C trace context headers (traceparent, tracestate) of the traced write that committed
    # these events; only with trace_context=True, and {} for untraced writes and replays
    trace: dict = field(default_factory=dict)


class Watch:
    """An async iterator of WatchBatch for [key, range_end). start_revision 0 means 'from now'
    (the revision after the created response's). Use `async with` or call close().
    trace_context: ask KubeFabric for each live txn's trace context (WatchBatch.trace; an etcd
    server ignores the request)."""

    def __init__(self, conn: Connection, key: bytes, range_end: bytes = b"", *,
                 start_revision: int = 0, prev_kv: bool = False, progress_notify: bool = False,
                 max_backoff: float = 2.0, trace_context: bool = False):
        self._conn = conn
        self.key, self.range_end = key, range_end
        self.prev_kv, self.progress_notify = prev_kv, progress_notify
        self.trace_context = trace_context
        self.next_revision = start_revision
        self.max_backoff = max_backoff
        self.reconnects = 0
        self._call: grpc.aio.StreamStreamCall | None = None
        self._closed = False
        self._failing_since = 0.0
        self._logged = 0.0

    async def __aenter__(self) -> "Watch":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def __aiter__(self):
        return self

    async def start(self) -> int:
        """Create the watcher (retrying until it exists); the first revision it will deliver."""
        if self._call is None:
            await self._connect()
        return self.next_revision

    async def _connect(self) -> None:
        delay = 0.1
        while not self._closed:
            index = self._conn.current
            call = self._conn.stub("Watch", index).Watch()
            try:
                await self._create(call)
                if self._failing_since:
                    log.info("watch %r resumed at revision %d on %s", self.key, self.next_revision,
                             self._conn.endpoints[index])
                self._failing_since = 0.0
                self._call = call
                return
            except grpc.aio.AioRpcError as err:
                call.cancel()
                if err.code() not in _RETRIABLE:
                    raise from_rpc(err, f"Watch {self.key!r}") from None
                self._note_failure(err.details() or err.code().name)
                self._conn.failover(index)
            except _Retry as err:
                call.cancel()
                self._note_failure(str(err))
            except BaseException:
                call.cancel()
                raise
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.max_backoff)
        raise ClientError(f"watch {self.key!r} is closed")

    async def _create(self, call) -> None:
        await call.write(pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=self.key, range_end=self.range_end, start_revision=self.next_revision,
            prev_kv=self.prev_kv, progress_notify=self.progress_notify,
            kubefabric_trace_context=self.trace_context)))
        while True:
            resp = await call.read()
            if resp is grpc.aio.EOF:
                raise _Retry("the server ended the watch stream before creating the watcher")
            if resp.canceled:
                self._cancelled(resp)
            if resp.created:
                if not self.next_revision:
                    self.next_revision = resp.header.revision + 1
                return

    def _cancelled(self, resp) -> None:
        if resp.compact_revision:
            raise Compacted(resp.compact_revision,
                            f"watch {self.key!r} from revision {self.next_revision}: revision "
                            f"compacted (compaction revision {resp.compact_revision})")
        raise _Retry(f"the server cancelled the watcher: {resp.cancel_reason or 'no reason given'}")

    def _note_failure(self, why: str) -> None:
        now = time.monotonic()
        self.reconnects += 1
        if not self._failing_since:
            self._failing_since = now
        if now - self._logged >= LOG_EVERY_S:
            self._logged = now
            log.warning("watch %r interrupted (%s); resuming from revision %d", self.key, why,
                        self.next_revision)

    async def __anext__(self) -> WatchBatch:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._call is None:
                await self._connect()
            try:
                resp = await self._call.read()
                if resp is grpc.aio.EOF:
                    raise _Retry("the server ended the watch stream")
                if resp.canceled:
                    self._cancelled(resp)
            except grpc.aio.AioRpcError as err:
                self._drop()
                if self._closed:
                    raise StopAsyncIteration from None
                if err.code() not in _RETRIABLE:
                    raise from_rpc(err, f"Watch {self.key!r}") from None
                self._note_failure(err.details() or err.code().name)
                self._conn.failover(self._conn.current)
                continue
            except _Retry as err:
                self._drop()
                self._note_failure(str(err))
                continue
            if resp.created:
                continue
            if resp.events:
                self.next_revision = resp.events[-1].kv.mod_revision + 1
                if resp.kubefabric_traceparent:
                    return WatchBatch(list(resp.events), resp.header.revision, False,
                                      _trace(resp.kubefabric_traceparent, resp.kubefabric_tracestate))
                return WatchBatch(list(resp.events), resp.header.revision, False)
            if resp.header.revision >= self.next_revision:
                self.next_revision = resp.header.revision + 1
            return WatchBatch([], resp.header.revision, True)

    async def request_progress(self) -> None:
        """Ask the server for a progress notification (answered once the watcher is synced)."""
        if self._call is not None:
            try:
                await self._call.write(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))
            except (grpc.aio.AioRpcError, grpc.aio.UsageError):
                pass  # the stream is going away: the next read resumes it

    def _drop(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None

    async def close(self) -> None:
        self._closed = True
        self._drop()


def _trace(traceparent: str, tracestate: str) -> dict:
    return {"traceparent": traceparent, **({"tracestate": tracestate} if tracestate else {})}


class _Retry(Exception):
    """The stream ended or the watcher was cancelled without losing anything: resume."""
