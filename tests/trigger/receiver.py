"""A function for trigger tests: an aiohttp server on loopback (in its own thread) that records
every request and answers as the test says: a status, Retry-After, a delay, or a dropped
connection, per call number."""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict

from harness.servers import free_port


@dataclass
class Call:
    at: float
    method: str
    path: str
    headers: dict
    body: bytes
    status: int = 0
    peer_cert: object = None

    @property
    def ce_id(self) -> str:
        return self.headers.get("Ce-Id", "")

    @property
    def ce_type(self) -> str:
        return self.headers.get("Ce-Type", "")


@dataclass
class Behaviour:
    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0
    drop: bool = False          # close the connection without answering


class Receiver:
    def __init__(self, ssl_context=None):
        self.port = free_port()
        self.ssl_context = ssl_context
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.plan = None            # plan(call_number, Call) -> Behaviour, or None: 200
        self.inflight = 0
        self.max_inflight = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port,
                                                            ssl_context=self.ssl_context).start())
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        call = Call(time.monotonic(), request.method, request.path_qs, CIMultiDict(request.headers), body)
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        call.peer_cert = peer
        with self.lock:
            n = len(self.calls)
            self.calls.append(call)
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            b = self.plan(n, call) if self.plan else None
            b = b or Behaviour()
            if b.delay:
                await asyncio.sleep(b.delay)
            if b.drop:
                request.transport.close()
                call.status = -1
                return web.Response(status=500)
            call.status = b.status
            headers = {"Retry-After": b.retry_after} if b.retry_after else {}
            return web.Response(status=b.status, text="ok" if b.status < 300 else "nope", headers=headers)
        finally:
            with self.lock:
                self.inflight -= 1

    def accepted(self) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if 200 <= c.status < 300]

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "calls"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(list(self.calls)):
                    return
            time.sleep(0.05)
        with self.lock:
            got = [(c.status, c.headers.get("Ce-Type"), c.ce_id) for c in self.calls]
        raise AssertionError(f"timed out waiting for {what}; calls so far: {got}")

    def close(self) -> None:
        async def stop():
            await self._runner.cleanup()
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
