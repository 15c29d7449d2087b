"""Requests of one caller multiplexed on one gRPC stream of the Shard API (Writes, WriteBatches,
ReadBatches) instead of a unary call each: a unary call costs both ends about as much CPU as a
whole request's handling, a message on an open stream much less. Both ends, and the client's
stream lifecycle.

The messages of such a stream: a request has an `id` and a oneof `op` whose field names the
operation; its answer has the same `id` and either the oneof `result` in the same field, or a
gRPC status `code` and `message` (etcd's, for etcd's errors).

Invariants:
- Server: each request runs as soon as it is read, concurrently with the others (concurrent
  writes share the writer's batches as unary calls do); each answer goes out as its request
  completes. One request's failure never ends the stream. When the caller half-closes, or
  `ending` is set (the server stops: no further request is read), the stream ends once every
  request read has been answered.
- Client: a request that could not be sent was not applied (NotSent: the caller may send it
  another way); once sent, its answer is whatever the server says, or, when the stream breaks
  first, the stream kind's `lost` outcome.
- Coalesced streams (a stream kind with `batch`/`answers`, e.g. WriteBatches): the requests
  waiting to be sent go out in one message, the answers ready together come back in one. Each
  request and answer is handled exactly as on a stream of single messages: a message is only a
  carrier (a message per request each way cost each end a completion-queue operation and a
  poller wake-up per request). The next message is written once fewer than MAX_IN_FLIGHT
  messages sent in the last HOLD_S wait for an answer: grpc.aio hands a server about one
  request per event-loop turn, so writing at once sent messages of ~1.07 requests; waiting for
  the answers in flight lets the requests that arrive meanwhile share the next message. A lone
  request (nothing in flight) goes at once; a slow request holds the others back HOLD_S at most.
  When the stream has room again and fewer than GATHER_BELOW requests wait, the next message
  waits one event-loop turn more: the requests whose I/O has arrived meanwhile join it.
  A message carries requests up to MESSAGE_BYTES (one larger request goes alone): the server
  refuses a message over its limit (the shard service's --max-request-bytes, 1.5 MiB by
  default), which would fail every request in it.
"""
from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from time import perf_counter
from typing import Any, Callable

import grpc

from kubefabric.etcd.errors import EtcdError
from kubefabric.telemetry import metrics
from kubefabric.telemetry.interceptors import GO_CODE

log = logging.getLogger("kubefabric.shard.mux")

CODES = {code.value[0]: code for code in grpc.StatusCode}


def rpc_error(code: grpc.StatusCode, message: str) -> grpc.aio.AioRpcError:
    """A stream's failure (of one request, or of the stream itself) as its unary call would have
    raised it."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=message)


NO_OPERATION = EtcdError(grpc.StatusCode.INVALID_ARGUMENT, "kubefabric: a request with no operation")


async def serve(requests, run, response, failure, ending: asyncio.Event | None = None,
                coalesced: tuple[Callable, Callable] | None = None):
    """The server side: answers (`response` messages) to the stream's `requests`, in completion
    order. `run(field, op)`: the result of one request's operation (raises on failure);
    `failure(exc)`: the EtcdError an exception from it answers (the unary handler's mapping).
    coalesced = (requests_of, message_of): each message read carries `requests_of(msg)`, and
    the answers ready together go out as one `message_of(answers)`."""
    answers: asyncio.Queue = asyncio.Queue()
    running: set[asyncio.Task] = set()

    async def one(req) -> None:
        field = req.WhichOneof("op")
        try:
            if field is None:
                raise NO_OPERATION
            resp = await run(field, getattr(req, field))
            answer = response(id=req.id)
            result = getattr(answer, field)
            result.SetInParent()  # the oneof is set even for an all-default result
            result.CopyFrom(resp)
        except Exception as exc:  # this request fails, the stream goes on
            err = failure(exc)
            answer = response(id=req.id, code=err.code.value[0], message=err.message)
        answers.put_nowait(answer)

    async def read() -> None:
        try:
            try:
                async for msg in requests:
                    for req in (requests_of(msg) if requests_of else (msg,)):
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
            answers.put_nowait(None)   # after every answer of the requests read

    async def end(event: asyncio.Event) -> None:
        await event.wait()
        reading.cancel()

    requests_of, message_of = coalesced or (None, None)
    reading = asyncio.create_task(read())
    ender = asyncio.create_task(end(ending)) if ending is not None else None
    try:
        while (answer := await answers.get()) is not None:
            if message_of is None:
                yield answer
                continue
            ready, last = [answer], False
            while not answers.empty():
                if (more := answers.get_nowait()) is None:
                    last = True
                    break
                ready.append(more)
            yield message_of(ready)
            if last:
                break
    finally:
        reading.cancel()  # the caller is gone; requests already running finish on their own
        if ender is not None:
            ender.cancel()


class MuxStream:
    """The client side of one stream over `stub()` (a Shard stub). A subclass names the stream
    method (METHOD), builds its request message (`request`) and settles an answer's future from
    its message (`settle`) or, when the stream broke first, with its outcome (`lost`). The stream
    opens on first use (or by `open()`, which also waits for the server's handler to answer)
    and again after it broke."""

    METHOD = ""
    COALESCED = False  # requests go out in `batch` messages, answers come in `answers` ones
    # COALESCED: send() returns once the request is written (NotSent raised there); False: as
    # soon as it is queued, its answer failing with NotSent if it could not be written (the
    # caller's task is then woken once per request, by its answer, instead of twice)
    AWAIT_SENT = True
    MAX_IN_FLIGHT = 1   # COALESCED: messages waiting for an answer before the next one waits
    HOLD_S = 0.002      # COALESCED: a message unanswered this long no longer holds the next
    MESSAGE_BYTES = 1 << 20  # COALESCED: requests that share a message, at most this much
    # COALESCED: fewer requests than this waiting when the stream has room again wait one more
    # event-loop turn for those whose I/O is already there (routed gets: ~10 % less CPU)
    GATHER_BELOW = 3

    def __init__(self, stub, name: str):
        self.stub = stub
        self.name = name
        self._call = None
        self._waiting: dict[int, asyncio.Future] = {}  # of the open stream: id -> its answer
        self._reader: asyncio.Task | None = None
        self._ids = itertools.count(1)
        self._send = asyncio.Lock()  # one message on the stream at a time (grpc's rule)
        # COALESCED: the open stream's requests waiting for the next message (request, sent),
        # and the task writing them
        self._outbox: list[tuple[Any, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None
        # COALESCED: the open stream's messages in flight
        self._flight = _Flight(self.HOLD_S, self.MAX_IN_FLIGHT)

    class NotSent(Exception):
        """The request could not be sent: it was not applied."""

    def request(self, rid: int, field: str, op):
        raise NotImplementedError

    def settle(self, answer: asyncio.Future, msg) -> None:
        raise NotImplementedError

    def lost(self, answer: asyncio.Future) -> None:
        raise NotImplementedError

    def batch(self, requests: list):
        """COALESCED: the message carrying `requests`."""
        raise NotImplementedError

    def answers(self, msg) -> list:
        """COALESCED: the answers a message read carries."""
        raise NotImplementedError

    @property
    def is_open(self) -> bool:
        """A stream is open (not broken, not closed, not half-closed by finish())."""
        return self._call is not None

    async def open(self, timeout: float) -> None:
        """Opens the stream and waits for the server's initial metadata, which its handler sends
        first: a request sent afterwards reaches a running handler. Raises grpc.aio.AioRpcError,
        TimeoutError or ConnectionError (the stream ended at once); it is then closed."""
        call, _ = self._open()
        try:
            async with asyncio.timeout(timeout):
                await call.initial_metadata()
            if call.done():
                raise ConnectionError(f"the {self.METHOD} stream to {self.name} ended as it opened")
        except BaseException:
            self._broken(call)
            raise

    async def send(self, field: str, op, reopen: bool = True) -> asyncio.Future:
        """Sends one request; the future of its answer. NotSent: not sent, so not applied (also
        when the stream is not open and `reopen` is False). A caller that stops waiting cancels
        the future."""
        rid = next(self._ids)
        answer = asyncio.get_running_loop().create_future()
        if self.COALESCED:
            return await self._send_coalesced(rid, field, op, reopen, answer)
        async with self._send:
            if not reopen and self._call is None:
                raise MuxStream.NotSent("the stream is not open")
            call, waiting = self._open()
            waiting[rid] = answer
            answer.add_done_callback(lambda _: waiting.pop(rid, None))
            try:
                await call.write(self.request(rid, field, op))
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as err:
                answer.cancel()
                self._broken(call)
                raise MuxStream.NotSent(str(err)) from None
            except BaseException:
                answer.cancel()
                raise
        return answer

    async def _send_coalesced(self, rid: int, field: str, op, reopen: bool, answer: asyncio.Future):
        if not reopen and self._call is None:
            raise MuxStream.NotSent("the stream is not open")
        call, waiting = self._open()
        waiting[rid] = answer
        answer.add_done_callback(lambda _: waiting.pop(rid, None))
        sent = asyncio.get_running_loop().create_future()
        self._outbox.append((self.request(rid, field, op), sent))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(call, self._outbox))
        if not self.AWAIT_SENT:
            sent.add_done_callback(functools.partial(_unsent, answer))
            return answer
        try:
            await sent
        except BaseException:
            answer.cancel()
            raise
        return answer

    async def _flush(self, call, outbox: list) -> None:
        """Writes `outbox` (the requests of `call`, which grows meanwhile) until it is empty,
        all that waits in one message; settles each request's `sent`. Runs as a task of its own:
        a caller that stops waiting never interrupts a message that carries other requests."""
        failed = None
        flight: list = []
        messages = self._flight
        try:
            async with self._send:
                while outbox:
                    if messages.full:
                        await messages.room()
                        if len(outbox) < self.GATHER_BELOW:
                            await _io_turn()
                    flight = _first(outbox, self.MESSAGE_BYTES)
                    del outbox[:len(flight)]
                    messages.sent([req.id for req, _ in flight])
                    try:
                        await call.write(self.batch([req for req, _ in flight]))
                    except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as err:
                        self._broken(call)
                        failed = MuxStream.NotSent(str(err))
                        outbox[:0], flight = flight, []
                        break
                    for _, sent in flight:
                        if not sent.done():
                            sent.set_result(None)
                    flight = []
        finally:
            for _, sent in flight:  # cancelled while being written: perhaps sent, the answer
                if not sent.done():  # tells (the stream's `lost` outcome once it is closed)
                    sent.set_result(None)
            if self._outbox is outbox:
                self._flusher = None
            for _, sent in outbox:  # never written (a broken stream, close())
                if not sent.done():
                    sent.set_exception(failed or MuxStream.NotSent("the stream closed"))
            del outbox[:]

    def _open(self):
        if self._call is None:
            # a flusher and reader of a broken stream keep their own outbox and flight
            self._outbox, self._flusher = [], None
            self._flight = _Flight(self.HOLD_S, self.MAX_IN_FLIGHT)
            self._call, self._waiting = getattr(self.stub(), self.METHOD)(), {}
            self._reader = asyncio.create_task(self._read(self._call, self._waiting, self._flight),
                                               name=f"{self.METHOD.lower()}-{self.name}")
        return self._call, self._waiting

    def _broken(self, call) -> None:
        if self._call is call and call is not None:
            self._call = None
            call.cancel()

    async def _read(self, call, waiting: dict[int, asyncio.Future], messages: _Flight) -> None:
        try:
            while (msg := await call.read()) is not grpc.aio.EOF:
                for one in (self.answers(msg) if self.COALESCED else (msg,)):
                    answer = waiting.get(one.id)
                    if answer is not None and not answer.done():
                        self.settle(answer, one)
                if self.COALESCED:
                    messages.answered(self.answers(msg))
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as err:
            log.info("shard %s: the %s stream ended: %s", self.name, self.METHOD,
                     err.details() or err.code().name)
        finally:
            self._broken(call)
            messages.clear()
            for answer in list(waiting.values()):  # sent on this stream, unanswered
                if not answer.done():
                    self.lost(answer)

    async def finish(self) -> None:
        """Half-closes the stream: no new requests on it; those sent are still answered (the
        server ends the stream once it answered them all)."""
        if self._flusher is not None:  # what waits to be sent goes first
            await asyncio.shield(self._flusher)
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
        if self._flusher is not None:
            self._flusher.cancel()
        self._broken(self._call)


async def _io_turn() -> None:
    """Returns after one event-loop turn that polled for I/O (a 0 s timer, on uvloop as on
    asyncio; asyncio.sleep(0) does not poll, asyncio.sleep(1e-4) waits a whole millisecond)."""
    loop = asyncio.get_running_loop()
    turned = loop.create_future()
    loop.call_later(0, _settle_none, turned)
    await turned


def _settle_none(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class _Flight:
    """A coalesced stream's messages that hold the next one back: sent less than `hold_s` ago
    and not wholly answered (a request whose caller stopped waiting included: the server still
    answers it)."""

    def __init__(self, hold_s: float, limit: int) -> None:
        self.hold_s = hold_s
        self.limit = limit  # messages holding the next one back: the next waits
        self.holding = 0
        # request id -> its message's [requests unanswered (0: released), release timer]
        self._message_of: dict[int, list] = {}
        self._room: asyncio.Future | None = None

    def sent(self, ids: list[int]) -> None:
        message: list = [len(ids), None]
        message[1] = asyncio.get_running_loop().call_later(self.hold_s, self._release, message)
        for rid in ids:
            self._message_of[rid] = message
        self.holding += 1

    @property
    def full(self) -> bool:
        return self.holding >= self.limit

    def answered(self, answers) -> None:
        for one in answers:
            message = self._message_of.pop(one.id, None)
            if message is not None and message[0] > 0:
                message[0] -= 1
                if message[0] == 0:
                    message[1].cancel()
                    self.holding -= 1
        if not self.full:
            self._wake()

    def _release(self, message: list) -> None:
        """`message` held the next one back `hold_s`: no longer."""
        if message[0] > 0:
            message[0] = 0
            self.holding -= 1
            self._wake()

    def clear(self) -> None:
        """The stream ended: nothing more will be answered."""
        for message in self._message_of.values():
            message[0] = 0
            message[1].cancel()
        self._message_of.clear()
        self.holding = 0
        self._wake()

    async def room(self) -> None:
        """Returns once fewer than `limit` messages hold the next one back."""
        while self.full:
            self._room = asyncio.get_running_loop().create_future()
            try:
                await self._room
            finally:
                self._room = None

    def _wake(self) -> None:
        if self._room is not None and not self._room.done():
            self._room.set_result(None)


def _first(outbox: list, limit: int) -> list:
    """The first requests of `outbox` (request, sent) that fit `limit` bytes; at least one."""
    size = 0
    for n, (req, _) in enumerate(outbox):
        size += req.ByteSize()
        if size > limit and n:
            return outbox[:n]
    return outbox[:]


def _unsent(answer: asyncio.Future, sent: asyncio.Future) -> None:
    """AWAIT_SENT False: a request that could not be written fails its answer with NotSent."""
    if sent.exception() is not None and not answer.done():
        answer.set_exception(sent.exception())


class StreamSlot:
    """The stream a router keeps to one replica (`kind(stub, name)`, a MuxStream), whose stub
    may change (another leader, channels replaced by a TLS reload).

    `ready(target, stub)` gives the stream only while one is open to that very stub; otherwise
    None, and a stream to it is opened in the background (at most one attempt per `reopen_s`;
    open: the server's handler answered its initial metadata). A stream replaced by another is
    half-closed: what it carries is still answered; it is cut after `retire_s`."""

    def __init__(self, kind, name: str, reopen_s: float, open_timeout_s: float, retire_s: float,
                 lane_of: Callable | None = None):
        """lane_of(target, stub): awaitable of the replica's batch lane (a lane.LaneStub the
        stream then uses instead of `stub`), or None (the stream goes on gRPC)."""
        self.kind = kind
        self.lane_of = lane_of
        self.name = name              # the shard's, for logs and stream names
        self.reopen_s, self.open_timeout_s, self.retire_s = reopen_s, open_timeout_s, retire_s
        self.stream: MuxStream | None = None   # open or opening, to `stub`
        self.stub = None
        self._open_task: asyncio.Task | None = None
        self._next_open = 0.0
        self._retired: set[MuxStream] = set()

    def ready(self, target: int, stub) -> MuxStream | None:
        stream = self.stream
        if stream is not None and self.stub is stub and stream.is_open:
            return stream
        self._reopen(target, stub)
        return None

    def drop(self, stream: MuxStream) -> None:
        """`stream` is given up: every request still waiting on it gets its `lost` outcome."""
        if self.stream is stream:
            self.stream = None
        stream.close()

    def _reopen(self, target: int, stub) -> None:
        if self._open_task is not None:
            return
        now = asyncio.get_running_loop().time()
        if self.stub is stub and now < self._next_open:
            return
        self._next_open = now + self.reopen_s
        old, self.stream, self.stub = self.stream, None, stub
        if old is not None and old.is_open:
            self._retire(old)
        self._open_task = asyncio.ensure_future(self._open(target, stub))

    async def _open(self, target: int, stub) -> None:
        try:
            lane = await self.lane_of(target, stub) if self.lane_of is not None else None
        except BaseException:
            self._open_task = None
            raise
        stream = self.kind(lambda: lane or stub, f"{self.name}/{target}")
        what = (f"shard {self.name}: {stream.METHOD} stream to replica {target}"
                f"{f' on its lane {lane.address}' if lane else ''}")
        try:
            await stream.open(self.open_timeout_s)
        except (grpc.aio.AioRpcError, TimeoutError, ConnectionError) as err:
            detail = err.details() if isinstance(err, grpc.aio.AioRpcError) else str(err)
            log.debug("%s: not open yet (%s); unary calls meanwhile", what,
                      detail or type(err).__name__)
            stream.close()
            return
        except Exception:  # a bug: say so, calls go unary
            log.exception("%s: opening failed", what)
            stream.close()
            return
        except BaseException:
            stream.close()
            raise
        finally:
            self._open_task = None
        if self.stub is stub:
            self.stream = stream
            log.debug("%s: open", what)
        else:
            stream.close()

    def _retire(self, stream: MuxStream) -> None:
        self._retired.add(stream)

        async def retire() -> None:
            try:
                await stream.finish()
                await asyncio.sleep(self.retire_s)
            finally:
                stream.close()
                self._retired.discard(stream)
        asyncio.ensure_future(retire())

    def close(self) -> None:
        if self._open_task is not None:
            self._open_task.cancel()
        for stream in [self.stream, *self._retired]:
            if stream is not None:
                stream.close()
        self.stream = None


class CallCounts:
    """The router's per-shard call metrics (kubefabric_router_shard_request*, which unary calls
    count in too) for requests sent on a stream, by Shard API method name."""

    def __init__(self, shard: str):
        self.shard = shard
        self._counters: dict = {}

    def count(self, method: str, code: grpc.StatusCode, started: float) -> None:
        key = (method, code)
        counters = self._counters.get(key)
        if counters is None:
            counters = self._counters[key] = (
                metrics.router_shard_requests.labels(self.shard, method, GO_CODE[code]),
                metrics.router_shard_request_seconds.labels(self.shard, method))
        counters[0].inc()
        counters[1].observe(perf_counter() - started)
