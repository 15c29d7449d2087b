"""One ordered event feed from several shards (DESIGN §3.5, §5).

Each shard delivers (published, closed) in its own revision order: the txns it committed and the
revision below which it will never commit again. The merged feed emits a revision only once every
shard has closed it, so it never has to take back an order; txns of different shards that share a
revision are emitted as one (as if they were one etcd txn), in shard order. With `owns`, a shard
contributes only events of keys the topology routes to it.

A shard that is idle would hold the merged feed back forever: when one shard closes a revision the
others have not reached, they are asked to sync their clocks to it (a writer op that writes no
row), at most one request per shard at a time.
"""
from __future__ import annotations

import asyncio
import heapq
import logging
from collections import deque
from typing import Awaitable, Callable

from kubefabric.telemetry.tracing import join_commits, same_trace

log = logging.getLogger("kubefabric.watch.merge")


class MergedFeed:
    def __init__(self, sources: dict[str, object], sync: Callable[[str, int], Awaitable],
                 owns: Callable[[str, bytes], bool] | None = None):
        """sources: name -> a shard (local or remote) with `listeners` and a feed position;
        sync(name, rev): make that shard close at least `rev`. owns(name, key): whether the
        topology routes `key` to shard `name`; events of other keys (a misplaced copy written
        there) are not merged."""
        self.owns = owns
        self.listeners: list = []
        self.names = list(sources)
        self.pending: dict[str, deque] = {name: deque() for name in sources}
        self.closed = {name: _position(src) for name, src in sources.items()}
        self.feed_committed = min(self.closed.values())
        self._sync = sync
        self._syncing: dict[str, int] = {}   # name -> target of the running sync request
        self._wanted: dict[str, int] = {}    # name -> newest target asked for meanwhile
        for name, src in sources.items():
            self._subscribe(name, src)

    def _subscribe(self, name: str, src) -> None:
        src.listeners.append(lambda published, closed: self._on_commit(name, published, closed))

    def add_source(self, name: str, src) -> None:
        """A shard added at runtime (a topology reload): merged from its current position on."""
        self.names.append(name)
        self.pending[name] = deque()
        self.closed[name] = max(_position(src), self.feed_committed)
        self._subscribe(name, src)
        self._request_sync(name, max(self.closed.values()))

    def _on_commit(self, name: str, published, closed: int) -> None:
        if self.owns is not None:
            owns = self.owns
            kept = []
            for rev, events in published:
                mine = [e for e in events if owns(name, e.kv.key)]
                if mine:
                    kept.append((rev, same_trace(events, mine) if len(mine) < len(events) else events))
            self.pending[name].extend(kept)
        else:
            self.pending[name].extend(published)
        self.closed[name] = max(self.closed[name], closed, published[-1][0] if published else 0)
        high = max(self.closed.values())
        for other, position in self.closed.items():
            if position < high:
                self._request_sync(other, high)
        self._emit()

    def _emit(self) -> None:
        low = min(self.closed.values())
        if low <= self.feed_committed:
            return
        merged: list[tuple[int, list]] = []
        ready = [[(rev, i, events) for rev, events in _take_upto(self.pending[name], low)]
                 for i, name in enumerate(self.names)]
        for rev, _, events in heapq.merge(*ready):
            if merged and merged[-1][0] == rev:
                merged[-1] = (rev, join_commits(merged[-1][1], events))
            else:
                merged.append((rev, same_trace(events, list(events))))
        self.feed_committed = low
        for listener in self.listeners:
            listener(merged, low)

    # ---- keeping idle shards in step ----

    def _request_sync(self, name: str, rev: int) -> None:
        if self._syncing.get(name, 0) >= rev:
            return
        if name in self._syncing:
            self._wanted[name] = max(self._wanted.get(name, 0), rev)
            return
        self._syncing[name] = rev
        asyncio.get_running_loop().create_task(self._run_sync(name, rev))

    async def _run_sync(self, name: str, rev: int) -> None:
        try:
            while True:
                try:
                    await self._sync(name, rev)
                except Exception as exc:  # the shard is down: its feed resumes when it is back
                    log.debug("syncing shard %s to %d failed: %s", name, rev, exc)
                    await asyncio.sleep(0.2)
                wanted = self._wanted.pop(name, 0)
                if wanted <= rev:
                    return
                rev = self._syncing[name] = wanted
        finally:
            self._syncing.pop(name, None)


def _position(src) -> int:
    return src.feed_committed or src.state.committed


def _take_upto(queue: deque, rev: int) -> list:
    out = []
    while queue and queue[0][0] <= rev:
        out.append(queue.popleft())
    return out
