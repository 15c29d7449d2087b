"""`kubefabric serve --workers N`: the parent's side. The parent serves clients as with one
process and starts N-1 worker processes (kv_router.worker) that serve the same client URLs, and
supervises them. Two kinds:

- Embedded (no --shard, no --topology): the parent is the embedded shard's one writer (it holds
  the SQLite file's lease, runs compaction and lease expiry); the workers read the file and send
  the rest to the parent (below).
- Routed (--shard or --topology, every shard a shard service): each worker is a kv-router of its
  own in front of the same shard services, as several kv-router replicas are; the shard
  services keep all state, so nothing passes between the processes. The parent alone compacts
  (--auto-compaction-*) and looks for misplaced keys; every process follows the topology file.
  An embedded shard in the topology is refused (kv_router.shards.open_spec): each process would
  open its SQLite file.

- Ports: every process listens on the client URLs with SO_REUSEPORT (gRPC's "grpc.so_reuseport"
  option, which KubeFabric otherwise turns off), so the kernel spreads new connections over the
  processes; a connection stays with the process that accepted it. Since a port shared this way
  also accepts a stranger that sets SO_REUSEPORT, the parent first binds each address plainly
  and refuses to start when one is taken. Port 0 is refused (each process would get its own).
- Embedded: the workers reach the parent through its Shard API (kubefabric.shardsvc.service) on a unix
  socket in a private directory (mode 0700: only this user can connect; the API has no etcd
  auth of its own). Writes, leases, compaction, alarms and auth changes go there; watches follow
  its Feed; reads are the workers' own (kv_router.workershard says why they are linearizable).
  The writes' stream and the Feed ride the Shard API's batch lane, a second unix socket there
  (kubefabric.shardsvc.lane: the same messages as plain frames, cheaper than gRPC's).
- Start: the workers start before the parent listens, and each reports ready (one line on a
  socket pair) once it serves: when the client port answers, every process serves. A worker that
  cannot start stops the parent with its reason (StartupError).
- Supervision: a worker that exits is logged and started again (after a pause that grows while
  it keeps dying young). The socket pair is the workers' lifeline: a worker whose parent is
  gone (even SIGKILLed) sees it closed and stops. On SIGTERM or SIGINT the parent stops the
  workers first (SIGTERM: they finish in-flight requests, which may need the parent), then
  itself. Workers run in their own session, so a terminal's Ctrl-C reaches the parent only.
- /metrics: worker i (1..N-1) serves its own on --metrics-address's port + i (its requests and
  watches; the shard's gauges are the same in every process); the parent on the port itself.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import cast

from kubefabric.etcd import errors
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2_grpc
from kubefabric.rpc.server import bind_problem, listen, make_server
from kubefabric.rpc.startup import StartupError
from kubefabric.shard.core import Shard
from kubefabric.shard.surface import ShardSurface
from kubefabric.shardsvc.lane import LaneServer
from kubefabric.shardsvc.node import ShardNode
from kubefabric.shardsvc.service import ShardService

from .server import listen_address

log = logging.getLogger("kubefabric.workers")

SPEC_ENV = "KUBEFABRIC_WORKER_SPEC_INTERNAL"  # the worker's settings (JSON); not a flag
READY_WAIT_S = 60.0       # how long a starting worker may take to serve
STOP_EXTRA_S = 5.0        # beyond --shutdown-grace, before a stopping worker is killed
YOUNG_S = 10.0            # a worker that dies younger than this is restarted after a longer pause
RESTART_PAUSE_MAX_S = 30.0


def worker_count(args) -> int:
    """--workers as a number of processes (0: one per CPU)."""
    return args.workers or len(os.sched_getaffinity(0)) or 1


class _ParentNode:
    """The ShardNode surface ShardService needs, over the parent's own embedded shard: always
    its leader (a lost lease makes writes fail with NOT_LEADER until it is taken again)."""

    def __init__(self, shard: Shard):
        self.shard = shard
        self.name = "default"
        self.address = ""
        self.leader_address = ""

    def local(self) -> Shard:
        return self.shard

    def leader_stub(self):
        raise errors.NOT_LEADER


class _Worker:
    def __init__(self, index: int):
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.lifeline: socket.socket | None = None
        self.started = 0.0


class Workers:
    @classmethod
    def from_args(cls, args) -> "Workers | None":
        """The workers --workers asks for (None: this process alone); StartupError for a
        combination they cannot serve."""
        n = worker_count(args)
        if n <= 1:
            return None
        addresses = [listen_address(u.strip()) for u in args.listen_client_urls.split(",")
                     if u.strip()]
        for address in addresses:
            if address.endswith(":0"):
                raise StartupError(f"--listen-client-urls: port 0 cannot be shared by --workers "
                                   f"{n} processes; name a port")
        return cls(n - 1, args, addresses)

    def __init__(self, count: int, args, addresses: list[str]):
        self.args = args
        self.addresses = addresses
        self.workers = [_Worker(i) for i in range(1, count + 1)]
        self.endpoint = ""
        self._dir = ""
        self._server = None
        self._service: ShardService | None = None
        self._tasks: list[asyncio.Task] = []
        self._stopping = False
        self._lane: LaneServer | None = None
        self.routed = bool(args.shard or args.topology)

    async def start(self, shard: ShardSurface) -> None:
        """Embedded: serve the Shard API privately. Start every worker and wait until each
        serves."""
        problem = bind_problem(self.addresses)
        if problem:
            raise StartupError(f"--listen-client-urls: cannot listen on {problem}")
        if self.routed:
            await asyncio.gather(*(self._spawn(w) for w in self.workers))
            self._supervise_all()
            log.info("serving with %d kv-router processes on the same client URLs: this one (pid "
                     "%d) and worker pids %s, each in front of the same shard services",
                     len(self.workers) + 1, os.getpid(), ", ".join(str(w.proc.pid) for w in self.workers))
            return
        assert isinstance(shard, Shard)  # the embedded shard (open_shards made no other)
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        self._dir = tempfile.mkdtemp(prefix="kubefabric-workers-",
                                     dir=runtime if runtime and os.path.isdir(runtime) else None)
        path = os.path.join(self._dir, "shard.sock")
        self._server, _ = make_server(self.args.max_request_bytes)
        # (_ParentNode has the part of ShardNode that ShardService uses)
        self._service = ShardService(cast(ShardNode, _ParentNode(shard)))
        shard_pb2_grpc.add_ShardServicer_to_server(self._service, self._server)
        await listen(self._server, [(f"unix:{path}", None)], "--workers")
        self.endpoint = f"unix:{path}"
        # the workers' reads and writes on the batch lane (kubefabric.shardsvc.lane)
        self._lane = LaneServer(self._service, self.args.max_request_bytes)
        self._service.lane = await self._lane.start(f"unix:{os.path.join(self._dir, 'lane.sock')}")
        await asyncio.gather(*(self._spawn(w) for w in self.workers))
        self._supervise_all()
        log.info("serving with %d processes on the same client URLs: this one (pid %d, the "
                 "writer; its Shard API for the workers on %s) and worker pids %s",
                 len(self.workers) + 1, os.getpid(), self.endpoint,
                 ", ".join(str(w.proc.pid) for w in self.workers))

    def _supervise_all(self) -> None:
        self._tasks = [asyncio.create_task(self._supervise(w), name=f"worker-{w.index}")
                       for w in self.workers]

    async def _spawn(self, worker: _Worker) -> None:
        """Start one worker and wait until it serves (StartupError with its reason if not)."""
        ours, theirs = socket.socketpair()
        spec = {"index": worker.index, "parent": self.endpoint, "routed": self.routed,
                "lifeline": theirs.fileno(), "args": _plain(self.args)}
        env = {**os.environ, SPEC_ENV: json.dumps(spec)}
        try:
            worker.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kv_router.worker", pass_fds=(theirs.fileno(),), env=env,
                start_new_session=True)
        finally:
            theirs.close()
        worker.lifeline, worker.started = ours, time.monotonic()
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(READY_WAIT_S):
                line = await loop.sock_recv(ours, 64)
        except TimeoutError:
            line = b""
        if line != b"ready\n":
            await self._end(worker)
            raise StartupError(f"--workers: worker {worker.index} did not start (exit "
                               f"{worker.proc.returncode}); its log lines above say why")

    async def _supervise(self, worker: _Worker) -> None:
        """Start the worker again whenever it exits, until the parent stops."""
        pause = 0.5
        while True:
            code = await worker.proc.wait()
            if self._stopping:
                return
            young = time.monotonic() - worker.started < YOUNG_S
            pause = min(pause * 2, RESTART_PAUSE_MAX_S) if young else 0.5
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
            log.warning("worker %d (pid %d) ended (%s); starting it again in %.1fs",
                        worker.index, worker.proc.pid, how, pause)
            worker.lifeline.close()
            await asyncio.sleep(pause)
            try:
                await self._spawn(worker)
                log.info("worker %d serves again (pid %d)", worker.index, worker.proc.pid)
            except StartupError as err:
                log.error("%s", err)

    async def stop(self) -> None:
        """Stop every worker (SIGTERM: they finish in-flight requests), then the Shard API."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*(self._end(w) for w in self.workers))
        if self._service is not None:
            self._service.end_streams()
            self._service.close_feeds()
        if self._lane is not None:
            await self._lane.stop(1.0)
        if self._server is not None:
            await self._server.stop(1.0)
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    async def _end(self, worker: _Worker) -> None:
        proc = worker.proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(self.args.shutdown_grace + STOP_EXTRA_S):
                    await proc.wait()
            except TimeoutError:
                log.warning("worker %d (pid %d) did not stop in time: killing it", worker.index,
                            proc.pid)
                proc.kill()
                await proc.wait()
        if worker.lifeline is not None:
            worker.lifeline.close()


def _plain(args) -> dict:
    """The flags' values, as JSON can carry them (the worker rebuilds its Namespace)."""
    out = {}
    for name, value in vars(args).items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            out[name] = str(value) if isinstance(value, str) else value
    out["data_dir"] = os.path.abspath(args.data_dir)
    return out
