"""A topology file that is re-read on SIGHUP and when it changes on disk (its modification time,
polled every POLL_S seconds): kv-router's routing and a shard service's index settings both
follow the file this way. What a reload does, and what it refuses, is the subclass's."""
from __future__ import annotations

import asyncio
import inspect
import os
import signal

from kubefabric.lifecycle import start_every

POLL_S = 2.0


class TopologyFileWatch:
    """Subclasses define `reload(why)` (a plain or a coroutine method); it is called with
    "SIGHUP" or "file changed", one call at a time from the event loop."""

    task_name = "topology-file"

    def __init__(self, path: str):
        self.path = path
        self.mtime = _mtime(path)
        self.task: asyncio.Task | None = None

    def reload(self, why: str):
        raise NotImplementedError

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self._reload("SIGHUP")))
        self.task = start_every(POLL_S, self._check, None, self.task_name)

    def stop(self) -> None:
        if self.task:
            self.task.cancel()

    async def _check(self) -> None:
        mtime = _mtime(self.path)
        if mtime != self.mtime:
            self.mtime = mtime
            await self._reload("file changed")

    async def _reload(self, why: str) -> None:
        done = self.reload(why)
        if inspect.isawaitable(done):
            await done


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
