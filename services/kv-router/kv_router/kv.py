"""etcd KV service: Range, Put, DeleteRange, Txn, Compact, forwarded to the shard."""
from __future__ import annotations

from grpc import StatusCode

from kubefabric.etcd import errors
from kubefabric.etcd.checks import check_delete, check_put, check_range, read_only
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.etcdserverpb import rpc_pb2_grpc as rpc

from kubefabric.rpc.handlers import etcd_unary
from kubefabric.rpc.wire import Malformed
from kubefabric.shard.surface import ShardSurface

from .authguard import AuthGuard


RAFT_ENVELOPE_BYTES = 16
STREAM_ROW_BYTES = 1024  # RangeStream reads pages of max_request_bytes / this many keys


def check_range_stream(req: pb.RangeRequest) -> None:
    check_range(req)
    default_order = req.sort_order == pb.RangeRequest.NONE or (
        req.sort_target == pb.RangeRequest.KEY and req.sort_order == pb.RangeRequest.ASCEND)
    if not default_order:
        raise errors.EtcdError(StatusCode.UNIMPLEMENTED, "RangeStream does not support custom sort orders")
    if (req.min_mod_revision or req.max_mod_revision or req.min_create_revision
            or req.max_create_revision):
        raise errors.EtcdError(StatusCode.UNIMPLEMENTED, "RangeStream does not support revision filters")


def chunks(resp: pb.RangeResponse, target_bytes: int):
    """Split a RangeResponse into RangeStream chunks of about target_bytes of kvs each."""
    kvs = list(resp.kvs)
    start, size = 0, 0
    for i, kv in enumerate(kvs):
        size += kv.ByteSize()
        if size >= target_bytes and i + 1 < len(kvs):
            yield pb.RangeResponse(kvs=kvs[start:i + 1])
            start, size = i + 1, 0
    last = pb.RangeResponse(kvs=kvs[start:], more=resp.more, count=resp.count)
    if resp.HasField("header"):
        last.header.CopyFrom(resp.header)
    yield last


class KVService(rpc.KVServicer):
    def __init__(self, shard: ShardSurface, max_request_bytes: int, auth: AuthGuard) -> None:
        self.shard = shard
        self.max_request_bytes = max_request_bytes
        self.auth = auth  # AuthGuard: etcd's permission checks while auth is enabled

    def _check_size(self, request) -> None:
        """etcd limits the request as proposed to raft: the request plus an envelope (a header
        with a 64-bit request id, field tags and the length): about 16 bytes more."""
        if request.ByteSize() + RAFT_ENVELOPE_BYTES > self.max_request_bytes:
            raise errors.REQUEST_TOO_LARGE

    @etcd_unary
    async def Range(self, request: pb.RangeRequest, context) -> pb.RangeResponse:
        check_range(request)
        self.auth.check_range(context, request)
        return await self.shard.range(request)

    async def RangeStream(self, request: pb.RangeRequest, context):
        """etcd 3.7's chunked Range: one revision, sent as slices of about the request limit.

        Read page by page (each a Range at the first page's revision, from the key after the
        last one sent), so a stream holds one page in memory, not the whole range: kube-apiserver
        lists whole resources this way, a hundred at once when its watch cache falls behind."""
        if isinstance(request, Malformed):
            await context.abort(request.error.code, request.error.message)
        try:
            check_range_stream(request)
            self.auth.check_range(context, request)
            async for chunk in self._stream_pages(request):
                yield pb.RangeStreamResponse(range_response=chunk)
        except errors.EtcdError as err:
            await context.abort(err.code, err.message)

    async def _stream_pages(self, request: pb.RangeRequest):
        """The chunks of `request`; only the last carries header, count and more (as etcd's)."""
        if request.count_only or not request.range_end:
            for chunk in chunks(await self.shard.range(request), self.max_request_bytes):
                yield chunk
            return
        page_rows = max(16, self.max_request_bytes // STREAM_ROW_BYTES)
        page = pb.RangeRequest()
        page.CopyFrom(request)
        wanted = request.limit or None
        first = None
        while True:
            page.limit = page_rows if wanted is None else min(page_rows, wanted)
            resp = await self.shard.range(page)
            if first is None:
                first = resp  # its header and count: the range at the stream's revision
                page.revision = resp.header.revision if not request.revision else request.revision
            if wanted is not None:
                wanted -= len(resp.kvs)
            done = not resp.more or wanted == 0
            if done:
                last = pb.RangeResponse(kvs=resp.kvs, more=resp.more, count=first.count)
                last.header.CopyFrom(first.header)
                for chunk in chunks(last, self.max_request_bytes):
                    yield chunk
                return
            page.key = resp.kvs[-1].key + b"\0"
            for chunk in chunks(pb.RangeResponse(kvs=resp.kvs), self.max_request_bytes):
                yield chunk

    @etcd_unary
    async def Put(self, request: pb.PutRequest, context) -> pb.PutResponse:
        self._check_size(request)
        check_put(request)  # etcd's request errors come before its auth errors
        await self.auth.check_put(context, request)
        return await self.shard.put(request)

    @etcd_unary
    async def DeleteRange(self, request: pb.DeleteRangeRequest, context) -> pb.DeleteRangeResponse:
        self._check_size(request)
        check_delete(request)
        self.auth.check_delete(context, request)
        return await self.shard.delete_range(request)

    @etcd_unary
    async def Txn(self, request: pb.TxnRequest, context) -> pb.TxnResponse:
        if not read_only(request):  # etcd serves read-only txns without raft: no size limit
            self._check_size(request)
        await self.auth.check_txn(context, request)
        return await self.shard.txn(request)

    @etcd_unary
    async def Compact(self, request: pb.CompactionRequest, context) -> pb.CompactionResponse:
        self.auth.admin(context)
        return await self.shard.compact(request.revision, request.physical)
