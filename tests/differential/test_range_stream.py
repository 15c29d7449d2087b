"""KV.RangeStream against etcd 3.7.3 (Debian's 3.4 predates it): kube-apiserver 1.37 lists with
it. Chunk boundaries are the server's choice (etcd starts at 10 keys and adapts to size), so the
comparison is on what clients use: the merged response and the last chunk's header, more and
count; errors are compared as they are."""
from __future__ import annotations

import grpc

from harness.client import Failure
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb


def stream(c, req: pb.RangeRequest):
    """(merged RangeResponse, last chunk) or a Failure."""
    merged = pb.RangeResponse()
    last = None
    try:
        for chunk in c.kv.RangeStream(req, timeout=10):
            merged.MergeFrom(chunk.range_response)
            last = chunk.range_response
    except grpc.RpcError as err:
        return Failure(err.code().name, err.details() or "")
    tail = pb.RangeResponse(more=last.more, count=last.count)
    tail.header.CopyFrom(last.header)
    return [merged, tail]


def test_range_stream_matches_etcd(differential):
    def body(c, record):
        for i in range(120):
            c.put(b"k/%03d" % i, b"v" * (i * 50))
        c.delete(b"k/050")
        for name, req in [
            ("all", pb.RangeRequest(key=b"k/", range_end=b"k0")),
            ("limit", pb.RangeRequest(key=b"k/", range_end=b"k0", limit=25)),
            ("limit above count", pb.RangeRequest(key=b"k/", range_end=b"k0", limit=500)),
            ("count only", pb.RangeRequest(key=b"k/", range_end=b"k0", count_only=True)),
            ("keys only at a past revision", pb.RangeRequest(key=b"k/", range_end=b"k0",
                                                             keys_only=True, revision=60)),
            ("one key", pb.RangeRequest(key=b"k/007")),
            ("nothing", pb.RangeRequest(key=b"x/", range_end=b"x0")),
            ("everything", pb.RangeRequest(key=b"\0", range_end=b"\0", limit=3)),
            ("sorted", pb.RangeRequest(key=b"k/", range_end=b"k0", sort_order=pb.RangeRequest.DESCEND)),
            ("key ascend is the default order", pb.RangeRequest(
                key=b"k/", range_end=b"k0", limit=4, sort_order=pb.RangeRequest.ASCEND)),
            ("filtered", pb.RangeRequest(key=b"k/", range_end=b"k0", min_mod_revision=10)),
            ("future", pb.RangeRequest(key=b"k/", range_end=b"k0", revision=1000)),
            ("empty key", pb.RangeRequest(key=b"")),
        ]:
            record(name, stream(c, req))
        c.call(c.kv.Compact, pb.CompactionRequest(revision=100))
        record("compacted", stream(c, pb.RangeRequest(key=b"k/", range_end=b"k0", revision=50)))
    differential(body, reference="etcd37")
