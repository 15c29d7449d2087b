"""Database faults under a shard service (real PostgreSQL and MariaDB servers):

- the database is down when the service starts: it says so clearly (without the password),
  stays NOT_SERVING for readiness while live, retries with backoff and serves once the database is up;
- the database restarts under a steady write load: clients get retriable errors meanwhile,
  nothing acknowledged is lost, writes succeed again within seconds;
- a key longer than the database's index can hold is refused with a clear error naming the limit.
"""
from __future__ import annotations

import os
import random
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.client import Client, Failure
from harness.servers import start_router, start_shard
from harness.workload import Ledger, Load, verify_store

BACKENDS = ["postgres", "mariadb"]
KEY_LIMITS = {"postgres": 2676, "mariadb": 3056}


def health(endpoint: str, service: str) -> str:
    with grpc.insecure_channel(endpoint) as ch:
        try:
            resp = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2)
        except grpc.RpcError as err:
            return err.code().name
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


def wait_for(predicate, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"{what} not within {timeout}s"
        time.sleep(0.05)
    return time.monotonic() - start


def new_database(server, prefix: str) -> str:
    name = f"{prefix}_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    server.create_database(name)
    return server.dsn(name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_database_down_at_start(backend, request, tmp_path, say):
    db = request.getfixturevalue(f"{backend}_server")
    dsn = new_database(db, "down")
    password = dsn.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    db.stop()
    shard = None
    try:
        shard = start_shard(tmp_path, backend, dsn, wait=False)
        wait_for(lambda: "database unavailable" in shard.log(), 20, "a log line about the database")
        assert health(shard.endpoint, "liveness") == "SERVING"
        assert health(shard.endpoint, "readiness") == "NOT_SERVING"
        assert shard.proc.poll() is None, "the service must keep retrying, not exit"
        db.start()
        took = wait_for(lambda: health(shard.endpoint, "readiness") == "SERVING", 30,
                        "readiness after the database came up")
        say(f"{backend} down at start: ready {took:.2f}s after the database came up")
        log = shard.log()
        assert "retrying in" in log
        assert password not in log, "the DSN password appeared in the log"
        assert "Traceback" not in log
    finally:
        if not db.running():
            db.start()
        if shard is not None:
            shard.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_database_restart_under_load(backend, request, tmp_path, say):
    db = request.getfixturevalue(f"{backend}_server")
    shard = start_shard(tmp_path, backend, new_database(db, "restart"))
    router = start_router(tmp_path, [shard])
    try:
        ledger, rng = Ledger(), random.Random(11)
        load = Load(router.endpoint, ledger, 1, rng, n=4)
        probe = Client(router.endpoint, "probe")
        try:
            load.wait_acked(100)
            db.restart()
            acked = load.acked
            took = wait_for(lambda: load.acked > acked + 20, 30, "writes after the restart")
            load.wait_acked(load.acked + 50)
        finally:
            problems = load.stop()
        assert not problems, problems
        assert not (set(ledger.failures) - {"UNAVAILABLE", "DEADLINE_EXCEEDED"}), (
            f"non-retriable errors during the restart: {dict(ledger.failures)} {dict(ledger.samples)}")
        stats = verify_store(probe, ledger, rng, 1)
        probe.close()
        say(f"{backend} restarted under load: {len(ledger.writes)} acked writes kept, "
            f"{sum(ledger.failures.values())} retriable failures, writing again "
            f"{took:.2f}s after the database was back; head {stats['head']}")
    finally:
        router.stop()
        shard.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_key_longer_than_the_index(backend, request, tmp_path):
    db = request.getfixturevalue(f"{backend}_server")
    shard = start_shard(tmp_path, backend, new_database(db, "longkey"))
    router = start_router(tmp_path, [shard])
    c = Client(router.endpoint, "kf")
    try:
        limit = KEY_LIMITS[backend]
        ok = c.put(b"k" * limit, b"v")
        assert not isinstance(ok, Failure), ok
        too_long = c.put(b"k" * (limit + 1), b"v")
        assert too_long == Failure("INVALID_ARGUMENT", f"etcdserver: key is too large: this shard's "
                                   f"{'postgresql' if backend == 'postgres' else 'mysql'} index "
                                   f"holds keys of at most {limit} bytes"), too_long
        assert len(c.get(b"k" * limit).kvs) == 1
    finally:
        c.close()
        router.stop()
        shard.stop()
