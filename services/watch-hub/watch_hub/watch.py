"""The hub's etcd Watch service: the shared WatchService, answering UNAVAILABLE until the hub
has its feeds (NATS connected, every shard opened), so routers retry instead of waiting."""
from __future__ import annotations

import grpc

from kubefabric.watch.service import WatchService

NOT_READY = "watch-hub not ready: connecting to NATS and the shard services"


class HubWatchService(WatchService):
    def __init__(self, max_response_bytes: int, buffer_budget: int, max_watchers: int,
                 max_streams: int):
        super().__init__(None, None, max_response_bytes, buffer_budget, max_watchers, max_streams,
                         trust_known=True)  # its clients are kv-routers

    def serve(self, registry, fill_header) -> None:
        self.registry, self.fill = registry, fill_header

    async def Watch(self, request_iterator, context):
        if self.registry is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, NOT_READY)
        async for resp in super().Watch(request_iterator, context):
            yield resp
