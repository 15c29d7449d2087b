"""A thin etcd v3 client for tests: the generated stubs plus a `call` that turns gRPC errors
into comparable values, so one test body can run against etcd and KubeFabric alike."""
from __future__ import annotations

from dataclasses import dataclass

import grpc

from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.etcdserverpb import rpc_pb2_grpc as rpc


@dataclass(frozen=True)
class Failure:
    """A gRPC error as a value: etcd clients match on code and message, so both are compared."""
    code: str
    details: str


class Client:
    def __init__(self, endpoint: str, kind: str = "?"):
        self.kind = kind
        self.endpoint = endpoint
        self.channel = grpc.insecure_channel(endpoint)
        self.kv = rpc.KVStub(self.channel)
        self.watch = rpc.WatchStub(self.channel)
        self.lease = rpc.LeaseStub(self.channel)
        self.maintenance = rpc.MaintenanceStub(self.channel)
        self.cluster = rpc.ClusterStub(self.channel)
        self.auth = rpc.AuthStub(self.channel)

    def call(self, method, request, timeout: float = 10.0):
        """Run one unary RPC; return its response, or a Failure for a gRPC error."""
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as err:
            return Failure(err.code().name, err.details() or "")

    # Shorthands used by most test bodies.
    def put(self, key: bytes, value: bytes = b"", **kw):
        return self.call(self.kv.Put, pb.PutRequest(key=key, value=value, **kw))

    def get(self, key: bytes, **kw):
        return self.call(self.kv.Range, pb.RangeRequest(key=key, **kw))

    def delete(self, key: bytes, **kw):
        return self.call(self.kv.DeleteRange, pb.DeleteRangeRequest(key=key, **kw))

    def txn(self, compare=(), success=(), failure=()):
        return self.call(self.kv.Txn, pb.TxnRequest(compare=list(compare), success=list(success),
                                                    failure=list(failure)))

    def close(self) -> None:
        self.channel.close()
