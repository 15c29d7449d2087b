"""Crash safety: SIGKILL `kubefabric serve` at random points under concurrent write load, restart it
on the same data dir, and check the store after every restart (workload.verify_store):

- every acknowledged write is there: its changes at its revision (history and Range revision=),
  and the newest acked value of every key unless a write with an unknown outcome came later;
- revisions are dense (2..head all carry events) and never reused: each acked revision holds
  exactly its write's changes, and the first write after a restart lands above the old head;
- a watch from a random stored revision, opened while writes go on, neither skips nor repeats;
- a lease kept alive until the kill still expires after the restart: its key goes within
  TTL + 4 s of the restart command.

KUBEFABRIC_CRASH_ITERATIONS (default 5; 20 for the full run) sets the number of kills,
KUBEFABRIC_CRASH_SEED replays a run (the seed is printed).
"""
from __future__ import annotations

import os
import random
import threading
import time

from harness.client import Client, Failure
from workload import Ledger, LeaseKeeper, Load, verify_store

ITERATIONS = int(os.environ.get("KUBEFABRIC_CRASH_ITERATIONS", "5"))
LEASE_TTL = 2          # seconds (the shortest lease KubeFabric grants)
LEASE_SLACK = 4.0      # seconds past the TTL (counted from the restart command, so including the
                       # server's start-up) within which an expired lease's key must be gone
KILL_AFTER = (0.2, 1.5)  # seconds of load before the SIGKILL


class GoneProbe(threading.Thread):
    """Polls `key` every 50 ms until it is gone, so the time a lease took to expire after a restart
    is measured while other checks run. `since`: the time.monotonic() of the restart."""

    def __init__(self, endpoint: str, key: bytes, since: float):
        super().__init__(name="gone-probe", daemon=True)
        self.endpoint, self.key = endpoint, key
        self.started = since
        self.gone_at: float | None = None
        self.last = None
        self.done = threading.Event()
        self.start()

    def run(self) -> None:
        client = Client(self.endpoint, "probe")
        try:
            while not self.done.is_set():
                self.last = client.get(self.key)
                if not isinstance(self.last, Failure) and not self.last.kvs:
                    self.gone_at = time.monotonic()
                    return
                self.done.wait(0.05)
        finally:
            client.close()

    def seconds(self, limit: float) -> float:
        """Seconds from `since` until the key was gone; fails if that exceeds `limit`."""
        self.join(max(0.0, self.started + limit + 1 - time.monotonic()))
        self.done.set()
        took = None if self.gone_at is None else self.gone_at - self.started
        assert took is not None and took <= limit, (
            f"{self.key!r} (on a lease) still there {limit}s after restart: {self.last}")
        return took


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
        keeper = LeaseKeeper(server.endpoint, f"/lease/{rnd}".encode(), LEASE_TTL, ledger, rnd)
        load = Load(server.endpoint, ledger, rnd, rng)
        time.sleep(rng.uniform(*KILL_AFTER))
        server.proc.kill()
        server.proc.wait()
        killed_at = ledger.max_rev
        problems = load.stop()
        keeper.stop()
        assert not problems, problems
        assert load.acked > 0, f"no write was acknowledged in round {rnd}:\n{server.log()[-3000:]}"

        restarted = time.monotonic()
        server = kf(data)
        probe = GoneProbe(server.endpoint, keeper.key, restarted)
        client = Client(server.endpoint)
        try:
            stats = verify_store(client, ledger, rng, rnd)
            lease_gone = probe.seconds(LEASE_TTL + LEASE_SLACK)
        finally:
            client.close()
        checked += len(ledger.of_round(rnd))
        say(f"crash round {rnd}: {load.acked} writes acked, killed at acked revision {killed_at} "
            f"(restart head {stats['head_at_restart']}), {sum(ledger.failures.values())} failed "
            f"requests so far, history {stats['events']} events to revision {stats['head']}, "
            f"{stats['range_reads']} Range-at-revision reads, {stats['keys']} newest values, watch "
            f"from {stats['replay_from']} saw {stats['replayed']} events, lease key gone "
            f"{lease_gone:.1f}s after restart")
    say(f"crash summary: {ITERATIONS} SIGKILLs survived, {len(ledger.writes)} acknowledged writes "
        f"({checked} checked by Range at their revision, all against the history), final revision "
        f"{stats['head']}, {time.monotonic() - t_start:.1f}s, seed {seed}")
