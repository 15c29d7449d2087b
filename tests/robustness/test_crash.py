"""Crash safety: SIGKILL `kubefabric serve` at random points under concurrent write load, restart it
on the same data dir, and check the store after every restart (workload.verify_store):

- every acknowledged write is there: its changes at its revision (history and Range revision=),
  and the newest acked value of every key unless a write with an unknown outcome came later;
- revisions are dense (2..head all carry events) and never reused: each acked revision holds
  exactly its write's changes, and the first write after a restart lands above the old head;
- a watch from a random stored revision, opened while writes go on, neither skips nor repeats;
- a lease kept alive until the kill still expires after the restart: its key goes within
  TTL + 3 s of the restarted shard's open (its log line; else the server answering).

KUBEFABRIC_CRASH_ITERATIONS (default 5; 20 for the full run) sets the number of kills,
KUBEFABRIC_CRASH_SEED replays a run (the seed is printed).
"""
from __future__ import annotations

import os
import random
import re
import threading
import time
from datetime import datetime

import pytest

from harness.client import Client, Failure
from harness.workload import Ledger, LeaseKeeper, Load, verify_store

ITERATIONS = int(os.environ.get("KUBEFABRIC_CRASH_ITERATIONS", "5"))
LEASE_TTL = 2          # seconds (the shortest lease KubeFabric grants)
LEASE_SLACK = 3.0      # seconds past the TTL (from the restarted shard's open) by which an
                       # expired lease's key must be gone
KILL_AFTER = (0.2, 1.5)  # seconds of load (from the first acknowledged write) before the SIGKILL


class GoneProbe(threading.Thread):
    """Polls `key` every 50 ms from its creation (right after a restart) until it is gone, so the
    moment a lease expired is known while other checks run."""

    def __init__(self, endpoint: str, key: bytes):
        super().__init__(name="gone-probe", daemon=True)
        self.endpoint, self.key = endpoint, key
        self.started = time.time()
        self.gone_at: float | None = None  # time.time()
        self.last = None
        self.done = threading.Event()
        self.start()

    def run(self) -> None:
        client = Client(self.endpoint, "probe")
        try:
            while not self.done.is_set():
                self.last = client.get(self.key)
                if not isinstance(self.last, Failure) and not self.last.kvs:
                    self.gone_at = time.time()
                    return
                self.done.wait(0.05)
        finally:
            client.close()

    def gone_after(self, since: float, limit: float) -> float:
        """Seconds from `since` (time.time()) until the key was gone; fails beyond `limit`."""
        self.join(max(0.0, since + limit + 1 - time.time()))
        self.done.set()
        took = None if self.gone_at is None else self.gone_at - since
        assert took is not None and took <= limit, (
            f"{self.key!r} (on a lease) still there {limit}s after the restart: {self.last}")
        return took


def opened_at(log: str) -> float | None:
    """time.time() of the newest 'shard leader' line of a text log: the moment leases restart."""
    stamps = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ \S+ shard leader", log, re.M)
    return datetime.strptime(stamps[-1], "%Y-%m-%d %H:%M:%S,%f").timestamp() if stamps else None


def kill_under_load(endpoint: str, proc, ledger: Ledger, rng: random.Random, rnd: int):
    """Write through `endpoint` (and keep a lease alive) until a random moment, SIGKILL `proc`;
    returns (load, lease keeper, newest acknowledged revision at the kill)."""
    keeper = LeaseKeeper(endpoint, f"/lease/{rnd}".encode(), LEASE_TTL, ledger, rnd)
    load = Load(endpoint, ledger, rnd, rng)
    load.wait_acked()
    time.sleep(rng.uniform(*KILL_AFTER))
    proc.kill()
    proc.wait()
    killed_at = ledger.max_rev
    problems = load.stop()
    keeper.stop()
    assert not problems, problems
    return load, keeper, killed_at


def verify_after_restart(endpoint: str, log, keeper, ledger: Ledger, rng: random.Random, rnd: int):
    """verify_store through `endpoint`, then the kept lease must expire after the shard that
    restarted (its log: `log()`) opened; returns (stats, seconds until the lease key was gone)."""
    probe = GoneProbe(endpoint, keeper.key)
    client = Client(endpoint)
    try:
        stats = verify_store(client, ledger, rng, rnd)
        opened = opened_at(log()) or probe.started
        return stats, probe.gone_after(opened, LEASE_TTL + LEASE_SLACK)
    finally:
        client.close()


@pytest.mark.timeout(60 + 30 * ITERATIONS)
def test_sigkill_under_load_loses_no_acknowledged_write(kf, tmp_path, say):
    seed = int(os.environ.get("KUBEFABRIC_CRASH_SEED", random.SystemRandom().getrandbits(32)))
    rng = random.Random(seed)
    data = tmp_path / "kf-data"
    ledger = Ledger()
    say(f"\ncrash: {ITERATIONS} iterations, seed {seed} (KUBEFABRIC_CRASH_SEED to replay)")
    server = kf(data)
    t_start = time.monotonic()
    checked = 0
    for rnd in range(1, ITERATIONS + 1):
        load, keeper, killed_at = kill_under_load(server.endpoint, server.proc, ledger, rng, rnd)
        server = kf(data)
        stats, lease_gone = verify_after_restart(server.endpoint, server.log, keeper, ledger, rng, rnd)
        checked += stats["range_reads"]
        say(f"crash round {rnd}: {load.acked} writes acked, killed at acked revision {killed_at} "
            f"(restart head {stats['head_at_restart']}), {sum(ledger.failures.values())} failed "
            f"requests so far, history {stats['events']} events to revision {stats['head']}, "
            f"{stats['range_reads']} Range-at-revision reads, {stats['keys']} newest values, watch "
            f"from {stats['replay_from']} saw {stats['replayed']} events, lease key gone "
            f"{lease_gone:.1f}s after the shard opened")
    say(f"crash summary: {ITERATIONS} SIGKILLs survived, {len(ledger.writes)} acknowledged writes all "
        f"checked against the history, {checked} Range-at-revision reads, final revision "
        f"{stats['head']}, {time.monotonic() - t_start:.1f}s, seed {seed}")
