"""gRPC instrumentation for grpc.aio: instrumented server handlers and client stubs.

Server (`instrument_server`; `server_interceptors` for servers built elsewhere): every call
counts in grpc_server_started_total / grpc_server_handled_total / grpc_server_handling_seconds
(etcd's go-grpc-prometheus metrics, Go's code names). With tracing
on, each unary call also gets a SERVER span whose parent is the caller's W3C trace context from
the call's metadata. Streams (Watch, Feed, History) are counted but not traced: a span as long
as a watch says nothing.

Client: `instrument_stub(stub, shard)` wraps a generated stub's unary methods (not a channel
interceptor: grpc.aio's intercepted calls cost an extra task per call). Each call counts in
kubefabric_router_shard_requests_total / _request_seconds and, with tracing on, gets a CLIENT
span and carries its context to the server as `traceparent` metadata. Streaming methods only
carry the context.

Cost per call with tracing off: a dict lookup, a counter, a histogram observation; with the
handler wrappers cached per method, nothing is allocated per call beyond the coroutine frame.
"""
from __future__ import annotations

import asyncio
import inspect
from time import perf_counter

import grpc

from kubefabric.proto.kubefabric.shard.v1 import shard_pb2

from . import metrics as m
from . import tracing

# grpc-go's names for status codes (what etcd's grpc_code label carries)
GO_CODE = {
    grpc.StatusCode.OK: "OK", grpc.StatusCode.CANCELLED: "Canceled", grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument", grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound", grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied", grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition", grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange", grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal", grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss", grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}
_CODE_OF_INT = {c.value[0]: c for c in grpc.StatusCode}


def _status(code) -> grpc.StatusCode:
    if code is None:
        return grpc.StatusCode.OK
    if isinstance(code, grpc.StatusCode):
        return code
    return _CODE_OF_INT.get(code, grpc.StatusCode.UNKNOWN)


class _MethodStats:
    """One method's counts (metrics.MethodCounts) and the names its spans carry."""

    __slots__ = ("service", "method", "full", "counts")

    def __init__(self, grpc_type: str, full_method: str):
        self.full = full_method.lstrip("/")
        self.service, _, self.method = self.full.rpartition("/")
        self.counts = m.grpc_server.method(grpc_type, self.service, self.method)

    def done(self, code: grpc.StatusCode, started: float) -> None:
        self.counts.done(GO_CODE[code], perf_counter() - started)


def _outcome(context, exc: BaseException | None) -> grpc.StatusCode:
    if exc is None or isinstance(exc, grpc.aio.AbortError):
        return _status(context.code())
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):  # the client went away
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def _start_server_span(stats: _MethodStats, context):
    api = tracing.api
    parent = tracing.context_from_metadata(context.invocation_metadata())
    span = tracing.tracer().start_span(
        stats.full, context=parent, kind=api.SERVER,
        attributes={"rpc.system": "grpc", "rpc.service": stats.service, "rpc.method": stats.method})
    token = api.context.attach(api.trace.set_span_in_context(span))
    return span, token


def _end_span(span, token, code: grpc.StatusCode, exc: BaseException | None) -> None:
    api = tracing.api
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        desc = getattr(exc, "details", None)
        span.set_status(api.Status(api.ERROR, desc() if callable(desc) else (str(exc) if exc else code.name)))
    api.context.detach(token)
    span.end()


def _wrap_unary(behaviour, stats: _MethodStats, traced: bool = True):
    """A handler that returns its one response (unary, client-streaming, or a server stream
    written with context.write); a span each when tracing is on and `traced`."""
    async def unary(request, context):
        stats.counts.started += 1
        started = perf_counter()
        span = None
        if traced and tracing.ENABLED:
            span, token = _start_server_span(stats, context)
        exc = None
        try:
            return await behaviour(request, context)
        except BaseException as e:
            exc = e
            raise
        finally:
            code = _outcome(context, exc)
            stats.done(code, started)
            if span is not None:
                _end_span(span, token, code, exc)
    return unary


def _wrap_stream(behaviour, stats: _MethodStats):
    if inspect.isasyncgenfunction(behaviour):
        async def stream(request, context):
            stats.counts.started += 1
            started = perf_counter()
            exc = None
            responses = behaviour(request, context)
            try:
                async for response in responses:
                    yield response
            except BaseException as e:
                exc = e
                raise
            finally:
                stats.done(_outcome(context, exc), started)
                await responses.aclose()
        return stream

    return _wrap_unary(behaviour, stats, traced=False)  # it writes with context.write


def _grpc_type(handler) -> str:
    if handler.request_streaming:
        return "bidi_stream" if handler.response_streaming else "client_stream"
    return "server_stream" if handler.response_streaming else "unary"


def instrument_handler(handler, method: str):
    grpc_type = _grpc_type(handler)
    stats = _MethodStats(grpc_type, method)
    if grpc_type == "unary":
        return handler._replace(unary_unary=_wrap_unary(handler.unary_unary, stats))
    if grpc_type == "server_stream":
        return handler._replace(unary_stream=_wrap_stream(handler.unary_stream, stats))
    if grpc_type == "bidi_stream":
        return handler._replace(stream_stream=_wrap_stream(handler.stream_stream, stats))
    return handler._replace(stream_unary=_wrap_unary(handler.stream_unary, stats))


class _InstrumentedHandlers(grpc.GenericRpcHandler):
    """A generic handler whose method handlers come out instrumented, each wrapped once, the
    first time its method is called. Invariant: the wrapped handler answers the same method
    handler for a method every time (grpc's dictionary handlers and kubefabric.rpc.wire do)."""

    __slots__ = ("_inner", "_wrapped")

    def __init__(self, inner):
        self._inner = inner
        self._wrapped: dict = {}

    def service(self, handler_call_details):
        method = handler_call_details.method
        handler = self._wrapped.get(method)
        if handler is None:
            handler = self._inner.service(handler_call_details)
            if handler is None:
                return None
            handler = self._wrapped[method] = instrument_handler(handler, method)
        return handler


def instrument_server(server: grpc.aio.Server) -> grpc.aio.Server:
    """Metrics (and spans, with tracing on) for every call `server` handles, by instrumenting the
    handlers it is given instead of intercepting: a grpc.aio interceptor runs two coroutines and
    a continuation per call, about 30 µs of CPU per request on the bench (bench/README.md).
    Call before registering any servicer.

    Methods are served through generic handlers only, never as gRPC's registered methods: a
    grpc.aio server keeps a call requested from its core for each registered method and waits
    on all of them (asyncio.wait) every time it accepts a call, so each registered method costs
    every call of the server a done-callback added and removed and an iscoroutine check
    (bench/README.md, "Third round"). Generated add_*Servicer_to_server code registers the same
    handlers both ways, so the registered half is dropped: nothing goes unserved."""
    add_generic = server.add_generic_rpc_handlers

    def add_generic_rpc_handlers(handlers):
        add_generic(tuple(_InstrumentedHandlers(h) for h in handlers))

    def add_registered_method_handlers(service_name, method_handlers):
        """Generated code's second registration of the handlers it just added as generic ones."""

    server.add_generic_rpc_handlers = add_generic_rpc_handlers
    server.add_registered_method_handlers = add_registered_method_handlers
    return server


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Metrics (and spans, with tracing on) for every call a grpc.aio server handles, for a
    server not built by kubefabric.rpc.server.make_server (which uses instrument_server: cheaper)."""

    def __init__(self):
        self._wrapped: dict[str, tuple] = {}  # method -> (the handler, its instrumented copy)

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            cached = self._wrapped[method] = (handler, instrument_handler(handler, method))
        return cached[1]


def server_interceptors() -> list:
    return [ServerInterceptor()]


# ---- client ----

class _UnaryCall:
    __slots__ = ("_call", "_full", "_method", "_shard", "_seconds", "_codes")

    def __init__(self, call, full: str, shard: str):
        self._call = call
        self._full = full.lstrip("/")
        self._method = self._full.rpartition("/")[2]
        self._shard = shard
        self._seconds = m.router_shard_request_seconds.labels(shard, self._method)
        self._codes: dict = {}

    def _count(self, code: grpc.StatusCode) -> None:
        child = self._codes.get(code)
        if child is None:
            child = self._codes[code] = m.router_shard_requests.labels(self._shard, self._method, GO_CODE[code])
        child.inc()

    async def __call__(self, request, timeout=None, metadata=None, **kwargs):
        started = perf_counter()
        if tracing.ENABLED:
            return await self._traced(request, timeout, metadata, kwargs, started)
        try:
            response = await self._call(request, timeout=timeout, metadata=metadata, **kwargs)
        except grpc.aio.AioRpcError as err:
            self._count(err.code())
            raise
        except asyncio.CancelledError:
            self._count(grpc.StatusCode.CANCELLED)
            raise
        self._seconds.observe(perf_counter() - started)
        self._count(grpc.StatusCode.OK)
        return response

    async def _traced(self, request, timeout, metadata, kwargs, started):
        api = tracing.api
        service, _, method = self._full.rpartition("/")
        with tracing.tracer().start_as_current_span(
                self._full, kind=api.CLIENT, record_exception=False, set_status_on_exception=False,
                attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method,
                            "kubefabric.shard": self._shard}) as span:
            code = grpc.StatusCode.OK
            try:
                return await self._call(request, timeout=timeout,
                                        metadata=tracing.metadata_with_context(metadata), **kwargs)
            except grpc.aio.AioRpcError as err:
                code = err.code()
                span.set_status(api.Status(api.ERROR, err.details() or code.name))
                raise
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                self._seconds.observe(perf_counter() - started)
                self._count(code)


class _StreamCall:
    """A streaming method: passes the trace context on, nothing else."""

    __slots__ = ("_call",)

    def __init__(self, call):
        self._call = call

    def __call__(self, request=None, timeout=None, metadata=None, **kwargs):
        """request: a server stream's request, a client stream's iterator (None for a stream
        written with call.write)."""
        if tracing.ENABLED:
            metadata = tracing.metadata_with_context(metadata)
        return self._call(request, timeout=timeout, metadata=metadata, **kwargs)


class InstrumentedStub:
    """A generated stub's methods, instrumented; everything else is the stub's."""

    def __init__(self, stub, service_descriptor, shard: str):
        self._stub = stub
        for method in service_descriptor.methods:
            call = getattr(stub, method.name)
            full = f"{service_descriptor.full_name}/{method.name}"
            if method.client_streaming or method.server_streaming:
                setattr(self, method.name, _StreamCall(call))
            else:
                setattr(self, method.name, _UnaryCall(call, full, shard))

    def __getattr__(self, name):
        return getattr(self._stub, name)


def instrument_shard_stub(stub, shard: str):
    """A kubefabric.shard.v1.Shard stub whose calls are counted (and traced) per shard."""
    return InstrumentedStub(stub, shard_pb2.DESCRIPTOR.services_by_name["Shard"], shard)
