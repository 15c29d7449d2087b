"""The batch lane: a shard service's busiest streams (ReadBatches and WriteBatches, coalesced,
and the Feed of commits) as length-prefixed frames on a plain TCP or unix-socket connection
beside its gRPC port. Each message is the same protobuf message as on gRPC and is handled by the
same code (mux.serve and ShardService.Feed on the server, mux.MuxStream and RemoteShard's feed on
the client); only the carrier differs. Measured on this project's machine: a message round trip
on a grpc.aio stream costs each end ~250 µs of CPU, on the lane ~60 µs (bench/README.md, "Fifth
round").

Wire format, one stream per connection; a frame is a 4-byte big-endian length and that many
bytes:
- client -> server: HELLO + the method name ("ReadBatches", "WriteBatches" or "Feed"); then the
  serialized request messages (spb.ReadRequests, spb.WriteRequests; a Feed: one FeedRequest);
  an empty frame ends the requests (the caller's half-close).
- server -> client: an empty frame (accepted) or an error text (refused; the connection then
  closes); then the serialized answer messages; at the end a status frame, STATUS + the gRPC
  status code as one byte + its message: OK once every request read was answered, another code
  when the stream failed as a gRPC call with that status would; then the connection closes.
A request message is never empty (it carries at least one request), so the caller's end frame
is not taken for one; a serialized message never starts with a zero byte (field number 0 does
not exist), so an answer is never taken for a status frame.

Invariants:
- The client side is a drop-in for a grpc.aio stream-stream call as MuxStream uses it:
  `write`, `read` (grpc.aio.EOF at the end), `initial_metadata` (the hello's answer), `done`,
  `done_writing`, `cancel`; a broken or refused connection raises grpc.aio.AioRpcError
  (UNAVAILABLE), so MuxStream's outcomes (NotSent before writing, `lost` once sent) hold as on
  gRPC; a status frame raises it with its code and message. A connection that ends without
  the end frame is broken, never a clean end.
- The server answers exactly as the gRPC stream handlers (the ShardService's `stream_kind`, its
  Feed), ends its streams with the gRPC ones at shutdown (`streams_ending`, `close_feeds`), and
  refuses a frame over --max-request-bytes with RESOURCE_EXHAUSTED (the client's requests in
  flight: `lost`, as when a gRPC stream fails).
- TLS: a shard service with --cert-file serves its TCP lane with the Shard API's certificate
  (rotated as it is) and, with --trusted-ca-file, requires and verifies client certificates
  there too; a router with TLS towards its shards dials the lane with the same trust and client
  certificate (a unix-socket lane, the --workers one, is plaintext: only its user can reach it).
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket

import grpc
from google.protobuf.message import DecodeError

from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb

from .mux import CODES, rpc_error, serve

log = logging.getLogger("kubefabric.shard.lane")

HELLO = b"kubefabric-lane/1 "
HEADER = 4
HELLO_TIMEOUT_S = 5.0
END = b"\0\0\0\0"   # the caller's: no more requests
STATUS = b"\0"
RESPONSES = {"ReadBatches": spb.ReadResponses, "WriteBatches": spb.WriteResponses,
             "Feed": spb.FeedResponse}


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(HEADER, "big") + payload


async def read_frame(reader: asyncio.StreamReader, limit: int) -> bytes | None:
    """The next frame's payload; None at a clean EOF before it. FrameTooLarge over `limit`;
    asyncio.IncompleteReadError when the connection ends inside a frame."""
    try:
        header = await reader.readexactly(HEADER)
    except asyncio.IncompleteReadError as err:
        if not err.partial:
            return None
        raise
    size = int.from_bytes(header, "big")
    if size > limit:
        raise FrameTooLarge(f"a {size}-byte message (the limit is {limit})")
    return await reader.readexactly(size) if size else b""


class FrameTooLarge(Exception):
    pass


def unavailable(details: str) -> grpc.aio.AioRpcError:
    return rpc_error(grpc.StatusCode.UNAVAILABLE, details)


def status_frame(code: grpc.StatusCode, message: str) -> bytes:
    return frame(STATUS + bytes([code.value[0]]) + message.encode())


OK = status_frame(grpc.StatusCode.OK, "")


# ---- client ----

def lane_stub(endpoint: str, advertised: str, tls=None) -> LaneStub | None:
    """The lane a replica dialled at `endpoint` (its gRPC "host:port" or "unix:PATH")
    advertises (its Status' `lane`), or None: none, or a unix socket for a replica not dialled
    on one (it is on another machine). tls: the router's ClientTLS towards the replica (None:
    plaintext); a TCP lane is then dialled with it."""
    if not advertised:
        return None
    if advertised.startswith("unix:"):
        return LaneStub(advertised) if endpoint.startswith("unix:") else None
    if endpoint.startswith("unix:") or not advertised.startswith(":"):
        return None
    host = endpoint.rpartition(":")[0]
    if tls is None:
        return LaneStub(host + advertised)
    return LaneStub(host + advertised, tls=(tls.ssl_context(), tls.server_name or host.strip("[]")))


class LaneStub:
    """Stands in for a Shard stub's stream methods (what mux.MuxStream and RemoteShard's feed
    call): a LaneCall per stream over a new connection to `address` ("host:port" or
    "unix:PATH"); `stub.Feed(request)`, `stub.ReadBatches()`. tls: (ssl.SSLContext, the
    server's name to check) for a TCP address, or None."""

    def __init__(self, address: str, response_types: dict = RESPONSES, tls=None):
        self.address = address
        self.tls = tls
        self._response_types = response_types  # method -> its answer message class

    def __getattr__(self, method: str):
        if method not in self._response_types:
            raise AttributeError(method)
        return lambda first=None: LaneCall(self.address, method, self._response_types[method],
                                           first, self.tls)


async def _connect(address: str, tls=None):
    if address.startswith("unix:"):
        return await asyncio.open_unix_connection(address[5:])
    host, _, port = address.rpartition(":")
    context, server_name = tls if tls is not None else (None, None)
    reader, writer = await asyncio.open_connection(host.strip("[]"), int(port), ssl=context,
                                                   server_hostname=server_name)
    _no_delay(writer)
    return reader, writer


def _no_delay(writer: asyncio.StreamWriter) -> None:
    """A message goes out as it is written (it is whole: no Nagle delay waiting for more)."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class LaneCall:
    """One stream on its own connection, shaped as grpc.aio's StreamStreamCall for MuxStream."""

    def __init__(self, address: str, method: str, response_type, first=None, tls=None):
        """first: a request sent right after the hello (a Feed's FeedRequest); tls: LaneStub's."""
        self.address = address
        self._tls = tls
        self._response_type = response_type
        self._writer: asyncio.StreamWriter | None = None
        self._ended = False
        self._opened = asyncio.ensure_future(self._open(method, first))
        self._opened.add_done_callback(_swallow)  # its failure is each caller's, not a task's

    async def _open(self, method: str, first):
        try:
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                reader, self._writer = await _connect(self.address, self._tls)
                hello = frame(HELLO + method.encode())
                if first is not None:
                    hello += frame(first.SerializeToString())
                self._writer.write(hello)
                reply = await read_frame(reader, 1 << 16)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, FrameTooLarge) as err:
            self.cancel()
            raise unavailable(f"lane {self.address}: {err or type(err).__name__}") from None
        if reply is None or reply:
            self.cancel()
            why = reply.decode(errors="replace") if reply else "closed at once"
            raise unavailable(f"lane {self.address}: refused: {why}")
        return reader, self._writer

    async def _io(self):
        if self._ended:
            raise unavailable(f"lane {self.address}: the stream ended")
        if self._opened.done():
            return self._opened.result()
        # shielded: a caller that stops waiting does not cancel the opening for the others
        return await asyncio.shield(self._opened)

    async def initial_metadata(self):
        await self._io()
        return grpc.aio.Metadata()

    def done(self) -> bool:
        return self._ended

    async def write(self, message) -> None:
        await self._send(frame(message.SerializeToString()))

    async def done_writing(self) -> None:
        await self._send(END)

    async def _send(self, data: bytes) -> None:
        _, writer = await self._io()
        try:
            writer.write(data)
            await writer.drain()
        except (OSError, RuntimeError) as err:
            self.cancel()
            raise unavailable(f"lane {self.address}: {err}") from None

    async def read(self):
        reader, _ = await self._io()
        try:
            payload = await read_frame(reader, 1 << 31)
        except (OSError, asyncio.IncompleteReadError) as err:
            self.cancel()
            raise unavailable(f"lane {self.address}: {err}") from None
        if payload is None:
            self.cancel()
            raise unavailable(f"lane {self.address}: the connection closed")
        if payload[:1] == STATUS:  # the stream's end
            self.cancel()
            code = CODES.get(payload[1], grpc.StatusCode.UNKNOWN) if len(payload) > 1 else \
                grpc.StatusCode.UNKNOWN
            if code == grpc.StatusCode.OK:  # every request read was answered
                return grpc.aio.EOF
            raise rpc_error(code, payload[2:].decode(errors="replace"))
        return self._response_type.FromString(payload)

    def cancel(self) -> bool:
        if self._ended:
            return False
        self._ended = True
        if not self._opened.done():
            self._opened.cancel()
        if self._writer is not None:
            self._writer.close()
        return True


def _swallow(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


# ---- server ----

class LaneServer:
    """The lane of one ShardService: its `stream_kind(method)` gives (request type, run,
    response, failure, coalesced) for mux.serve, as its gRPC stream handlers use."""

    def __init__(self, service, max_request_bytes: int, tls=None):
        """tls: the Shard API's CertificateReloader (a TCP lane serves TLS with it), or None."""
        self.service = service
        self.max_request_bytes = max_request_bytes
        self.tls = tls
        self._server: asyncio.base_events.Server | None = None
        self._handlers: set[asyncio.Task] = set()
        self.address = ""   # what the Status RPC advertises: ":PORT" or "unix:PATH"

    async def start(self, address: str) -> str:
        """Listens on `address` ("host:port", port 0: any free one; or "unix:PATH"); the
        advertised address. OSError when it cannot listen."""
        if address.startswith("unix:"):
            path = address[5:]
            if os.path.exists(path):
                os.unlink(path)
            self._server = await asyncio.start_unix_server(self._serve, path)
            os.chmod(path, 0o600)
            self.address = address
        else:
            host, _, port = address.rpartition(":")
            context = self.tls.asyncio_context() if self.tls is not None else None
            self._server = await asyncio.start_server(self._serve, host.strip("[]") or None,
                                                      int(port), reuse_address=True, ssl=context)
            bound = self._server.sockets[0].getsockname()[1]
            self.address = f":{bound}"
        return self.address

    async def stop(self, grace_s: float) -> None:
        """After service.end_streams(): no new connection; streams get `grace_s` to end."""
        if self._server is None:
            return
        self._server.close()
        if self._handlers:
            _, late = await asyncio.wait(set(self._handlers), timeout=grace_s)
            for task in late:
                task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        peer = writer.get_extra_info("peername") or "unix socket"
        _no_delay(writer)
        try:
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                hello = await read_frame(reader, 256)
            if hello is None:  # connected and closed: nothing to answer
                return
            is_lane = hello.startswith(HELLO)
            method = hello[len(HELLO):].decode(errors="replace") if is_lane else ""
            if method == "Feed":
                writer.write(frame(b""))
                await self._feed(reader, writer)
                return
            kind = self.service.stream_kind(method) if is_lane else None
            if kind is None:
                writer.write(frame(f"not a lane stream: {hello[:64]!r}".encode()))
                return
            writer.write(frame(b""))
            request_type, run, response, failure, coalesced = kind
            refused: list[str] = []
            requests = self._requests(reader, request_type, refused)
            async for answers in serve(requests, run, response, failure,
                                       self.service.streams_ending, coalesced):
                writer.write(frame(answers.SerializeToString()))
                await writer.drain()
            if refused:  # the caller's requests in flight are lost
                log.warning("lane %s: refused %s; the stream ends", peer, refused[0])
                writer.write(status_frame(grpc.StatusCode.RESOURCE_EXHAUSTED, refused[0]))
            else:
                writer.write(OK)
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, FrameTooLarge) as err:
            log.debug("lane %s: %s", peer, err or type(err).__name__)
        except asyncio.CancelledError:
            # stop() after its grace: this task ends here, not cancelled (asyncio's callback for
            # a connection's task would report a cancelled one as an error)
            log.debug("lane %s: cut at shutdown", peer)
        finally:
            writer.close()

    async def _feed(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The Feed: its one request, then ShardService.Feed's messages; its abort as a status
        frame. The generator is closed here, whatever ends the stream: that unregisters its
        listener at once."""
        payload = await read_frame(reader, self.max_request_bytes)
        if payload is None:
            return
        try:
            request = spb.FeedRequest.FromString(payload)
        except DecodeError:
            writer.write(status_frame(grpc.StatusCode.INVALID_ARGUMENT, "not a FeedRequest"))
            return
        messages = self.service.Feed(request, _FeedContext())
        try:
            async for msg in messages:
                writer.write(frame(msg.SerializeToString()))
                await writer.drain()
            writer.write(OK)
        except _Aborted as aborted:
            writer.write(status_frame(aborted.code, aborted.message))
        finally:
            await messages.aclose()
        await writer.drain()

    async def _requests(self, reader: asyncio.StreamReader, request_type, refused: list[str]):
        """The request messages read, until the caller's end frame or the connection's end; a
        frame over the limit ends them too, its reason in `refused`."""
        while True:
            try:
                payload = await read_frame(reader, self.max_request_bytes)
            except FrameTooLarge as err:
                refused.append(str(err))
                return
            except (OSError, asyncio.IncompleteReadError):
                return   # the caller is gone: what it sent is still answered, to no one
            if not payload:
                return
            try:
                message = request_type.FromString(payload)
            except DecodeError:
                refused.append(f"a message that is not a {request_type.__name__}")
                return
            yield message


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class _FeedContext:
    """What ShardService.Feed uses of a gRPC servicer context: abort."""

    async def abort(self, code: grpc.StatusCode, message: str = ""):
        raise _Aborted(code, message)
