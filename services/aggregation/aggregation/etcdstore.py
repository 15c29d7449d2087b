"""The Store over kubefabric.client: kv-router for reads, writes and queries, the watch-hub (or
kv-router relaying to it) for watches."""
from __future__ import annotations

import grpc

from kubefabric.client import ClientError, EtcdClient
from kubefabric.client import Compacted as ClientCompacted
from kubefabric.client import Unavailable as ClientUnavailable
from kubefabric.client import prefix_end
from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb

from . import metrics
from .selectors import (DOES_NOT_EXIST, EQUALS, EXISTS, IN, NOT_EQUALS, NOT_IN, Requirement)
from .store import KV, Compacted, Event, Page, Refused, Unavailable, WatchBatch

_LABEL_OPS = {EQUALS: qpb.LabelRequirement.EQUALS, NOT_EQUALS: qpb.LabelRequirement.NOT_EQUALS,
              IN: qpb.LabelRequirement.IN, NOT_IN: qpb.LabelRequirement.NOT_IN,
              EXISTS: qpb.LabelRequirement.EXISTS,
              DOES_NOT_EXIST: qpb.LabelRequirement.DOES_NOT_EXIST}
_FIELD_OPS = {EQUALS: qpb.FieldRequirement.EQUALS, NOT_EQUALS: qpb.FieldRequirement.NOT_EQUALS}


def _kv(kv) -> KV:
    return KV(kv.key.decode(), kv.value, kv.create_revision, kv.mod_revision)


class _Errors:
    """Client errors as the Store's: Compacted, Unavailable (counted per operation)."""

    def __init__(self, operation: str):
        self.operation = operation

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if err is None or not isinstance(err, ClientError):
            return False
        metrics.store_errors.labels(self.operation).inc()
        if isinstance(err, ClientCompacted):
            raise Compacted(err.compact_revision) from None
        if isinstance(err, ClientUnavailable):
            raise Unavailable(str(err)) from None
        if err.code == grpc.StatusCode.INVALID_ARGUMENT:
            raise Refused(str(err)) from None
        raise Unavailable(str(err)) from None


class EtcdStore:
    def __init__(self, router: EtcdClient, hub: EtcdClient | None = None):
        self.router = router
        self.hub = hub or router

    @classmethod
    def connect(cls, router: str, hub: str = "") -> "EtcdStore":
        r = EtcdClient.connect(router)
        return cls(r, EtcdClient.connect(hub) if hub else None)

    async def get(self, key: str) -> tuple[KV | None, int]:
        with _Errors("get"):
            r = await self.router.kv.range(key.encode())
        return (_kv(r.kvs[0]) if r.kvs else None), r.revision

    async def revision(self) -> int:
        with _Errors("get"):
            r = await self.router.kv.range(b"\0", count_only=True)
        return r.revision

    async def count(self, start: str, end: str, revision: int) -> int:
        with _Errors("count"):
            r = await self.router.kv.range(start.encode(), end.encode(), revision=revision,
                                           count_only=True)
        return r.count

    async def query(self, start: str, end: str, revision: int, limit: int,
                    labels: tuple[Requirement, ...], fields: tuple[Requirement, ...]) -> Page:
        lreqs = [qpb.LabelRequirement(key=r.key, operator=_LABEL_OPS[r.op], values=list(r.values))
                 for r in labels]
        freqs = [qpb.FieldRequirement(path=r.key, operator=_FIELD_OPS[r.op], value=r.values[0])
                 for r in fields]
        with _Errors("query"):
            page = await self.router.query.page(start.encode(), end.encode(), revision=revision,
                                                 limit=limit, labels=lreqs, fields=freqs)
        return Page([_kv(kv) for kv in page.kvs], page.revision, page.more,
                    page.next_key.decode())

    async def _guarded(self, op: str, key: str, mod_revision: int, value: bytes | None):
        with _Errors(op):
            if value is None:
                r = await self.router.kv.delete_if(key.encode(), mod_revision)
            else:
                r = await self.router.kv.put_if(key.encode(), value, mod_revision)
        return r.succeeded, r.revision, (_kv(r.current) if r.current is not None else None)

    async def create(self, key: str, value: bytes):
        return await self._guarded("create", key, 0, value)

    async def update(self, key: str, value: bytes, mod_revision: int):
        return await self._guarded("update", key, mod_revision, value)

    async def delete(self, key: str, mod_revision: int):
        return await self._guarded("delete", key, mod_revision, None)

    def watch(self, start: str, end: str, start_revision: int) -> "_WatchStream":
        return _WatchStream(self.hub.watch(start.encode(), end.encode() or prefix_end(start.encode()),
                                           start_revision=start_revision, prev_kv=True))

    async def close(self) -> None:
        await self.router.close()
        if self.hub is not self.router:
            await self.hub.close()


class _WatchStream:
    """Store events from the client's resuming watch; request_progress() asks for a progress
    notification, which arrives as a batch without events."""

    def __init__(self, watch):
        self._watch = watch

    def __aiter__(self):
        return self

    async def __anext__(self) -> WatchBatch:
        with _Errors("watch"):
            batch = await self._watch.__anext__()
        events = []
        for ev in batch.events:
            kind = "DELETE" if ev.type == ev.DELETE else "PUT"
            prev = _kv(ev.prev_kv) if ev.HasField("prev_kv") and ev.prev_kv.key else None
            if kind == "PUT" and ev.kv.create_revision == ev.kv.mod_revision:
                prev = None
            events.append(Event(kind, _kv(ev.kv), prev))
        revision = batch.events[-1].kv.mod_revision if batch.events else batch.revision
        return WatchBatch(events, revision)

    async def request_progress(self) -> None:
        await self._watch.request_progress()

    async def aclose(self) -> None:
        await self._watch.close()
