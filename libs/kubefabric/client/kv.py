"""Key-value calls: ranges (one page, or every page pinned at one revision), puts, deletes and
transactions guarded by a key's mod_revision."""
from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator

from kubefabric.etcd.keyrange import prefix_end  # noqa: F401  (etcd clientv3's rule; re-exported)
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.mvccpb import kv_pb2

from .connection import Connection

KeyValue = kv_pb2.KeyValue
PAGE_SIZE = 500


@dataclass(frozen=True)
class RangeResult:
    kvs: list          # mvccpb.KeyValue, in key order
    revision: int      # the store revision the range was read at (the response header's)
    more: bool         # a limit cut the range short
    count: int         # keys in the whole range (not only the ones returned)


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool    # the guard held and the write was applied
    revision: int      # the header revision: the write's revision when it succeeded
    current: object    # on failure: the key's current KeyValue (None when absent)


class KV:
    def __init__(self, conn: Connection):
        self._conn = conn

    async def range(self, key: bytes, range_end: bytes = b"", *, revision: int = 0, limit: int = 0,
                    keys_only: bool = False, count_only: bool = False,
                    serializable: bool = False) -> RangeResult:
        r = await self._conn.call("KV", "Range", pb.RangeRequest(
            key=key, range_end=range_end, revision=revision, limit=limit, keys_only=keys_only,
            count_only=count_only, serializable=serializable), what=f"Range {key!r}")
        return RangeResult(list(r.kvs), r.header.revision, r.more, r.count)

    async def get(self, key: bytes, *, revision: int = 0):
        """The key's KeyValue at `revision` (0: now), or None."""
        r = await self.range(key, revision=revision)
        return r.kvs[0] if r.kvs else None

    async def pages(self, key: bytes, range_end: bytes, *, revision: int = 0,
                    page_size: int = PAGE_SIZE, keys_only: bool = False
                    ) -> AsyncIterator[RangeResult]:
        """Every key of [key, range_end) in pages of `page_size`, all read at one revision: the
        first page's (or `revision`), so the pages together are one consistent snapshot. Raises
        Compacted when that revision is compacted away in between (start over at a new one)."""
        start = key
        while True:
            page = await self.range(start, range_end, revision=revision, limit=page_size,
                                    keys_only=keys_only)
            revision = page.revision if not revision else revision
            yield RangeResult(page.kvs, revision, page.more, page.count)
            if not page.more or not page.kvs:
                return
            start = page.kvs[-1].key + b"\0"

    async def list(self, prefix: bytes, *, revision: int = 0, page_size: int = PAGE_SIZE
                   ) -> tuple[list, int]:
        """(every KeyValue under `prefix`, the revision they were read at)."""
        out, rev = [], revision
        async for page in self.pages(prefix, prefix_end(prefix), revision=revision,
                                     page_size=page_size):
            out.extend(page.kvs)
            rev = page.revision
        return out, rev

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        """Unconditional put; the revision it committed at."""
        r = await self._conn.call("KV", "Put", pb.PutRequest(key=key, value=value, lease=lease),
                                  write=True, what=f"Put {key!r}")
        return r.header.revision

    async def delete(self, key: bytes, range_end: bytes = b"") -> tuple[int, int]:
        """(keys deleted, revision)."""
        r = await self._conn.call("KV", "DeleteRange", pb.DeleteRangeRequest(
            key=key, range_end=range_end), write=True, what=f"DeleteRange {key!r}")
        return r.deleted, r.header.revision

    async def txn(self, compare, success, failure=()) -> pb.TxnResponse:
        return await self._conn.call("KV", "Txn", pb.TxnRequest(
            compare=list(compare), success=list(success), failure=list(failure)),
            write=True, what="Txn")

    async def _guarded(self, key: bytes, mod_revision: int, op: pb.RequestOp) -> TxnResult:
        guard = pb.Compare(key=key, target=pb.Compare.MOD, result=pb.Compare.EQUAL,
                           mod_revision=mod_revision)
        read = pb.RequestOp(request_range=pb.RangeRequest(key=key))
        r = await self.txn([guard], [op], [read])
        if r.succeeded:
            return TxnResult(True, r.header.revision, None)
        kvs = r.responses[0].response_range.kvs
        return TxnResult(False, r.header.revision, kvs[0] if kvs else None)

    async def put_if(self, key: bytes, value: bytes, mod_revision: int, *,
                     lease: int = 0) -> TxnResult:
        """Put only if the key's mod_revision is `mod_revision` (0: only if the key is absent)."""
        return await self._guarded(key, mod_revision, pb.RequestOp(
            request_put=pb.PutRequest(key=key, value=value, lease=lease)))

    async def delete_if(self, key: bytes, mod_revision: int) -> TxnResult:
        """Delete only if the key's mod_revision is `mod_revision`."""
        return await self._guarded(key, mod_revision, pb.RequestOp(
            request_delete_range=pb.DeleteRangeRequest(key=key)))

    async def compact(self, revision: int, physical: bool = False) -> None:
        await self._conn.call("KV", "Compact", pb.CompactionRequest(
            revision=revision, physical=physical), write=True, what=f"Compact {revision}")
