"""Shard service failover: two replicas of a shard on one database, kv-router in front, a steady
write load from several clients; the leader is SIGKILLed (twice: each replica leads once).

Checked after the load (workload.verify_store): every acknowledged write is readable at its
revision and in the history, revisions are dense and never reused or going backwards across
the failovers, a watch from a stored revision neither skips nor repeats. Measured: the time from
the SIGKILL to the first write acknowledged by the new leader (asserted below FAILOVER_LIMIT_S).
"""
from __future__ import annotations

import os
import random
import time

import pytest

from harness.client import Client, Failure
from harness.servers import shard_role, start_router, start_shard
from harness.workload import Ledger, Load, verify_store

FAILOVER_LIMIT_S = 5.0  # "a new leader serves writes within a few seconds"
BACKENDS = ["postgres", "mariadb", "sqlite"]


def wait_leader(replicas, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in replicas:
            if r.proc.poll() is None and shard_role(r.endpoint) == "leader":
                return r
        time.sleep(0.05)
    raise AssertionError("no replica became leader")


def first_write_after(client: Client, since: float, timeout: float = 30.0) -> float:
    """Seconds from `since` until a put through the router succeeds."""
    deadline = time.monotonic() + timeout
    i = 0
    while time.monotonic() < deadline:
        resp = client.put(b"/probe/failover", str(i).encode())
        if not isinstance(resp, Failure):
            return time.monotonic() - since
        i += 1
        time.sleep(0.02)
    raise AssertionError(f"no write succeeded within {timeout}s after the leader was killed")


@pytest.mark.parametrize("backend", BACKENDS)
def test_leader_killed_under_load(backend, database, tmp_path, say):
    dsn = database(backend, "failover")
    replicas = [start_shard(tmp_path, backend, dsn, name=f"replica{i}") for i in range(2)]
    router = None
    try:
        router = start_router(tmp_path, replicas)
        ledger, rng = Ledger(), random.Random(int(os.environ.get("KUBEFABRIC_CRASH_SEED", "7")))
        load = Load(router.endpoint, ledger, 1, rng, n=4)
        probe = Client(router.endpoint, "probe")
        gaps = []
        try:
            for _ in range(2):  # each replica is killed once while it leads
                load.wait_acked(load.acked + 50)
                leader = wait_leader(replicas)
                leader.proc.kill()
                leader.proc.wait()
                killed = time.monotonic()
                gaps.append(first_write_after(probe, killed))
                survivor = wait_leader(replicas)
                assert survivor is not leader
                # the killed replica comes back as a replica of the new leader
                i = replicas.index(leader)
                port = int(leader.endpoint.rsplit(":", 1)[1])
                replicas[i] = start_shard(tmp_path, backend, dsn, name=f"replica{i}", port=port)
                assert shard_role(replicas[i].endpoint) == "replica"
            load.wait_acked(load.acked + 50)
        finally:
            problems = load.stop()
        assert not problems, problems
        stats = verify_store(probe, ledger, rng, 1)
        probe.close()
        say(f"failover {backend}: {len(ledger.writes)} acked writes kept, revisions dense to "
            f"{stats['head']}, leader killed twice, first write by the new leader after "
            f"{gaps[0]:.2f}s and {gaps[1]:.2f}s")
        assert max(gaps) < FAILOVER_LIMIT_S, f"new leader took {max(gaps):.2f}s to serve writes"
    finally:
        for s in [router, *replicas]:
            if s is not None:
                s.stop()
