"""KV.RangeStream (etcd 3.7's chunked Range, used by kube-apiserver >= 1.37 for lists): merging the
chunks must give exactly the Range response; only the last chunk carries header, more and count.
Debian's etcd 3.4 has no RangeStream, so this checks KubeFabric against its own Range."""
from __future__ import annotations

import grpc
import pytest

from harness.client import Client
from harness.servers import start_kubefabric
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb


@pytest.fixture
def kf(tmp_path):
    server = start_kubefabric(tmp_path, ["--max-request-bytes", "65536"])
    client = Client(server.endpoint)
    yield client
    client.close()
    server.stop()


def merged(client: Client, req: pb.RangeRequest) -> tuple[pb.RangeResponse, int]:
    out = pb.RangeResponse()
    n = 0
    for chunk in client.kv.RangeStream(req, timeout=10):
        n += 1
        out.MergeFrom(chunk.range_response)
    return out, n


@pytest.mark.parametrize("req", [
    pb.RangeRequest(key=b"k/", range_end=b"k0"),
    pb.RangeRequest(key=b"k/", range_end=b"k0", limit=7),
    pb.RangeRequest(key=b"k/", range_end=b"k0", limit=500),
    pb.RangeRequest(key=b"k/", range_end=b"k0", count_only=True),
    pb.RangeRequest(key=b"k/", range_end=b"k0", keys_only=True, revision=20),
    pb.RangeRequest(key=b"k/7"),
    pb.RangeRequest(key=b"nothing/", range_end=b"nothing0"),
], ids=["all", "limit", "limit-above-count", "count-only", "keys-only-at-rev", "one-key", "empty"])
def test_chunks_merge_to_range(kf, req):
    for i in range(300):
        kf.put(b"k/%d" % i, b"v" * 1000)
    want = kf.kv.Range(req, timeout=10)
    got, n = merged(kf, req)
    assert got == want
    if not req.count_only and len(want.kvs) > 100:
        assert n > 1, "300 KB of values must come in several chunks at a 64 KiB limit"


def test_only_last_chunk_has_header(kf):
    for i in range(200):
        kf.put(b"k/%d" % i, b"v" * 1000)
    chunks = list(kf.kv.RangeStream(pb.RangeRequest(key=b"k/", range_end=b"k0"), timeout=10))
    assert len(chunks) > 1
    assert all(not c.range_response.HasField("header") for c in chunks[:-1])
    assert chunks[-1].range_response.header.revision == 201
    assert chunks[-1].range_response.count == 200


@pytest.mark.parametrize("req, message", [
    (pb.RangeRequest(key=b"k", range_end=b"l", sort_order=pb.RangeRequest.DESCEND),
     "RangeStream does not support custom sort orders"),
    (pb.RangeRequest(key=b"k", range_end=b"l", min_mod_revision=2),
     "RangeStream does not support revision filters"),
])
def test_unsupported_options_are_refused_like_etcd(kf, req, message):
    with pytest.raises(grpc.RpcError) as err:
        list(kf.kv.RangeStream(req, timeout=10))
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert err.value.details() == message


def test_errors_of_range_apply(kf):
    with pytest.raises(grpc.RpcError) as err:
        list(kf.kv.RangeStream(pb.RangeRequest(key=b"k", revision=99), timeout=10))
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert err.value.details() == "etcdserver: mvcc: required revision is a future revision"
