"""The shape every unary etcd handler has: validate → core → map errors → header.

`etcd_unary` turns an EtcdError raised anywhere below into the gRPC status etcd would send
(code and exact message); a failure the servicer classifies as its database being unreachable
(`is_unavailable`) into UNAVAILABLE "the shard's database is unavailable" (the cause logged on
one line, nothing of the DSN sent); any other exception into INTERNAL with a one-line reason
(logged with its traceback here).

Deadlines: a request that has not finished after `DEADLINE.seconds` (kv-router's
--request-timeout) fails with etcd's `etcdserver: request timed out` (UNAVAILABLE: the outcome
of a write is unknown, as in etcd, and clients retry), and its work is cancelled: a call to a
remote shard is cancelled on the wire, a write still queued for the embedded writer is not
waited for (it may still apply, like an etcd proposal after its timeout). A client whose own
deadline expires first gets its status from its library; gRPC cancels the handler, with the
same effect. Work that runs synchronously on the event loop cannot be interrupted.
"""
from __future__ import annotations

import asyncio
import functools
import logging

import grpc

from kubefabric.etcd import errors
from kubefabric.etcd.errors import EtcdError
from kubefabric.logs import causes

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

# etcd's request timeout: 5 s + 2 election timeouts (1 s each by default)
DEFAULT_REQUEST_TIMEOUT_S = 7.0
# etcd waits for these without its request timeout: a defragmentation or a physical compaction
# takes as long as the database needs, a Lock or a Campaign until the caller holds it (clients
# set their own deadline)
UNBOUNDED = frozenset({"Defragment", "Compact", "Lock", "Campaign"})


class _Sweep:
    """The requests under a deadline on one event loop: task -> when it is due."""

    __slots__ = ("due", "expired", "timer")

    def __init__(self):
        self.due: dict[asyncio.Task, float] = {}
        self.expired: set[asyncio.Task] = set()
        self.timer: asyncio.TimerHandle | None = None  # armed while a sweep is due


class Deadline:
    """The server-side limit of one unary request, in seconds; None: no limit (the default of
    a process that does not set one).

    Enforced by one sweep per event loop every `tick()` seconds, not a timer per request:
    asyncio.timeout costs each call a timer handle, a reschedule and two current_task lookups,
    a third of a point get's own Python time (bench/README.md). A request is cancelled between
    `seconds` and `seconds + tick()` after it started. The sweep is a loop timer, armed by the
    first request that finds none and re-armed while requests are in flight: not a task, which
    a request that ends without suspending (a point get) would create and end each time
    (a task, its coroutine and a loop turn per request; bench/README.md, "Third round")."""

    def __init__(self):
        self.seconds: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweep = _Sweep()

    def tick(self) -> float:
        return min(0.25, max(0.01, (self.seconds or 0) / 10))

    def enter(self) -> asyncio.Task | None:
        """Start the deadline of the calling task; the task, or None without a limit."""
        if self.seconds is None:
            return None
        task = asyncio.current_task()
        loop = task.get_loop()
        if loop is not self._loop:  # a process serves on one loop; tests start several in turn
            self._loop, self._sweep = loop, _Sweep()
        sweep = self._sweep
        sweep.due[task] = loop.time() + self.seconds
        if sweep.timer is None:
            sweep.timer = loop.call_later(self.tick(), self._run, loop, sweep)
        return task

    def leave(self, task: asyncio.Task) -> bool:
        """End the deadline of `task`; whether it expired (the task was cancelled for it)."""
        sweep = self._sweep if task.get_loop() is self._loop else _Sweep()
        sweep.due.pop(task, None)
        if task in sweep.expired:
            sweep.expired.discard(task)
            return True
        return False

    def _run(self, loop: asyncio.AbstractEventLoop, sweep: _Sweep) -> None:
        """The sweep: cancel the requests past their deadline; again in `tick()` while any
        request is in flight."""
        now = loop.time()
        for task, due in [item for item in sweep.due.items() if item[1] <= now]:
            del sweep.due[task]
            if task.cancel():
                sweep.expired.add(task)
        sweep.timer = loop.call_later(self.tick(), self._run, loop, sweep) if sweep.due else None


DEADLINE = Deadline()


def database_unavailable(servicer, exc: BaseException) -> bool:
    """Whether `exc` means the servicer's database cannot be reached: asked of the servicer's
    `is_unavailable(exc)` (a shard service: its store's classification); False without one."""
    check = getattr(servicer, "is_unavailable", None)
    return check is not None and check(exc)


def unexpected(servicer, exc: Exception, what: str) -> EtcdError:
    """The error a request answers for an exception that is not an EtcdError (a bug or a
    storage failure; logged here): the database being unreachable (`database_unavailable`) is
    routine, one line with the cause and etcd_unary's DB_UNAVAILABLE; anything else INTERNAL
    with a one-line reason, logged with its traceback."""
    if database_unavailable(servicer, exc):
        log.warning("%s failed: the database is unavailable: %s", what, causes(exc))
        return errors.DB_UNAVAILABLE
    log.error("%s failed", what, exc_info=exc)
    return EtcdError(grpc.StatusCode.INTERNAL, f"kubefabric: internal error: {exc}")


def error_of(servicer, exc: Exception, what: str) -> EtcdError:
    """The error a unary handler wrapped by etcd_unary answers for `exc`, for requests answered
    outside such a handler (a stream's requests, kubefabric.shardsvc.mux)."""
    if isinstance(exc, EtcdError):
        return exc
    if isinstance(exc, TimeoutError):
        return errors.TIMEOUT
    return unexpected(servicer, exc, what)


def etcd_unary(method):
    bounded = method.__name__ not in UNBOUNDED

    @functools.wraps(method)
    async def wrapper(self, request, context: grpc.aio.ServicerContext):
        if type(request) is Malformed:
            await context.abort(request.error.code, request.error.message)
        try:
            GATE.enter()
        except EtcdError as err:
            await context.abort(err.code, err.message)
        task = DEADLINE.enter() if bounded else None
        try:
            return await method(self, request, context)
        except asyncio.CancelledError:
            # cancelled for the deadline and by nothing else (the client going away): time out
            if task is not None and DEADLINE.leave(task) and task.uncancel() == 0:
                await context.abort(errors.TIMEOUT.code, errors.TIMEOUT.message)
            raise
        except TimeoutError:
            await context.abort(errors.TIMEOUT.code, errors.TIMEOUT.message)
        except EtcdError as err:
            await context.abort(err.code, err.message)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # a bug or a storage failure: say so, keep serving
            failed = unexpected(self, exc, method.__qualname__)
            await context.abort(failed.code, failed.message)
        finally:
            if task is not None:
                DEADLINE.leave(task)
            GATE.leave()
    return wrapper


def unimplemented(what: str):
    """A unary handler that answers UNIMPLEMENTED with a sentence naming `what`."""
    err = errors.unimplemented(what)

    async def handler(self, request, context):
        await context.abort(err.code, err.message)
    return handler
