"""A thin etcd v3 client for tests: the generated stubs plus a `call` that turns gRPC errors
into comparable values, so one test body can run against etcd and KubeFabric alike."""
from __future__ import annotations

from dataclasses import dataclass

import itertools

import grpc

from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.etcdserverpb import rpc_pb2_grpc as rpc


@dataclass(frozen=True)
class Failure:
    """A gRPC error as a value: etcd clients match on code and message, so both are compared."""
    code: str
    details: str


class Client:
    def __init__(self, endpoint: str, kind: str = "?", spread: bool = False):
        """spread: against `kubefabric serve --workers N`, two connections that landed on
        different processes, used in turn call by call (each attribute access of a stub takes
        the next), so a test body checks that the processes answer as one server."""
        self.kind = kind
        self.endpoint = endpoint
        self.channels = spread_channels(endpoint) if spread else [grpc.insecure_channel(endpoint)]
        self.channel = self.channels[0]
        turns = itertools.count()
        self.kv = _InTurn(rpc.KVStub, self.channels, turns)
        self.watch = _InTurn(rpc.WatchStub, self.channels, turns)
        self.lease = _InTurn(rpc.LeaseStub, self.channels, turns)
        self.maintenance = _InTurn(rpc.MaintenanceStub, self.channels, turns)
        self.cluster = _InTurn(rpc.ClusterStub, self.channels, turns)
        self.auth = _InTurn(rpc.AuthStub, self.channels, turns)

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
        for channel in self.channels:
            channel.close()


PID_METADATA = "kubefabric-pid"  # kv_router.maintenance: which process answered a Status
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]  # a channel of its own, not a shared one


def answering_pid(channel: grpc.Channel) -> int:
    """The PID of the `kubefabric serve` process a channel's connection landed on."""
    _, call = rpc.MaintenanceStub(channel).Status.with_call(pb.StatusRequest(), timeout=10)
    return int(dict(call.trailing_metadata())[PID_METADATA])


def spread_channels(endpoint: str, processes: int = 2, tries: int = 64) -> list[grpc.Channel]:
    """Channels to `endpoint`, each its own connection, on `processes` different processes
    (the kernel picks the process of each connection: open until enough differ)."""
    found: dict[int, grpc.Channel] = {}
    for _ in range(tries):
        channel = grpc.insecure_channel(endpoint, options=OWN_CONNECTION)
        pid = answering_pid(channel)
        if pid in found:
            channel.close()
            continue
        found[pid] = channel
        if len(found) == processes:
            return list(found.values())
    for channel in found.values():
        channel.close()
    raise AssertionError(f"{tries} connections to {endpoint} reached only processes {sorted(found)}")


class _InTurn:
    """A stub of each channel; every method looked up comes from the next one in turn."""

    def __init__(self, stub_class, channels, turns):
        self._stubs = [stub_class(c) for c in channels]
        self._turns = turns

    def __getattr__(self, name: str):
        stubs = self._stubs
        return getattr(stubs[next(self._turns) % len(stubs)], name)
