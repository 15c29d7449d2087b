"""Malformed, truncated and oversized protobuf frames sent straight to the gRPC port.

KubeFabric only (one server for the module): random garbage, a well-formed request of every
KV/Lease method cut at every prefix length, every field of every request with every wrong wire
type (whether that must be an error is judged against etcd below), 3 MiB requests (over the 1.5 MiB + 512 KiB gRPC receive limit: RESOURCE_EXHAUSTED), a Put
and a Txn just over --max-request-bytes ('etcdserver: request is too large'), and garbage frames
on the Watch and LeaseKeepAlive streams. Every frame must be answered (no hang: a deadline is
set on every call), with an error when the frame is not a valid message, and the server must
keep serving a normal Put/Range (and Watch) afterwards.

Then, differential (etcd vs KubeFabric, the `differential` fixture): the answers to oversized
and malformed frames. Errors written by the gRPC library itself (RESOURCE_EXHAUSTED for the
receive limit, a request that fails to unmarshal) are compared by code only: their messages
are grpc-go's in etcd ("grpc: received message larger than max (3145736 vs. 2097152)",
"grpc: error unmarshalling request: unexpected EOF") and gRPC core's in KubeFabric.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from harness.fuzz.frames import (EGROUP, GRPC_LIMIT, I32, KEEPALIVE, LEN, MAX_REQUEST_BYTES, MIB, SGROUP,
                         UNARY, VARINT, WATCH, channel, field_bytes, garbage, oversized, parses,
                         put_of_size, raw_stream, raw_unary, tag, varint, watch_create,
                         well_formed, wrong_wire_frames)
from harness.client import Client, Failure
from harness.servers import START, Server
from harness.stream import NoResponse, WatchStream
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

BROKEN = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"}  # no answer, or the server went away
TOO_LARGE = Failure("INVALID_ARGUMENT", "etcdserver: request is too large")


def wrap(frame: bytes, *fields: int) -> bytes:
    """`frame` as the message in field fields[0] of a message in fields[1] of ... (inner first)."""
    for f in fields:
        frame = tag(f, LEN) + varint(len(frame)) + frame
    return frame


# Frames etcd refuses to unmarshal (each answered INTERNAL by etcd 3.4).
UNPARSEABLE = {
    "3 bytes of 0xff": ("/etcdserverpb.KV/Range", b"\xff\xff\xff"),
    "Put cut inside its key": ("/etcdserverpb.KV/Put", pb.PutRequest(key=b"abc").SerializeToString()[:-1]),
    "a lone end-group": ("/etcdserverpb.KV/Range", tag(1, LEN) + b"\x01a" + tag(9, EGROUP)),
    "Txn cut inside a nested Put": ("/etcdserverpb.KV/Txn", well_formed()["/etcdserverpb.KV/Txn"][:40]),
    "varint of 11 bytes": ("/etcdserverpb.KV/Compact", tag(1, VARINT) + b"\xff" * 10 + b"\x01"),
}
WRONG_WIRE = {
    "Range.key as a varint": ("/etcdserverpb.KV/Range", field_bytes(1, VARINT)),
    "Range.limit as bytes": ("/etcdserverpb.KV/Range", tag(1, LEN) + b"\x01a" + field_bytes(3, LEN)),
    "Put.value as fixed32": ("/etcdserverpb.KV/Put", tag(1, LEN) + b"\x01k" + field_bytes(2, I32)),
    "Range.key as a group": ("/etcdserverpb.KV/Range", field_bytes(1, SGROUP)),
    "Txn.success[0].request_put.key as a varint":
        ("/etcdserverpb.KV/Txn", wrap(field_bytes(1, VARINT), 2, 2)),
    "LeaseGrant.TTL as bytes": ("/etcdserverpb.Lease/LeaseGrant", field_bytes(1, LEN)),
}


@dataclass
class KF:
    server: Server
    client: Client
    channel: object  # a channel with no message size limits of its own

    def serving(self, tag_: str) -> None:
        """A normal Put and Range still work (and the process is alive)."""
        assert self.server.proc.poll() is None, f"kubefabric exited after {tag_}:\n{self.server.log()[-3000:]}"
        key = b"fuzz/health/" + tag_.encode(errors="replace")[:100]
        put = self.client.put(key, b"ok")
        assert isinstance(put, pb.PutResponse), (tag_, put)
        got = self.client.get(key)
        assert isinstance(got, pb.RangeResponse) and got.kvs[0].value == b"ok", (tag_, got)


@pytest.fixture(scope="module")
def kf(tmp_path_factory):
    server = START["kubefabric"](tmp_path_factory.mktemp("kf-malformed"))
    k = KF(server, Client(server.endpoint, "kubefabric"), channel(server.endpoint))
    yield k
    k.channel.close()
    k.client.close()
    server.stop()


def problem(result, must_fail: bool) -> str | None:
    """What is wrong with an answer to a frame: none, or a broken server, or a success where the
    frame is not a valid message."""
    if isinstance(result, Failure) and result.code in BROKEN:
        return f"no answer: {result}"
    if must_fail and not isinstance(result, Failure):
        return "answered OK"
    return None


def send_all(kf, frames, must_fail) -> list[str]:
    """Send (name, method, data) frames one by one; the problems found, server checked after each."""
    problems = []
    for name, method, data in frames:
        result = raw_unary(kf.channel, method, data)
        if (p := problem(result, must_fail(method, data))) is not None:
            problems.append(f"{name} to {method}: {p} ({data[:60]!r})")
        kf.serving(name)
    return problems


def test_random_garbage_is_refused_and_server_keeps_serving(kf):
    rng = random.Random(0x6B66)  # fixed: the same frames on every run
    frames = [(f"garbage {i}", method, data) for method in UNARY for i, data in enumerate(garbage(rng, 25))]
    problems = send_all(kf, frames, lambda method, data: not parses(UNARY[method], data))
    assert not problems, "\n".join(problems)


def test_truncated_at_every_prefix_is_refused_and_server_keeps_serving(kf):
    frames = [(f"first {n} of {len(data)} bytes", method, data[:n])
              for method, data in well_formed().items() for n in range(len(data))]
    problems = send_all(kf, frames, lambda method, data: not parses(UNARY[method], data))
    assert not problems, "\n".join(problems)


def test_unparseable_frames_are_refused(kf):
    problems = send_all(kf, [(name, m, d) for name, (m, d) in UNPARSEABLE.items()], lambda m, d: True)
    assert not problems, "\n".join(problems)


# Fields the reference etcd (3.4) does not have: a wrong wire type there is an unknown field to
# it, skipped, so it answers OK where etcd >= 3.5 (and KubeFabric) refuse the frame.
NOT_IN_ETCD_34 = {"MemberListRequest.linearizable"}


def all_wrong_wire_frames() -> list[tuple[str, str, bytes]]:
    frames = [(name, method, data) for method, msg_type in UNARY.items()
              for name, data in wrong_wire_frames(msg_type)
              if name.split(" ")[0] not in NOT_IN_ETCD_34]
    return frames + [(name, m, d) for name, (m, d) in WRONG_WIRE.items()]


def test_wrong_wire_types_are_answered_and_server_keeps_serving(kf):
    """Whether each must be an error is etcd's call (it knows fewer fields than our protos):
    test_wrong_wire_types_answer_like_etcd compares the answers."""
    problems = send_all(kf, all_wrong_wire_frames(), lambda m, d: False)
    assert not problems, "\n".join(problems)


def test_3_mib_requests_are_resource_exhausted(kf):
    for method, data in oversized().items():
        assert len(data) > GRPC_LIMIT
        result = raw_unary(kf.channel, method, data)
        assert isinstance(result, Failure) and result.code == "RESOURCE_EXHAUSTED", (method, result)
        kf.serving(f"3 MiB {method}")
    with raw_stream(kf.channel, WATCH, timeout=30) as w:
        w.send(watch_create(b"w" * (3 * MIB)))
        result = w.recv(10)
        assert isinstance(result, Failure) and result.code == "RESOURCE_EXHAUSTED", result
    kf.serving("3 MiB watch frame")


def test_just_over_max_request_bytes_is_too_large(kf):
    c = kf.client
    put = put_of_size(MAX_REQUEST_BYTES + 1)
    assert c.call(c.kv.Put, put) == TOO_LARGE
    kf.serving("put just over")
    txn = pb.TxnRequest(success=[pb.RequestOp(request_put=put_of_size(MAX_REQUEST_BYTES - 4))])
    assert txn.ByteSize() > MAX_REQUEST_BYTES
    assert c.call(c.kv.Txn, txn) == TOO_LARGE
    kf.serving("txn just over")
    assert isinstance(c.call(c.kv.Put, put_of_size(MAX_REQUEST_BYTES - 64 * 1024)), pb.PutResponse)


BAD_STREAM_FRAMES = {
    "3 bytes of 0xff": b"\xff\xff\xff",
    "create cut short": watch_create(b"fuzz/cut")[:-2],
    "create_request as a varint": field_bytes(1, VARINT),
    "create key as a varint": wrap(field_bytes(1, VARINT), 1),
    "a lone end-group": tag(3, EGROUP),
}


def stream_end(stream, wait: float = 3.0):
    """The next answer on a stream after a bad frame: its error, or 'no answer'."""
    try:
        return stream.recv(wait)
    except NoResponse:
        return "no answer"


@pytest.mark.parametrize("name", BAD_STREAM_FRAMES)
def test_watch_stream_garbage_frame_ends_the_stream_with_an_error(kf, name):
    with raw_stream(kf.channel, WATCH) as w:
        w.send(watch_create())
        created = pb.WatchResponse.FromString(w.recv(5))
        assert created.created, created
        w.send(BAD_STREAM_FRAMES[name])
        end = stream_end(w)
        assert isinstance(end, Failure) and end.code not in BROKEN | {"OK"}, (
            f"after {name!r} the Watch stream gave {end!r} (etcd: INTERNAL, stream ended)")
    kf.serving(f"watch {name}")
    with WatchStream(kf.client) as fresh:  # watches still work
        assert fresh.created(b"fuzz/after").created
        kf.client.put(b"fuzz/after", b"1")
        assert fresh.events(1)[0].events[0].kv.value == b"1"


def test_keepalive_stream_garbage_frame_ends_the_stream_with_an_error(kf):
    with raw_stream(kf.channel, KEEPALIVE) as s:
        s.send(pb.LeaseKeepAliveRequest(ID=12345).SerializeToString())
        assert not isinstance(s.recv(5), Failure)  # unknown lease: answered with TTL 0
        s.send(b"\xff\xff\xff")
        end = stream_end(s)
        assert isinstance(end, Failure) and end.code not in BROKEN | {"OK"}, end
    kf.serving("keepalive garbage")


# Differential: the same frames to etcd and KubeFabric.

def code(result) -> str:
    """An answer as its gRPC code ('OK' for a response); 'no answer' stays as it is."""
    return result.code if isinstance(result, Failure) else result if isinstance(result, str) else "OK"


def test_oversized_requests_match_etcd(differential):
    def body(c, record):
        for method, data in oversized().items():
            record(f"3 MiB {method}: code", code(raw_unary(c.channel, method, data)))
        with raw_stream(c.channel, WATCH, timeout=30) as w:
            w.send(watch_create(b"w" * (3 * MIB)))
            record("3 MiB watch frame: code", code(w.recv(10)))
        record("Put just over the limit", c.call(c.kv.Put, put_of_size(MAX_REQUEST_BYTES + 1)))
        record("Put of 2 MiB - 1 KiB", c.call(c.kv.Put, put_of_size(GRPC_LIMIT - 1024)))
        txn = pb.TxnRequest(success=[pb.RequestOp(request_put=put_of_size(MAX_REQUEST_BYTES))])
        record("Txn just over the limit", c.call(c.kv.Txn, txn))
        record("Put well under the limit", c.call(c.kv.Put, put_of_size(MAX_REQUEST_BYTES - 64 * 1024)))
        record("Range with a 1.6 MB key", c.get(b"r" * (MAX_REQUEST_BYTES + 100)))
        record("still serving", c.get(b"big", keys_only=True))
    differential(body)


def test_request_limit_counts_the_raft_envelope_like_etcd(differential):
    """etcd compares --max-request-bytes with the marshalled raft request (the Put plus a header
    with a 64-bit request ID and the field tags: at least 15 bytes more), so a Put of exactly the
    limit, or 8 bytes under it, is already 'request is too large'."""
    def body(c, record):
        for under in (0, 8):
            record(f"Put of the limit - {under}", c.call(c.kv.Put, put_of_size(MAX_REQUEST_BYTES - under)))
        record("Put of the limit - 64", c.call(c.kv.Put, put_of_size(MAX_REQUEST_BYTES - 64)))
    differential(body)


def test_delete_range_over_the_limit_is_too_large_like_etcd(differential):
    """DeleteRange goes through raft in etcd, so its size is checked like a Put's."""
    def body(c, record):
        record("DeleteRange with a 1.6 MB key", c.delete(b"d" * (MAX_REQUEST_BYTES + 100)))
    differential(body)


def test_read_only_txn_over_the_limit_is_answered_like_etcd(differential):
    """etcd answers a Txn without writes from the read path, which has no size check."""
    def body(c, record):
        big = pb.RangeRequest(key=b"r" * (MAX_REQUEST_BYTES + 100))
        record("read-only Txn with a 1.6 MB key", c.txn(success=[pb.RequestOp(request_range=big)]))
    differential(body)


def test_unparseable_frames_answer_like_etcd(differential):
    def body(c, record):
        for name, (method, data) in UNPARSEABLE.items():
            record(f"{name}: code", code(raw_unary(c.channel, method, data)))
    differential(body)


def test_wrong_wire_types_answer_like_etcd(differential):
    """etcd's generated unmarshallers refuse a known field with the wrong wire type (INTERNAL
    'proto: wrong wireType = 0 for field Key'); protobuf's own parser keeps it as an unknown
    field and the request runs without it."""
    def body(c, record):
        for name, method, data in all_wrong_wire_frames():
            record(f"{name}: code", code(raw_unary(c.channel, method, data)))
    differential(body)


def test_stream_garbage_frames_answer_like_etcd(differential):
    def body(c, record):
        for name, frame in BAD_STREAM_FRAMES.items():
            with raw_stream(c.channel, WATCH) as w:
                w.send(watch_create())
                record(f"watch {name}: created", pb.WatchResponse.FromString(w.recv(5)))
                w.send(frame)
                record(f"watch {name}: end", code(stream_end(w)))
        with raw_stream(c.channel, KEEPALIVE) as s:
            s.send(b"\xff\xff\xff")
            record("keepalive garbage: end", code(stream_end(s)))
    differential(body)
