"""Watch streams across a server restart, as etcd's clients see them (issue 14, item 3).

etcd ends its watch streams with UNAVAILABLE when it stops (its connections close), and etcd's
clients (clientv3, hence etcdctl and kube-apiserver) retry that: they reconnect and re-watch from
the revision after the last event they delivered. A stream that ends with OK is final to them:
etcdctl exits, clientv3 closes the watch channel. So on SIGTERM every KubeFabric watch stream
(kv-router's own, the relay in front of watch-hubs, watch-hub's) must end the way etcd's do.

Each test runs the same sequence against the reference etcd and against KubeFabric: a watcher
on a prefix sees an event, the server gets SIGTERM and is started again on the same port and data,
a new write must reach the same watcher process, exactly once, with nothing repeated. Watchers:
Debian's etcdctl and a Go program on clientv3 3.7 (tests/robustness/watchclient, built once).
"""
from __future__ import annotations

import fcntl
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest

from harness.client import Client
from harness.etcdctl import etcdctl_binary
from harness.servers import START, Server, wait_ready
from harness.stream import WatchStream

WATCHCLIENT_SRC = Path(__file__).parent / "watchclient"
WATCHCLIENT = Path.home() / ".cache" / "kubefabric-tests" / "watchclient"
PREFIX = b"/reconnect/"


def watchclient_binary() -> str:
    """go build tests/robustness/watchclient (cached; rebuilt when a source is newer), once at a
    time across pytest workers."""
    sources = [p for p in WATCHCLIENT_SRC.iterdir() if p.suffix == ".go" or p.name in ("go.mod", "go.sum")]
    WATCHCLIENT.parent.mkdir(parents=True, exist_ok=True)
    with open(WATCHCLIENT.parent / "watchclient.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if WATCHCLIENT.exists() and WATCHCLIENT.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
            return str(WATCHCLIENT)
        if not shutil.which("go"):
            raise RuntimeError("go is required to build tests/robustness/watchclient (clientv3)")
        subprocess.run(["go", "build", "-trimpath", "-o", str(WATCHCLIENT), "."], cwd=WATCHCLIENT_SRC,
                       check=True, timeout=1200)
    return str(WATCHCLIENT)


class Watcher:
    """A watcher process whose stdout lines are collected as they come."""

    def __init__(self, argv: list[str], log: Path):
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log.open("wb"), text=True,
                                     env={**os.environ, "ETCDCTL_API": "3"})
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float) -> bool:
        """Until a line containing `text` arrives (True) or the process ends / time runs out."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                return False
            if line is None:
                self.lines.put(None)
                return False
            self.seen.append(line)
            if text in line:
                return True
        return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def watcher(kind: str, endpoint: str, log: Path) -> Watcher:
    if kind == "etcdctl":
        # etcdctl prints PUT / key / value on three lines
        return Watcher([etcdctl_binary(), f"--endpoints={endpoint}", "watch", "--prefix",
                        PREFIX.decode()], log)
    return Watcher([watchclient_binary(), endpoint, PREFIX.decode()], log)


def restart(server: Server) -> Server:
    """The same command again: same port, same data directory."""
    proc = subprocess.Popen(server.argv, stdout=server.log_path.open("ab"), stderr=subprocess.STDOUT,
                            cwd=server.data_dir.parent)
    again = Server(server.kind, server.endpoint, proc, server.data_dir, server.log_path, server.argv)
    wait_ready(again)
    return again


def put(endpoint: str, key: bytes, value: bytes) -> None:
    client = Client(endpoint)
    try:
        client.put(key, value)
    finally:
        client.close()


@pytest.mark.parametrize("client", ["etcdctl", "clientv3"])
@pytest.mark.parametrize("kind", ["etcd", "kubefabric"])
def test_watcher_follows_a_restarted_server(tmp_path, kind, client):
    server = START[kind](tmp_path, None)
    servers = [server]
    w = watcher(client, server.endpoint, tmp_path / f"{client}.err")
    try:
        put(server.endpoint, PREFIX + b"before", b"1")  # may precede the watch: not waited for
        deadline = time.monotonic() + 20
        while not w.wait_for("warm", 0.5):  # the watch is in place once a write reaches it
            assert time.monotonic() < deadline, f"{client} never saw a write: {w.seen}"
            put(server.endpoint, PREFIX + b"warm", b"w")

        assert server.stop() in (0, -15)  # etcd dies of the SIGTERM it handled, we exit 0
        time.sleep(1.0)  # a watcher whose stream ended with OK stops here
        assert w.proc.poll() is None, (f"{client} exited ({w.proc.returncode}) when {kind} stopped: "
                                       f"its watch stream ended as if finished; output {w.seen}")
        server = restart(server)
        servers.append(server)
        put(server.endpoint, PREFIX + b"after", b"2")
        assert w.wait_for("after", 30), f"{client} did not re-watch the restarted {kind}: {w.seen}"
        put(server.endpoint, PREFIX + b"last", b"3")
        assert w.wait_for("last", 10), w.seen
        after = [line for line in w.seen if line.endswith("after") or "after " in line]
        assert len(after) == 1, f"the event after the restart arrived {len(after)} times: {w.seen}"
    finally:
        w.stop()
        for s in servers:
            s.stop()


@pytest.mark.parametrize("target", ["embedded", "hub"])
def test_sigterm_ends_watch_streams_unavailable(tmp_path, server_factory, target):
    """The status itself, on a raw stream: UNAVAILABLE with etcd's 'server stopped' message, from
    `kubefabric serve` and from kv-router relaying the stream to a watch-hub."""
    if target == "hub":
        server = server_factory.hub().router
    else:
        server = START["kubefabric"](tmp_path, None)
    client = Client(server.endpoint)
    ws = WatchStream(client)
    try:
        created = ws.created(PREFIX, PREFIX[:-1] + b"0")
        assert created.created, created
        assert server.stop() == 0
        end = ws.recv(5.0)
        assert getattr(end, "code", None) == grpc.StatusCode.UNAVAILABLE.name, end
        assert end.details == "etcdserver: server stopped", end
    finally:
        ws.close()
        client.close()
        server.stop()
