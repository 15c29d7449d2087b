"""What KubeFabric does not implement answers UNIMPLEMENTED with a sentence saying so (DESIGN §6).

KubeFabric-only: etcd implements all of these, so there is nothing to compare against. A bare gRPC
"Method not found!" (an RPC that was never registered) does not count as a sentence saying so.
"""
from __future__ import annotations

import grpc
import pytest

from harness.client import Client
from harness.servers import START
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

GRPC_DEFAULT = "Method not found!"

MAINTENANCE = [("maintenance", "Downgrade", pb.DowngradeRequest(action=pb.DowngradeRequest.VALIDATE,
                                                                version="3.5"))]
# One embedded member: membership changes are not something it can do.
CLUSTER = [("cluster", "MemberAdd", pb.MemberAddRequest(peerURLs=["http://127.0.0.1:1"])),
           ("cluster", "MemberRemove", pb.MemberRemoveRequest(ID=1)),
           ("cluster", "MemberUpdate", pb.MemberUpdateRequest(ID=1, peerURLs=["http://127.0.0.1:1"])),
           ("cluster", "MemberPromote", pb.MemberPromoteRequest(ID=1))]


@pytest.fixture(scope="module")
def kubefabric(tmp_path_factory):
    server = START["kubefabric"](tmp_path_factory.mktemp("kf-unimplemented"))
    client = Client(server.endpoint, "kubefabric")
    yield client
    client.close()
    server.stop()


@pytest.mark.parametrize("service,method,request_", MAINTENANCE + CLUSTER,
                         ids=[m for _, m, _ in MAINTENANCE + CLUSTER])
def test_answers_unimplemented_with_a_sentence(kubefabric, service, method, request_):
    rpc = getattr(getattr(kubefabric, service), method)
    with pytest.raises(grpc.RpcError) as err:
        rpc(request_, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED, (err.value.code(), err.value.details())
    details = (err.value.details() or "").strip()
    assert details and details != GRPC_DEFAULT and len(details.split()) >= 3, repr(details)


def test_server_still_serves_after_unimplemented_calls(kubefabric):
    with pytest.raises(grpc.RpcError):
        kubefabric.cluster.MemberRemove(pb.MemberRemoveRequest(ID=1), timeout=10)
    assert isinstance(kubefabric.put(b"k", b"v"), pb.PutResponse)
    assert kubefabric.get(b"k").kvs[0].value == b"v"
