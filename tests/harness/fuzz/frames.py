"""Raw protobuf frames for the malformed-frame tests: gRPC calls that send bytes as they are,
a little wire-format encoder, well-formed messages of every KV/Lease request to cut up, and
every wrong wire type for every field of a message type.

A gRPC error is returned as harness.client.Failure, an answer as ("OK", bytes), so results can
be recorded and compared like any other response.
"""
from __future__ import annotations

import random

import grpc
from google.protobuf.descriptor import FieldDescriptor as F
from google.protobuf.message import DecodeError

from harness.client import Failure
from harness.stream import Stream
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

MAX_REQUEST_BYTES = 1572864                       # etcd's and KubeFabric's default
GRPC_LIMIT = MAX_REQUEST_BYTES + 512 * 1024       # the gRPC receive limit on top of it
MIB = 1024 * 1024
CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]

# Unary methods with their request types (the ones KubeFabric implements).
UNARY = {
    "/etcdserverpb.KV/Range": pb.RangeRequest,
    "/etcdserverpb.KV/Put": pb.PutRequest,
    "/etcdserverpb.KV/DeleteRange": pb.DeleteRangeRequest,
    "/etcdserverpb.KV/Txn": pb.TxnRequest,
    "/etcdserverpb.KV/Compact": pb.CompactionRequest,
    "/etcdserverpb.Lease/LeaseGrant": pb.LeaseGrantRequest,
    "/etcdserverpb.Lease/LeaseRevoke": pb.LeaseRevokeRequest,
    "/etcdserverpb.Lease/LeaseTimeToLive": pb.LeaseTimeToLiveRequest,
    "/etcdserverpb.Lease/LeaseLeases": pb.LeaseLeasesRequest,
    "/etcdserverpb.Maintenance/Status": pb.StatusRequest,
    "/etcdserverpb.Cluster/MemberList": pb.MemberListRequest,
}
WATCH = "/etcdserverpb.Watch/Watch"
KEEPALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"


def channel(endpoint: str) -> grpc.Channel:
    return grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS)


def raw_unary(ch: grpc.Channel, method: str, data: bytes, timeout: float = 10.0):
    call = ch.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        return "OK", call(data, timeout=timeout)
    except grpc.RpcError as err:
        return Failure(err.code().name, err.details() or "")


def raw_stream(ch: grpc.Channel, method: str, timeout: float = 60.0) -> Stream:
    """A bidirectional stream whose requests are raw bytes (responses stay raw bytes too)."""
    return Stream(ch.stream_stream(method, request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b), timeout)


# The wire format.
VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def tag(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def field_bytes(field: int, wire: int) -> bytes:
    """One field of the given wire type with a small payload (a group comes with its end)."""
    payload = {VARINT: varint(1), I64: bytes(8), LEN: varint(1) + b"x", I32: bytes(4),
               SGROUP: tag(field, EGROUP), EGROUP: b""}[wire]
    return tag(field, wire) + payload


_WIRE_OF = {F.TYPE_DOUBLE: I64, F.TYPE_FIXED64: I64, F.TYPE_SFIXED64: I64, F.TYPE_FLOAT: I32,
            F.TYPE_FIXED32: I32, F.TYPE_SFIXED32: I32, F.TYPE_STRING: LEN, F.TYPE_BYTES: LEN,
            F.TYPE_MESSAGE: LEN}


def wire_types(field) -> set[int]:
    """The wire types a strict parser (etcd's gogo-generated code) accepts for a field."""
    wire = _WIRE_OF.get(field.type, VARINT)
    if field.is_repeated and wire != LEN:
        return {wire, LEN}  # packed or not
    return {wire}


def wrong_wire_frames(msg_type) -> list[tuple[str, bytes]]:
    """(name, frame) for every field of msg_type sent with every wire type it must not have."""
    out = []
    for f in msg_type.DESCRIPTOR.fields:
        for wire in (VARINT, I64, LEN, SGROUP, EGROUP, I32):
            if wire not in wire_types(f):
                out.append((f"{msg_type.__name__}.{f.name} as wire type {wire}", field_bytes(f.number, wire)))
    return out


def parses(msg_type, data: bytes) -> bool:
    """Whether protobuf's own parser (KubeFabric's) accepts the bytes."""
    try:
        msg_type.FromString(data)
        return True
    except DecodeError:
        return False


def garbage(rng: random.Random, n: int) -> list[bytes]:
    """Random byte strings, with a bias toward almost-protobuf (a valid tag first)."""
    out = []
    for _ in range(n):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        out.append(body if rng.random() < 0.5 else tag(rng.randrange(1, 16), rng.randrange(6)) + body)
    return out


def well_formed() -> dict[str, bytes]:
    """A well-formed request of every KV/Lease method, with most fields set (to truncate)."""
    R = pb.RangeRequest
    rng = pb.RangeRequest(key=b"fuzz/a", range_end=b"fuzz/z", limit=3, revision=0,
                          sort_order=R.DESCEND, sort_target=R.MOD, serializable=True,
                          keys_only=True, count_only=False, min_mod_revision=1,
                          max_mod_revision=2**40, min_create_revision=1, max_create_revision=2**40)
    put = pb.PutRequest(key=b"fuzz/p\xff\x00", value=b"v" * 20, prev_kv=True)
    delete = pb.DeleteRangeRequest(key=b"fuzz/d", range_end=b"fuzz/e", prev_kv=True)
    cmp = pb.Compare(key=b"fuzz/p", range_end=b"fuzz/q", target=pb.Compare.VALUE,
                     result=pb.Compare.NOT_EQUAL, value=b"zzz")
    txn = pb.TxnRequest(compare=[cmp, pb.Compare(key=b"fuzz/p", target=pb.Compare.VERSION,
                                                 result=pb.Compare.GREATER, version=-1)],
                        success=[pb.RequestOp(request_put=put),
                                 pb.RequestOp(request_range=rng),
                                 pb.RequestOp(request_txn=pb.TxnRequest(
                                     success=[pb.RequestOp(request_delete_range=delete)]))],
                        failure=[pb.RequestOp(request_delete_range=delete)])
    return {
        "/etcdserverpb.KV/Range": rng.SerializeToString(),
        "/etcdserverpb.KV/Put": put.SerializeToString(),
        "/etcdserverpb.KV/DeleteRange": delete.SerializeToString(),
        "/etcdserverpb.KV/Txn": txn.SerializeToString(),
        "/etcdserverpb.KV/Compact": pb.CompactionRequest(revision=2**40, physical=True).SerializeToString(),
        "/etcdserverpb.Lease/LeaseGrant": pb.LeaseGrantRequest(TTL=2**31, ID=2**62).SerializeToString(),
        "/etcdserverpb.Lease/LeaseTimeToLive": pb.LeaseTimeToLiveRequest(ID=2**62, keys=True).SerializeToString(),
    }


def watch_create(key: bytes = b"fuzz/w", **kw) -> bytes:
    return pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key, **kw)).SerializeToString()


def oversized() -> dict[str, bytes]:
    """A 3 MiB request for every unary method that has a field to make it big with."""
    big = b"x" * (3 * MIB)
    return {
        "/etcdserverpb.KV/Range": pb.RangeRequest(key=big).SerializeToString(),
        "/etcdserverpb.KV/Put": pb.PutRequest(key=b"k", value=big).SerializeToString(),
        "/etcdserverpb.KV/DeleteRange": pb.DeleteRangeRequest(key=big).SerializeToString(),
        "/etcdserverpb.KV/Txn": pb.TxnRequest(success=[pb.RequestOp(
            request_put=pb.PutRequest(key=b"k", value=big))]).SerializeToString(),
        # no bytes field: unknown fields carry the bulk (protobuf parsers skip them)
        "/etcdserverpb.KV/Compact": tag(15, LEN) + varint(len(big)) + big,
        "/etcdserverpb.Lease/LeaseGrant": tag(15, LEN) + varint(len(big)) + big,
    }


def put_of_size(size: int, key: bytes = b"big") -> pb.PutRequest:
    """A PutRequest whose serialized size is exactly `size` bytes."""
    req = pb.PutRequest(key=key, value=b"v" * size)
    req.value = b"v" * (len(req.value) - (req.ByteSize() - size))
    while req.ByteSize() != size:  # the value's length prefix shrank by a byte
        req.value += b"v"
    return req
