"""kubefabric.query.v1.Query on kv-router: a KubeFabric service beside the etcd services, over
the router's shard surface (the embedded shard, one shard service, or shards routed by a
topology). Errors travel like etcd's: a gRPC code and a one-line message."""
from __future__ import annotations

import grpc

from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb
from kubefabric.proto.kubefabric.query.v1 import query_pb2_grpc
from kubefabric.rpc.handlers import etcd_unary
from kubefabric.shard.surface import ShardSurface


class QueryService(query_pb2_grpc.QueryServicer):
    def __init__(self, shard: ShardSurface) -> None:
        self.shard = shard

    @etcd_unary
    async def Query(self, request: qpb.QueryRequest, context) -> qpb.QueryResponse:
        return await self.shard.query(request)

    @etcd_unary
    async def Indexes(self, request: qpb.IndexesRequest, context) -> qpb.IndexesResponse:
        statuses = await self.shard.indexes()
        for st in statuses:  # one shard behind the router: named as it names itself
            st.shard = st.shard or getattr(getattr(self.shard, "index", None), "shard_name", "") \
                or getattr(self.shard, "reported_name", "") or "default"
        return qpb.IndexesResponse(indexes=statuses)


def add_to_server(server: grpc.aio.Server, shard: ShardSurface) -> None:
    query_pb2_grpc.add_QueryServicer_to_server(QueryService(shard), server)
