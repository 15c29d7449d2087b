"""etcd Watch service: a bidirectional stream per client, served by the shared WatchHub."""
from __future__ import annotations

import asyncio
import logging

from kubefabric.proto.etcdserverpb import rpc_pb2_grpc as rpc
from kubefabric.watch.stream import WatchStream

from kubefabric.rpc.wire import Malformed

log = logging.getLogger("kubefabric.watch")


class WatchService(rpc.WatchServicer):
    def __init__(self, hub, fill_header, max_response_bytes: int, buffer_budget: int):
        self.buffer_budget = buffer_budget
        self.hub = hub
        self.fill = fill_header
        self.max_bytes = max_response_bytes
        self.streams: set[WatchStream] = set()

    async def Watch(self, request_iterator, context):
        stream = WatchStream(self.hub, self.fill, self.max_bytes, self.buffer_budget)
        self.streams.add(stream)
        reader = asyncio.create_task(self._read(request_iterator, stream))
        try:
            while True:
                resp = await stream.out.get()
                if resp is None:
                    break
                if isinstance(resp, Malformed):  # etcd ends the stream with INTERNAL
                    await context.abort(resp.error.code, resp.error.message)
                stream.taken(resp)
                yield resp
        finally:
            reader.cancel()
            stream.close()
            self.streams.discard(stream)

    async def _read(self, request_iterator, stream: WatchStream) -> None:
        try:
            async for req in request_iterator:
                if isinstance(req, Malformed):
                    stream.out.put_nowait(req)
                    return
                await stream.handle(req)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("watch stream ended: %s", exc)
        # the client half-closed: etcd keeps sending until the client goes away
        
    def close_all(self) -> None:
        """End every stream cleanly (graceful shutdown)."""
        for stream in list(self.streams):
            stream.out.put_nowait(None)
