"""`kubefabric aggregation` started for a test, and a small HTTP client for it.

    agg = start_aggregation(workdir, router.url, CRDS)               # --auth none unless extra
    code, body = agg.request("GET", "/apis/example.kubefabric.io/v1/widgets")
    agg.json("POST", path, {...})                                    # parsed body; raises on >= 300
    for event in agg.watch(path + "?watch=1", until=2): ...          # parsed watch lines
    agg.stop()

The server listens on a free loopback port with a self-signed certificate (not verified here)
and dies with the test process.
"""
from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import zygote
from .servers import REPO, free_port, stop_process

CRDS = REPO / "tests" / "aggregation" / "crds"
WIDGETS = "/apis/example.kubefabric.io/v1"


class HTTPFailure(AssertionError):
    def __init__(self, method: str, path: str, code: int, body: str):
        super().__init__(f"{method} {path}: HTTP {code}: {body[:600]}")
        self.code, self.body = code, body

    @property
    def status(self) -> dict:
        return json.loads(self.body)


@dataclass
class Aggregation:
    port: int
    proc: subprocess.Popen
    log_path: Path
    headers: dict = field(default_factory=dict)
    context: ssl.SSLContext | None = None

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _ssl(self) -> ssl.SSLContext:
        if self.context is None:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.context = ctx
        return self.context

    def request(self, method: str, path: str, body=None, content_type: str = "application/json",
                headers: dict | None = None, timeout: float = 30) -> tuple[int, str]:
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            data = data.encode() if isinstance(data, str) else data
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": content_type, **self.headers,
                                              **(headers or {})})
        try:
            with urllib.request.urlopen(req, context=self._ssl(), timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def json(self, method: str, path: str, body=None, **kw):
        code, text = self.request(method, path, body, **kw)
        if code >= 300:
            raise HTTPFailure(method, path, code, text)
        return json.loads(text)

    def fail(self, method: str, path: str, body=None, **kw) -> tuple[int, dict]:
        """A request expected to fail: (HTTP code, the Status)."""
        code, text = self.request(method, path, body, **kw)
        assert code >= 400, f"{method} {path} succeeded: {text[:300]}"
        return code, json.loads(text)

    def watch(self, path: str, until: int | None = None, timeout: float = 20,
              on_open=None, headers: dict | None = None):
        """Events of a watch (parsed lines) until `until` were read or the stream ended;
        on_open() runs once the response headers arrived (to write after the watch exists)."""
        req = urllib.request.Request(self.base + path, headers={**self.headers, **(headers or {})})
        events = []
        with urllib.request.urlopen(req, context=self._ssl(), timeout=timeout) as r:
            if on_open:
                on_open()
            while until is None or len(events) < until:
                line = r.readline()
                if not line:
                    break
                events.append(json.loads(line))
        return events

    def stop(self, timeout: float = 15) -> int | None:
        return stop_process(self.proc, timeout=timeout)


def start_aggregation(workdir: Path, kv_router: str, crd_dir: Path = CRDS,
                      extra: list[str] | None = None, host: str = "127.0.0.1",
                      env: dict | None = None) -> Aggregation:
    port = free_port()
    log = workdir / f"aggregation-{port}.log"
    argv = [sys.executable, "-m", "kubefabric.cli", "aggregation", "--crd-dir", str(crd_dir),
            "--kv-router", kv_router, "--listen-address", f"{host}:{port}",
            "--metrics-address", "", "--event-loop", "asyncio", *(extra or ["--auth", "none"])]
    proc = zygote.popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=workdir,
                       env={**os.environ, **(env or {})})
    agg = Aggregation(port, proc, log)
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"kubefabric aggregation exited with {proc.returncode}:\n{agg.log()}")
        try:
            socket.create_connection((host if host != "0.0.0.0" else "127.0.0.1", port), 0.5).close()
            code, _ = agg.request("GET", "/readyz")
            if code == 200:
                return agg
        except OSError:
            pass
        if time.monotonic() > deadline:
            agg.stop()
            raise RuntimeError(f"kubefabric aggregation not ready after 180s:\n{agg.log()}")
        time.sleep(0.1)
