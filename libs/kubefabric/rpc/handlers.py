"""The shape every unary etcd handler has: validate → core → map errors → header.

`etcd_unary` turns an EtcdError raised anywhere below into the gRPC status etcd would send
(code and exact message), and any other exception into INTERNAL with a one-line reason (logged
with its traceback here, never sent to the client).
"""
from __future__ import annotations

import asyncio
import functools
import logging

import grpc

from kubefabric.etcd import errors
from kubefabric.etcd.errors import EtcdError

from kubefabric.rpc.wire import Malformed

log = logging.getLogger("kubefabric.router")


class Gate:
    """Admission of requests. While open, it counts the calls in flight; once closed (SIGTERM),
    new calls are refused with etcd's 'server stopped' (UNAVAILABLE: clients retry elsewhere)
    and `drained()` waits for those in flight, so no request is cut off half-way."""

    def __init__(self):
        self.closed = False
        self.inflight = 0

    def enter(self) -> None:
        if self.closed:
            raise errors.STOPPING
        self.inflight += 1

    def leave(self) -> None:
        self.inflight -= 1

    async def drain(self, timeout: float, quiet: float = 0.2) -> None:
        """Close, then wait until nothing has been in flight for `quiet` seconds (calls already
        queued in gRPC get dispatched and refused meanwhile), at most `timeout`."""
        self.closed = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        calm_since = None
        while loop.time() < deadline:
            if self.inflight == 0:
                calm_since = calm_since or loop.time()
                if loop.time() - calm_since >= quiet:
                    return
            else:
                calm_since = None
            await asyncio.sleep(0.02)


GATE = Gate()


def etcd_unary(method):
    @functools.wraps(method)
    async def wrapper(self, request, context: grpc.aio.ServicerContext):
        if type(request) is Malformed:
            await context.abort(request.error.code, request.error.message)
        try:
            GATE.enter()
        except EtcdError as err:
            await context.abort(err.code, err.message)
        try:
            return await method(self, request, context)
        except EtcdError as err:
            await context.abort(err.code, err.message)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # a bug or a storage failure: say so, keep serving
            log.exception("%s failed", method.__qualname__)
            await context.abort(grpc.StatusCode.INTERNAL, f"kubefabric: internal error: {exc}")
        finally:
            GATE.leave()
    return wrapper


def unimplemented(what: str):
    """A unary handler that answers UNIMPLEMENTED with a sentence naming `what`."""
    err = errors.unimplemented(what)

    async def handler(self, request, context):
        await context.abort(err.code, err.message)
    return handler
