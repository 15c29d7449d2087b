"""`kubefabric serve --workers 2`: two processes on one port behave as one server (reads on one
see every write acknowledged by the other at once, a watch "from now" on one starts after a write
acknowledged by the other, headers never go back on a connection), the randomized history with
its watches checks out across them, a worker killed with SIGKILL is started again while clients
reconnect, and the parent's end ends the workers. The consistency tests also run against two
kv-router processes in front of a shard service (`--workers 2 --shard ...`; the rest of that
mode: test_router_workers.py). The differential suite runs on both (tests/conftest.py's
"workers" and "router-workers" targets)."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from types import SimpleNamespace

import grpc
import pytest

from harness.client import Client, answering_pid, spread_channels
from harness.histload import run_history
from harness.servers import free_port, pid_alive
from harness.stream import WatchStream
from harness.waiting import wait_for
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.etcdserverpb import rpc_pb2_grpc as rpc


# "kubefabric-w2": the embedded server's writer and a worker reading its SQLite file;
# "routed-sqlite-w2": two kv-router processes in front of one shard service (tests/conftest.py)
LAUNCHES = ["kubefabric-w2", "routed-sqlite-w2"]


@pytest.mark.parametrize("launch", LAUNCHES)
def test_a_write_through_one_process_is_seen_by_the_other_at_once(server_factory, launch):
    server = server_factory(launch)
    a, b = spread_channels(server.endpoint)
    pids = {answering_pid(a), answering_pid(b)}
    assert server.proc.pid in pids and len(pids) == 2, pids
    kv = [rpc.KVStub(a), rpc.KVStub(b)]
    seen = [0, 0]  # the newest header revision each connection reported
    for i in range(300):
        w, r = i % 2, 1 - i % 2  # write on one, read on the other, both ways
        put = kv[w].Put(pb.PutRequest(key=b"k%d" % (i % 7), value=b"v%d" % i), timeout=10)
        got = kv[r].Range(pb.RangeRequest(key=b"k%d" % (i % 7)), timeout=10)
        assert [kv.value for kv in got.kvs] == [b"v%d" % i], (i, got)
        assert got.kvs[0].mod_revision == put.header.revision
        assert got.header.revision >= put.header.revision
        for side, rev in ((w, put.header.revision), (r, got.header.revision)):
            assert rev >= seen[side], f"connection {side}: header revision went back {seen[side]} -> {rev}"
            seen[side] = rev
    # a watch from now, opened on one process right after a write acknowledged by the other,
    # starts after that write (etcd's rule: nothing acknowledged before it is delivered)
    for i in range(5):
        kv[0].Put(pb.PutRequest(key=b"w", value=b"before%d" % i), timeout=10)
        stream = WatchStream(SimpleNamespace(watch=rpc.WatchStub(b)))
        try:
            created = stream.created(b"w")
            assert created.created, created
            kv[0].Put(pb.PutRequest(key=b"w", value=b"after%d" % i), timeout=10)
            events = [e for r in stream.events(1) for e in r.events]
            assert [e.kv.value for e in events] == [b"after%d" % i], (created, events)
        finally:
            stream.close()
    a.close()
    b.close()


@pytest.mark.parametrize("launch", LAUNCHES)
def test_a_progress_request_covers_a_write_acknowledged_by_the_other_process(server_factory, launch):
    """etcd answers a progress request with its current revision: a write acknowledged by the
    other process before the request is covered, though this process's feed may not have
    delivered it yet (CI once saw the older revision on the differential test_progress_request)."""
    server = server_factory(launch)
    a, b = spread_channels(server.endpoint)
    if answering_pid(a) != server.proc.pid:
        a, b = b, a  # writes on the parent (the writer), the watch on the worker (fed by it)
    kv = rpc.KVStub(a)
    stream = WatchStream(SimpleNamespace(watch=rpc.WatchStub(b)))
    stop = threading.Event()

    def writes_elsewhere():  # keep the feed to the watching process busy
        while not stop.is_set():
            kv.Put(pb.PutRequest(key=b"busy", value=b"x" * 512), timeout=10)
    busy = [threading.Thread(target=writes_elsewhere) for _ in range(8)]
    try:
        assert stream.created(b"watched").created
        for t in busy:
            t.start()
        for i in range(300):
            put = kv.Put(pb.PutRequest(key=b"unwatched", value=b"%d" % i), timeout=10)
            stream.progress()
            answer = stream.recv(10)
            assert answer.watch_id == -1 and not answer.events, answer
            assert answer.header.revision >= put.header.revision, (i, put.header, answer.header)
    finally:
        stop.set()
        for t in busy:
            t.join(15) if t.is_alive() else None
        stream.close()
        a.close()
        b.close()


@pytest.mark.parametrize("launch", LAUNCHES)
def test_history_across_two_processes(server_factory, say, launch):
    """harness.histload's randomized history (puts, deletes, compare-and-swaps, two-key txns,
    reads, paginated lists, a lease's keys revoked, watches from everywhere) with every client's
    calls alternating between the two processes: linearizable per key, revisions in order, and
    every watch ordered, unique, atomic, reliable, resumable and bookmarkable."""
    server = server_factory(launch, ["--watch-progress-notify-interval=300ms"])
    run_history(server.endpoint, say, one_shard=True)


def test_killed_worker_is_started_again_and_the_parent_ends_the_workers(server_factory):
    server = server_factory("kubefabric-w2")
    a, b = spread_channels(server.endpoint)
    parent = server.proc.pid
    on_worker = a if answering_pid(a) != parent else b
    worker = answering_pid(on_worker)
    Client(server.endpoint).put(b"before", b"1")
    os.kill(worker, signal.SIGKILL)
    # the parent logs it and starts another worker, which serves the same port
    wait_for(lambda: "serves again" in server.log(), 30, f"worker {worker} restarted:\n{server.log()}")
    assert f"(pid {worker}) ended (killed by SIGKILL)" in server.log()
    channels = spread_channels(server.endpoint)
    pids = {answering_pid(c) for c in channels}
    assert parent in pids and worker not in pids and len(pids) == 2, (parent, worker, pids)
    new_worker = (pids - {parent}).pop()
    # the client whose connection died reconnects (to either process) and is served
    kv = rpc.KVStub(on_worker)

    def served():
        try:
            return kv.Range(pb.RangeRequest(key=b"before"), timeout=2).kvs
        except grpc.RpcError:
            return None
    assert [x.value for x in wait_for(served, 15, "the old worker's client served again")] == [b"1"]
    for c in (*channels, a, b):
        c.close()
    # SIGTERM: the workers stop first, then the parent, cleanly
    assert server.stop(signal.SIGTERM, timeout=30) == 0, server.log()
    assert not pid_alive(new_worker), "a worker outlived its parent's SIGTERM"


def test_workers_stop_when_their_parent_is_killed(server_factory):
    server = server_factory("kubefabric-w2")
    channels = spread_channels(server.endpoint)
    worker = next(p for p in map(answering_pid, channels) if p != server.proc.pid)
    for c in channels:
        c.close()
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)
    wait_for(lambda: not pid_alive(worker), 20, f"worker {worker} stopped after its parent was killed")
    assert "the parent process is gone" in server.log()
    # it removed the parent's private socket directory (the parent had no chance to)
    socket_dirs = re.findall(r"Shard API for the workers on unix:(\S+)/shard\.sock", server.log())
    assert socket_dirs and not any(os.path.exists(d) for d in socket_dirs), socket_dirs


@pytest.mark.parametrize("flags, says", [
    (["--listen-client-urls", "http://127.0.0.1:0"], "port 0 cannot be shared"),
    (["--workers", "300"], "argument --workers: 300 is out of range"),
])
def test_refused_combinations(tmp_path, flags, says):
    argv = [sys.executable, "-m", "kubefabric.cli", "serve", "--workers", "2",
            "--data-dir", str(tmp_path / "data"), "--listen-client-urls",
            f"http://127.0.0.1:{free_port()}", *flags]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    assert says in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_a_taken_port_is_refused_even_though_workers_share_theirs(tmp_path):
    """SO_REUSEPORT would let a second `kubefabric serve --workers` join a port in use; the
    parent checks the port is free first."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [sys.executable, "-m", "kubefabric.cli", "serve", "--workers", "2",
                "--data-dir", str(tmp_path / "data"), "--listen-client-urls",
                f"http://127.0.0.1:{port}"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in out.stderr, out.stderr
