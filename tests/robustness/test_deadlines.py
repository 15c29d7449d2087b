"""Request deadlines: a unary request that cannot finish within --request-timeout fails with
etcd's `etcdserver: request timed out` (UNAVAILABLE) instead of hanging, and a client whose own
deadline expires leaves no work running in the router.

The shard is made slow for real: the test holds the SQLite write lock of the shard's database
from its own connection, so the shard's next write transaction waits for it."""
from __future__ import annotations

import signal
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.client import Client
from harness.servers import start_kubefabric, start_router, start_shard
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

TIMED_OUT = "etcdserver: request timed out"


@contextmanager
def write_lock_held(data_dir: Path):
    """Another process's view: the SQLite store's one write lock (BEGIN IMMEDIATE) held while
    the block runs, released by ROLLBACK after it."""
    conn = sqlite3.connect(data_dir / "kubefabric.db", isolation_level=None, timeout=10)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


@pytest.fixture
def routed(tmp_path):
    """start(router_flags) -> (router, shard data dir): kv-router in front of a SQLite shard
    service; both killed at teardown."""
    started = []

    def start(flags: list[str]):
        data = tmp_path / "shard"
        shard = start_shard(tmp_path, "sqlite", f"sqlite://{data}")
        started.append(shard)
        router = start_router(tmp_path, [shard], flags)
        started.append(router)
        return router, data

    yield start
    for s in reversed(started):
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def put(client: Client, key: bytes, timeout: float):
    return client.kv.Put(pb.PutRequest(key=key, value=b"v"), timeout=timeout)


def test_a_write_that_cannot_finish_times_out_like_etcd(routed, say):
    router, data = routed(["--request-timeout", "1s"])
    client = Client(router.endpoint)
    try:
        put(client, b"/before", 10)
        with write_lock_held(data):
            t0 = time.monotonic()
            with pytest.raises(grpc.RpcError) as failed:
                put(client, b"/stuck", 30)
            took = time.monotonic() - t0
            assert (failed.value.code(), failed.value.details()) == (grpc.StatusCode.UNAVAILABLE, TIMED_OUT)
            assert 0.9 < took < 3, f"answered after {took:.1f}s with --request-timeout 1s"
            say(f"write against a locked shard: {failed.value.details()!r} after {took:.2f}s")
            # the router itself keeps answering while the shard is stuck
            health = health_pb2_grpc.HealthStub(client.channel)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=2).status == \
                health_pb2.HealthCheckResponse.SERVING
        assert put(client, b"/after", 15).header.revision > 0, "writes work again once unlocked"
    finally:
        client.close()


def test_a_client_deadline_cancels_the_routers_work(routed, say):
    """With a long server limit, the client gives up after 1s; gRPC cancels the handler and its
    call to the shard, so SIGTERM (which waits for requests in flight, up to the grace) finds
    nothing in flight and the router exits at once, while the shard is still locked."""
    router, data = routed(["--request-timeout", "60s", "--shutdown-grace", "30s"])
    client = Client(router.endpoint)
    try:
        with write_lock_held(data):
            with pytest.raises(grpc.RpcError) as failed:
                put(client, b"/abandoned", 1)
            assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            time.sleep(0.3)
            t0 = time.monotonic()
            router.proc.send_signal(signal.SIGTERM)
            router.proc.wait(30)
            took = time.monotonic() - t0
            say(f"router stopped {took:.2f}s after SIGTERM with the abandoned write cancelled")
            assert took < 3, f"the router waited {took:.1f}s for a request whose client had gone"
            assert "stopped cleanly" in router.log()
    finally:
        client.close()


def test_embedded_write_times_out_while_the_server_keeps_serving(tmp_path, say):
    """Another process holds the embedded store's write lock: the write fails at the request
    timeout, and meanwhile reads, health checks and status answer at once (the writer waits for
    the lock without blocking the event loop); once the lock is free, writes go on."""
    server = start_kubefabric(tmp_path, ["--request-timeout", "1s"])
    client = Client(server.endpoint)
    try:
        put(client, b"/before", 10)
        with write_lock_held(server.data_dir):
            stuck = client.kv.Put.future(pb.PutRequest(key=b"/stuck", value=b"v"), timeout=30)
            time.sleep(0.2)  # the write is waiting for the lock
            t0 = time.monotonic()
            got = client.kv.Range(pb.RangeRequest(key=b"/before"), timeout=2)
            health = health_pb2_grpc.HealthStub(client.channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2)
            read_s = time.monotonic() - t0
            assert got.kvs[0].value == b"v" and health.status == health_pb2.HealthCheckResponse.SERVING
            assert read_s < 0.5, f"a read and a health check took {read_s:.2f}s while a write waited"
            with pytest.raises(grpc.RpcError) as failed:
                stuck.result()
            took = time.monotonic() - t0 + 0.2
            assert (failed.value.code(), failed.value.details()) == (grpc.StatusCode.UNAVAILABLE, TIMED_OUT)
            assert took < 3, f"the write failed after {took:.1f}s with --request-timeout 1s"
            say(f"embedded store locked by another process: read + health check in {read_s * 1000:.0f} ms, "
                f"the write timed out after {took:.2f}s")
        assert put(client, b"/after", 15).header.revision > 0, "writes work again once unlocked"
    finally:
        client.close()
        server.proc.kill()
        server.proc.wait()
