"""The Shard API's Writes stream, both ends: Put, DeleteRange and Txn of one caller multiplexed
on one gRPC stream instead of a unary call each (a unary call costs both ends about as much CPU
as a whole request's handling; a message on an open stream much less).

Invariants:
- Each request runs as soon as it is read, concurrently with the others, so concurrent writes
  share the writer's batches (group commit) as unary calls do; each answer carries its request's
  id and goes out as its write completes.
- An answer is either the write's response or its error (gRPC code and message, etcd's for
  etcd's errors): one write's failure never ends the stream.
- Client side: a write whose request could not be sent was not applied (the caller may send it
  another way); once sent, a write whose stream breaks before its answer has an unknown outcome
  and fails with etcd's "request timed out, possibly due to previous leader failure"
  (UNAVAILABLE), as a write abandoned at a failed leader does.
"""
from __future__ import annotations

import asyncio
import itertools
import logging

import grpc

from kubefabric.etcd import errors
from kubefabric.etcd.errors import EtcdError
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb

from .replicas import LEADER_FAILED

log = logging.getLogger("kubefabric.shard.writes")

# WriteRequest.op and the unary requests' etcd field = the Shard method of that name
KV_WRITE_RESPONSES = {"put": spb.PutResponse, "delete_range": spb.DeleteRangeResponse,
                      "txn": spb.TxnResponse}


async def apply_kv_write(shard, field: str, request):
    """A Shard API write request (spb.PutRequest, ...) applied on `shard`, the leader: its etcd
    message in `field` goes to the shard method of that name, the answer comes back in the
    response's `field` with the shard's committed revision."""
    resp = await getattr(shard, field)(getattr(request, field), request.clock.sync_rev)
    return KV_WRITE_RESPONSES[field](**{field: resp}, committed_rev=shard.state.committed)


async def serve(node, requests, ending: asyncio.Event | None = None):
    """The server side: answers (WriteResponse) to the stream's requests, in completion order,
    until the caller half-closes, or `ending` is set (the server stops: no further request is
    read), and every write read has been answered."""
    answers: asyncio.Queue = asyncio.Queue()
    running: set[asyncio.Task] = set()

    async def one(req: spb.WriteRequest) -> None:
        field = req.WhichOneof("op")
        try:
            if field not in KV_WRITE_RESPONSES:
                raise EtcdError(grpc.StatusCode.INVALID_ARGUMENT, "kubefabric: a write with no operation")
            shard = node.local()
            if not shard.is_leader:
                raise errors.NOT_LEADER
            resp = await apply_kv_write(shard, field, getattr(req, field))
            answer = spb.WriteResponse(id=req.id)
            result = getattr(answer, field)
            result.SetInParent()  # the oneof is set even for an all-default response
            result.CopyFrom(resp)
        except EtcdError as err:
            answer = spb.WriteResponse(id=req.id, code=err.code.value[0], message=err.message)
        except Exception as exc:  # a bug or a storage failure: this write fails, the stream goes on
            log.exception("Writes: a %s failed", field)
            answer = spb.WriteResponse(id=req.id, code=grpc.StatusCode.INTERNAL.value[0],
                                       message=f"kubefabric: write failed: {exc}")
        answers.put_nowait(answer)

    async def read() -> None:
        try:
            try:
                async for req in requests:
                    task = asyncio.create_task(one(req))
                    running.add(task)
                    task.add_done_callback(running.discard)
            except asyncio.CancelledError:
                if ending is None or not ending.is_set():
                    raise   # the caller is gone
                # the server stops (end()): no further request is read
            if running:
                await asyncio.wait(set(running))
        finally:
            answers.put_nowait(None)   # after every answer of the writes read

    async def end(event: asyncio.Event) -> None:
        await event.wait()
        reading.cancel()

    reading = asyncio.create_task(read())
    ender = asyncio.create_task(end(ending)) if ending is not None else None
    try:
        while (answer := await answers.get()) is not None:
            yield answer
    finally:
        reading.cancel()  # the caller is gone; writes already running finish on their own
        if ender is not None:
            ender.cancel()


_CODES = {code.value[0]: code for code in grpc.StatusCode}


class WriteStream:
    """The client side, over `stub()` (a Shard stub): `await write("put", spb.PutRequest(...))`
    gives the spb.PutResponse or raises its EtcdError. The stream opens on first use (or by
    `open()`, which also waits for the server's handler to answer) and again after it broke."""

    def __init__(self, stub, name: str):
        self.stub = stub
        self.name = name
        self._call = None
        self._waiting: dict[int, asyncio.Future] = {}  # of the open stream: id -> its answer
        self._reader: asyncio.Task | None = None
        self._ids = itertools.count(1)
        self._send = asyncio.Lock()  # one write on the stream at a time (grpc's rule)

    class NotSent(Exception):
        """The request could not be sent: it was not applied."""

    @property
    def is_open(self) -> bool:
        """A stream is open (not broken, not closed, not half-closed by finish())."""
        return self._call is not None

    async def open(self, timeout: float) -> None:
        """Opens the stream and waits for the server's initial metadata, which its handler sends
        first: a write sent afterwards reaches a running handler. Raises grpc.aio.AioRpcError,
        TimeoutError or ConnectionError (the stream ended at once); it is then closed."""
        call, _ = self._open()
        try:
            async with asyncio.timeout(timeout):
                await call.initial_metadata()
            if call.done():
                raise ConnectionError(f"the Writes stream to {self.name} ended as it opened")
        except BaseException:
            self._broken(call)
            raise

    async def send(self, field: str, request, reopen: bool = True) -> asyncio.Future:
        """Sends one write; the future of its answer: the Shard API response, its EtcdError, or
        LEADER_FAILED when the stream breaks first. NotSent: not sent, so not applied (also when
        the stream is not open and `reopen` is False). A caller that stops waiting cancels the
        future."""
        rid = next(self._ids)
        answer = asyncio.get_running_loop().create_future()
        async with self._send:
            if not reopen and self._call is None:
                raise WriteStream.NotSent("the stream is not open")
            call, waiting = self._open()
            waiting[rid] = answer
            answer.add_done_callback(lambda _: waiting.pop(rid, None))
            try:
                await call.write(spb.WriteRequest(id=rid, **{field: request}))
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as err:
                answer.cancel()
                self._broken(call)
                raise WriteStream.NotSent(str(err)) from None
            except BaseException:
                answer.cancel()
                raise
        return answer

    async def write(self, field: str, request):
        answer = await self.send(field, request)
        try:
            return await answer
        finally:
            answer.cancel()  # a no-op once answered

    def _open(self):
        if self._call is None:
            self._call, self._waiting = self.stub().Writes(), {}
            self._reader = asyncio.create_task(self._read(self._call, self._waiting),
                                               name=f"writes-{self.name}")
        return self._call, self._waiting

    def _broken(self, call) -> None:
        if self._call is call and call is not None:
            self._call = None
            call.cancel()

    async def _read(self, call, waiting: dict[int, asyncio.Future]) -> None:
        try:
            while (msg := await call.read()) is not grpc.aio.EOF:
                answer = waiting.get(msg.id)
                if answer is None or answer.done():
                    continue
                if msg.code:
                    answer.set_exception(errors.from_status(_CODES[msg.code], msg.message))
                else:
                    answer.set_result(getattr(msg, msg.WhichOneof("result")))
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as err:
            log.info("shard %s: the Writes stream ended: %s", self.name, err.details() or err.code().name)
        finally:
            self._broken(call)
            for answer in list(waiting.values()):  # sent on this stream, unanswered: outcome unknown
                if not answer.done():
                    answer.set_exception(LEADER_FAILED)

    async def finish(self) -> None:
        """Half-closes the stream: no new writes on it; those sent are still answered (the
        server ends the stream once it answered them all)."""
        async with self._send:
            call, self._call = self._call, None
            if call is None:
                return
            try:
                await call.done_writing()
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
                call.cancel()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        self._broken(self._call)
