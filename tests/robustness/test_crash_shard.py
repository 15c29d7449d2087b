"""Crash safety of the shard services: kv-router in front of one shard service on PostgreSQL or
MariaDB; the shard service is SIGKILLed at random points under concurrent write load and
restarted on the same port, KUBEFABRIC_CRASH_ITERATIONS times (default 3 per database in CI,
20 for the full run). After every restart, through the router (workload.verify_store): every
acknowledged write is there, revisions are dense and never reused, a watch from a stored revision
neither skips nor repeats; and a lease kept alive until the kill still expires.
"""
from __future__ import annotations

import os
import random
import time

import pytest

from harness.servers import start_router, start_shard
from test_crash import kill_under_load, verify_after_restart
from harness.workload import Ledger

ITERATIONS = int(os.environ.get("KUBEFABRIC_CRASH_ITERATIONS", "3"))


@pytest.mark.timeout(90 + 40 * ITERATIONS)
@pytest.mark.parametrize("backend", ["postgres", "mariadb"])
def test_shard_service_sigkill_under_load(backend, request, tmp_path, say):
    seed = int(os.environ.get("KUBEFABRIC_CRASH_SEED", random.SystemRandom().getrandbits(32)))
    rng = random.Random(seed)
    db = request.getfixturevalue(f"{backend}_server")
    name = f"crash_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    db.create_database(name)
    dsn = db.dsn(name)
    shard = start_shard(tmp_path, backend, dsn, name="shard")
    port = int(shard.endpoint.rsplit(":", 1)[1])
    router = start_router(tmp_path, [shard])
    ledger = Ledger()
    try:
        for rnd in range(1, ITERATIONS + 1):
            load, keeper, killed_at = kill_under_load(router.endpoint, shard.proc, ledger, rng, rnd)
            shard = start_shard(tmp_path, backend, dsn, name="shard", port=port)
            stats, lease_gone = verify_after_restart(router.endpoint, shard.log, keeper, ledger, rng, rnd)
            say(f"{backend} shard crash round {rnd}: {load.acked} writes acked, killed at acked "
                f"revision {killed_at} (restart head {stats['head_at_restart']}), history "
                f"{stats['events']} events to {stats['head']}, lease key gone {lease_gone:.1f}s "
                f"after the new leader opened")
        say(f"{backend} shard crash summary: {ITERATIONS} SIGKILLs survived, {len(ledger.writes)} "
            f"acknowledged writes checked, seed {seed}")
    finally:
        router.stop()
        shard.stop()
