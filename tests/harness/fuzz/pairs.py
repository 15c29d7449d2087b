"""A fresh etcd + KubeFabric pair for every fuzz example, started ahead of time, and the
differential comparison of tests/conftest.py for one body run on both servers of a pair.

Starting `kubefabric serve` takes seconds, so the pool keeps the next pair(s) starting in the
background while an example runs, and kills and deletes a used pair in the background too.
Recordings are normalised exactly as the `differential` fixture does (harness/normalise.py)
and compared label by label with the same messages. KUBEFABRIC_DIFF_AGAINST=etcd runs the second
side on etcd as well (a determinism check of the generated bodies, as for the fixture).
"""
from __future__ import annotations

import os
import shutil
import signal
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from harness.client import Client
from harness.servers import START, Server
from harness.normalise import compare_recordings, recording

KINDS = ("etcd", "kubefabric")


def launched_kind(kind: str) -> str:
    return os.environ.get("KUBEFABRIC_DIFF_AGAINST", kind) if kind == "kubefabric" else kind


class PairPool:
    """Pairs of started servers (etcd, kubefabric), `ahead` of them starting in the background."""

    def __init__(self, root: Path, ahead: int = 1):
        self.root, self.ahead, self.count = root, max(ahead, 0), 0
        self.executor = ThreadPoolExecutor(max_workers=2 * self.ahead + 4, thread_name_prefix="pairs")
        self.pending: deque[tuple[Future, Future]] = deque()
        self.retired: list[Future] = []

    def _start(self, kind: str) -> Future:
        return self.executor.submit(_launch, launched_kind(kind), self.root / f"{self.count:05d}-{kind}")

    def _fill(self, n: int) -> None:
        while len(self.pending) < n:
            self.pending.append((self._start("etcd"), self._start("kubefabric")))
            self.count += 1

    def take(self) -> tuple[Server, Server]:
        self._fill(1)
        futures = self.pending.popleft()
        self._fill(self.ahead)
        servers, error = [], None
        for f in futures:  # wait for both, so that neither is left running if the other failed
            try:
                servers.append(f.result())
            except Exception as err:
                error = error or err
        if error is not None:
            self.release(servers)
            raise error
        return servers[0], servers[1]

    def release(self, servers) -> None:
        """Kill the servers and delete their directories (etcd preallocates 64 MiB of WAL)."""
        self.retired.append(self.executor.submit(_discard, list(servers)))

    def close(self) -> None:
        for futures in self.pending:
            for f in futures:
                try:
                    self.release([f.result()])
                except Exception:  # a server that failed to start left nothing running
                    pass
        self.pending.clear()
        self.executor.shutdown(wait=True)


def _launch(kind: str, workdir: Path, attempts: int = 3) -> Server:
    """Start a server; again, in a fresh directory, when its port was taken meanwhile. The harness
    picks a free port before the server binds it and many servers start at once, so a server can
    lose its port to another one, which then answers the readiness check in its place."""
    for attempt in range(attempts):
        d = workdir.with_name(f"{workdir.name}-{attempt}")
        d.mkdir(parents=True)
        try:
            server = START[kind](d, None)
        except RuntimeError as err:
            _kill_children_in(d)  # one that never became ready is still running
            if "address already in use" not in str(err).lower() or attempt + 1 == attempts:
                raise
        else:
            if listens(server.proc.pid, int(server.endpoint.rsplit(":", 1)[1])):
                return server
            server.stop(signal.SIGKILL)
            if attempt + 1 == attempts:
                raise RuntimeError(f"{kind} in {d} does not own its port {server.endpoint}")
        shutil.rmtree(d, ignore_errors=True)


def _kill_children_in(workdir: Path) -> None:
    """SIGKILL our child processes whose command line names `workdir`."""
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            if ppid == os.getpid() and str(workdir) in cmdline:
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` holds a listening TCP socket on `port` (Linux /proc)."""
    fds = Path(f"/proc/{pid}/fd")
    inodes = set()
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "0A" and cols[9] in inodes:
                return True
    return False


def _discard(servers: list[Server]) -> None:
    for s in servers:
        s.stop(signal.SIGKILL)
        shutil.rmtree(s.data_dir.parent, ignore_errors=True)


def run_side(server: Server, kind: str, body) -> list[tuple[str, object]]:
    """Run body(client, record) against one server; its normalised recording."""
    return recording(Client(server.endpoint, kind), body)


def compare(etcd: list, ours: list, server: Server | None = None) -> None:
    """The differential fixture's comparison: same labels, equal values, same number of steps."""
    note = ""
    if server is not None and server.proc.poll() is not None:
        note = f"\n{server.kind} exited with {server.proc.returncode}:\n{server.log()[-3000:]}"
    compare_recordings(etcd, ours, "kubefabric", note)


def differential_on(pair: tuple[Server, Server], body) -> list:
    """Run body on both servers of a pair at once and compare the recordings; etcd's recording."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="side") as ex:
        sides = [ex.submit(run_side, server, kind, body) for server, kind in zip(pair, KINDS)]
        recordings = [f.result() for f in sides]
    compare(recordings[0], recordings[1], pair[1])
    return recordings[0]
