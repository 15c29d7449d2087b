"""Automatic compaction, with etcd's two modes.

periodic: every `retention` (at most every hour... checked every retention/10, min 1 s) compact at
the newest revision that is at least `retention` old. revision: every 5 minutes compact at
(current revision - retention).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from argparse import ArgumentTypeError

from kubefabric.config import duration
from kubefabric.etcd.errors import EtcdError
from kubefabric.shard.surface import ShardSurface

log = logging.getLogger("kubefabric.compaction")

REVISION_MODE_PERIOD = 300.0


class AutoCompactor:
    def __init__(self, shard: ShardSurface, mode: str, retention: float) -> None:
        self.shard = shard
        self.mode = mode
        self.retention = retention
        self.task: asyncio.Task | None = None

    @staticmethod
    def parse(mode: str, retention: str) -> tuple[str, float]:
        if mode == "revision":
            value = int(retention)
            if value < 0:
                raise ValueError("must not be negative")
            return mode, float(value)
        if retention.isdigit():
            return mode, float(retention) * 3600.0  # etcd: a bare number means hours
        try:
            return mode, duration(retention)
        except ArgumentTypeError as err:
            raise ValueError(str(err)) from None

    def start(self) -> None:
        if self.retention > 0:
            self.task = asyncio.create_task(self._run(), name="auto-compaction")
            log.info("auto compaction: %s, retention %s", self.mode, self.retention)

    def stop(self) -> None:
        if self.task:
            self.task.cancel()

    async def _run(self) -> None:
        if self.mode == "revision":
            while True:
                await asyncio.sleep(REVISION_MODE_PERIOD)
                await self._compact(self.shard.state.committed - int(self.retention))
        step = max(1.0, self.retention / 10)
        seen: deque[tuple[float, int]] = deque()
        while True:
            now = time.monotonic()
            seen.append((now, self.shard.state.committed))
            target = 0
            while seen and seen[0][0] <= now - self.retention:
                target = seen.popleft()[1]
            if target:
                await self._compact(target)
            await asyncio.sleep(step)

    async def _compact(self, revision: int) -> None:
        if revision <= self.shard.state.compact_rev or revision < 1:
            return
        try:
            await self.shard.compact(revision)
            log.info("auto compaction at revision %d", revision)
        except EtcdError as err:
            log.warning("auto compaction at revision %d: %s", revision, err.message)
