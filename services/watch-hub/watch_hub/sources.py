"""What a watch-hub watches: shard services followed over NATS, one or several (a topology).

Invariants:
- Every shard is a RemoteShard without its Feed RPC; its commits arrive from its JetStream stream
  (kubefabric.events.subscriber), and its History RPC fills gaps and serves watch catch-up.
- A shard service must be named like its topology entry: its subjects are kf.<name>.*, so a
  mismatch would leave the hub waiting forever; it is refused at start with both names.
- With several shards the merged feed asks lagging shards to close the newest revision by
  broadcasting it on kf.clock (the shard leaders sync to it), at once and every CLOCK_EVERY_S;
  while NATS is down each shard's subscription polls it with the newest revision instead.
"""
from __future__ import annotations

import asyncio
import logging

from kubefabric.events.bus import CLOCK_SUBJECT
from kubefabric.events.subscriber import ShardSubscription
from kubefabric.rpc.startup import StartupError
from kubefabric.shard.surface import EventSource
from kubefabric.shardsvc.client import RemoteShard, connect_shard
from kubefabric.topology.shardset import ShardSet

log = logging.getLogger("kubefabric.hub.sources")

CLOCK_EVERY_S = 0.1  # DESIGN §3.2: the hub broadcasts the highest revision it has seen


class HubSources:
    def __init__(self, nc) -> None:
        self.nc = nc
        self.shards: dict[str, RemoteShard] = {}
        self.subscriptions: list[ShardSubscription] = []
        self.surface: EventSource | None = None  # what the WatcherRegistry watches: one RemoteShard or a ShardSet
        self._broadcast = 0
        self._clock_task: asyncio.Task | None = None

    async def open(self, specs: list[tuple[str, str, object]], topology=None) -> None:
        """specs: (name, grpc endpoints, tls) per shard; topology: for several shards."""
        try:
            for name, endpoints, tls in specs:
                self.shards[name] = await self._open_one(name, endpoints, tls)
        except BaseException:
            await self.close()
            raise
        if topology is None:
            (self.surface,) = self.shards.values()
        else:
            self.surface = ShardSet(topology, self.shards, sync=self._request_clock)
            self._clock_task = asyncio.create_task(self._clock_loop(), name="clock-broadcast")
        high = self._high if topology is not None else None
        for shard in self.shards.values():
            sub = ShardSubscription(shard, self.nc, high)
            await sub.start()
            self.subscriptions.append(sub)

    async def _open_one(self, name: str, endpoints: str, tls) -> RemoteShard:
        try:
            shard = await connect_shard(endpoints, name, tls, follow=False)
        except ValueError as err:
            raise StartupError(f"shard {name}: {err}") from None
        except ConnectionError as err:
            raise StartupError(str(err)) from None
        if shard.reported_name and shard.reported_name != name:
            await shard.close()
            raise StartupError(
                f"the shard service at {endpoints} is named {shard.reported_name!r} (its --name) "
                f"but this hub expects {name!r}: it publishes on kf.{shard.reported_name}.*; "
                "start it with the topology's name")
        return shard

    # ---- the clock broadcast ----

    def _high(self) -> int:
        """The newest revision any shard reported to this hub."""
        return max(s.state.committed for s in self.shards.values())

    async def _request_clock(self, name: str, rev: int) -> None:
        if rev > self._broadcast:
            self._broadcast = rev
            await self.nc.publish(CLOCK_SUBJECT, str(rev).encode())

    async def _clock_loop(self) -> None:
        while True:
            await asyncio.sleep(CLOCK_EVERY_S)
            high = self._high()
            if any(s.feed_committed < high for s in self.shards.values()):
                try:
                    await self.nc.publish(CLOCK_SUBJECT, str(high).encode())
                except Exception as exc:  # NATS down: the next round tries again
                    log.debug("clock broadcast failed: %s", exc)

    async def close(self) -> None:
        if self._clock_task:
            self._clock_task.cancel()
        for sub in self.subscriptions:
            await sub.stop()
        for shard in self.shards.values():
            await shard.close()
