"""etcd KV service: Range, Put, DeleteRange, Txn, Compact, forwarded to the shard."""
from __future__ import annotations

from kubefabric.etcd import errors
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.etcdserverpb import rpc_pb2_grpc as rpc

from .handlers import etcd_unary


class KVService(rpc.KVServicer):
    def __init__(self, shard, max_request_bytes: int):
        self.shard = shard
        self.max_request_bytes = max_request_bytes

    def _check_size(self, request) -> None:
        if request.ByteSize() > self.max_request_bytes:
            raise errors.REQUEST_TOO_LARGE

    @etcd_unary
    async def Range(self, request: pb.RangeRequest, context) -> pb.RangeResponse:
        return await self.shard.range(request)

    @etcd_unary
    async def Put(self, request: pb.PutRequest, context) -> pb.PutResponse:
        self._check_size(request)
        return await self.shard.put(request)

    @etcd_unary
    async def DeleteRange(self, request: pb.DeleteRangeRequest, context) -> pb.DeleteRangeResponse:
        return await self.shard.delete_range(request)

    @etcd_unary
    async def Txn(self, request: pb.TxnRequest, context) -> pb.TxnResponse:
        self._check_size(request)
        return await self.shard.txn(request)

    @etcd_unary
    async def Compact(self, request: pb.CompactionRequest, context) -> pb.CompactionResponse:
        return await self.shard.compact(request.revision, request.physical)
