"""kv-router's knowledge of misplaced keys (kubefabric/topology/misplaced.py): keys a shard holds
that the topology routes to another shard.

At start-up and after each topology reload every shard is scanned in the background (a bounded
scan: misplaced.SCAN_BUDGET keys examined per shard); what it finds is logged (a WARNING per
shard naming the first keys and their owners, and how to move them) and exported as
`kubefabric_topology_misplaced_keys{shard}`. Reads never wait for it: until a shard is known
clean, cross-shard reads of it take the careful path (crossrange.owned_part), and a read that
meets a misplaced key marks its shard again and says so (at most once a minute per shard).
"""
from __future__ import annotations

import asyncio
import logging
import time

from kubefabric.telemetry import metrics
from kubefabric.topology import misplaced
from kubefabric.topology.model import show

log = logging.getLogger("kubefabric.router.misplaced")

HOW_TO_MOVE = "see docs/topology.md#misplaced-keys (kubefabric topology check FILE --live, kubefabric topology move FILE)"
MET_LOG_EVERY_S = 60.0


class Misplacement:
    def __init__(self, routed):
        self.routed = routed
        self.placement: dict[str, misplaced.Placement] = {}
        self._task: asyncio.Task | None = None
        self._logged: dict[str, float] = {}

    @property
    def topology(self):
        return self.routed.topology

    # ---- what reads ask (crossrange.owned_part) ----

    def is_clean(self, name: str) -> bool:
        p = self.placement.get(name)
        return p is not None and p.clean

    def met(self, name: str, keys: list[bytes]) -> None:
        self.placement.setdefault(name, misplaced.Placement()).met()
        metrics.misplaced_keys.labels(name).set(max(self.placement[name].found, len(keys)))
        now = time.monotonic()
        if now - self._logged.get(name, -MET_LOG_EVERY_S) >= MET_LOG_EVERY_S:
            self._logged[name] = now
            log.warning("shard %s holds key %s, which the topology routes to shard %s: reads "
                        "skip it; %s", name, show(keys[0]), self.topology.route(keys[0]), HOW_TO_MOVE)

    # ---- the background scan ----

    def check(self, why: str) -> None:
        """Scan every shard again (replacing a scan still running)."""
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.get_running_loop().create_task(self._scan_all(why),
                                                            name="misplaced-keys-scan")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _scan_all(self, why: str) -> None:
        topology = self.topology
        shards = dict(self.routed.shards)
        results = await asyncio.gather(*(self._scan_one(name, shard, topology, why)
                                          for name, shard in shards.items()))
        total = sum(found for found in results if found is not None)
        if not any(r is None for r in results) and total == 0:
            log.info("misplaced keys (%s): none on %d shard(s)", why, len(shards))

    async def _scan_one(self, name: str, shard, topology, why: str) -> int | None:
        try:
            result = await misplaced.scan(shard, name, topology)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a shard down: its reads stay careful; the next reload retries
            log.warning("misplaced keys (%s): cannot scan shard %s: %s", why, name, exc)
            return None
        if topology is not self.topology:
            return None  # reloaded meanwhile: the new scan reports
        p = self.placement.setdefault(name, misplaced.Placement())
        p.scanned(result)
        metrics.misplaced_keys.labels(name).set(len(result.misplaced))
        if result.misplaced:
            sample = ", ".join(f"{show(k)} -> {owner}" for k, owner in result.misplaced[:misplaced.SAMPLE])
            more = "" if result.complete else f" (scan stopped after {result.examined} keys: maybe more)"
            log.warning("misplaced keys (%s): shard %s holds %d key(s) the topology routes to "
                        "other shards%s: %s%s; reads skip them; %s", why, name, len(result.misplaced), more, sample,
                        ", ..." if len(result.misplaced) > misplaced.SAMPLE else "", HOW_TO_MOVE)
        elif not result.complete:
            log.warning("misplaced keys (%s): scan of shard %s stopped after %d keys without "
                        "finding one (rules that are not prefixes make every key suspect); reads "
                        "of it keep checking", why, name, result.examined)
        return len(result.misplaced)
