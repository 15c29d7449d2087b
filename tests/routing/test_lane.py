"""The batch lane (kubefabric.shardsvc.lane) at its edges; the reads and writes that travel on it
are tested on both carriers in test_replica_reads.py and test_leader_writes.py, and every
`kubefabric serve --workers` test runs its workers' hop on it.

- a router finds a replica's lane from the address it dials and the Status' `lane` (a port on
  the same host; a unix socket only for a replica dialled on one);
- a connection that is not a lane stream is refused with a reason, and the client's stream
  fails to open as a gRPC stream would (UNAVAILABLE), so the router stays on unary calls;
- a message over the service's --max-request-bytes closes the connection: the writes on it get
  the stream's "lost" outcome (etcd's leader-failure error), never a hang, and a new stream works;
- a shard service stops at a lane port it cannot have, with a message instead of a traceback
  (the lane with TLS: tests/security/test_shard_tls.py);
- the Feed of commits rides the lane too: every commit delivered once, in order; its failure
  (a compacted start) is the gRPC Feed's code and message.
"""
from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from types import SimpleNamespace

import grpc
import pytest

from harness.servers import start_shard
from kubefabric.etcd.errors import EtcdError
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb
from kubefabric.shardsvc.client import RemoteShard
from kubefabric.shardsvc.lane import END, HELLO, OK, LaneServer, LaneStub, frame, lane_stub
from kubefabric.shardsvc.replicas import LEADER_FAILED
from kubefabric.shardsvc.service import ShardService
from kubefabric.shardsvc.writes import WriteStream


@pytest.mark.parametrize("endpoint,advertised,expected", [
    ("10.0.0.7:2390", ":2391", "10.0.0.7:2391"),
    ("[fd00::7]:2390", ":2391", "[fd00::7]:2391"),
    ("shard-0.shards.svc:2390", ":2391", "shard-0.shards.svc:2391"),
    ("unix:/run/kf/shard.sock", "unix:/run/kf/lane.sock", "unix:/run/kf/lane.sock"),
    ("10.0.0.7:2390", "", None),                        # no lane
    ("10.0.0.7:2390", "unix:/run/kf/lane.sock", None),  # another machine's socket
    ("unix:/run/kf/shard.sock", ":2391", None),         # a port, but of which host?
    ("10.0.0.7:2390", "10.0.0.8:2391", None),           # not a form a service advertises
])
def test_a_router_finds_the_lane_of_the_replica_it_dials(endpoint, advertised, expected):
    stub = lane_stub(endpoint, advertised)
    assert (stub.address if stub else None) == expected


class Core:
    """The leader's shard core as the service's writes use it: a put answers at revision 7."""

    def __init__(self):
        self.is_leader = True
        self.state = SimpleNamespace(committed=7)
        self.puts = 0

    async def put(self, req: pb.PutRequest, sync_rev: int = 0) -> pb.PutResponse:
        self.puts += 1
        return pb.PutResponse(header=pb.ResponseHeader(revision=7))


def run(body, max_request_bytes: int = 1 << 20) -> None:
    """body(lane_server, core) with a LaneServer over the real ShardService on 127.0.0.1."""
    async def main():
        core = Core()
        node = SimpleNamespace(local=lambda: core, shard=core, address="", leader_address="",
                               name="lane")
        server = LaneServer(ShardService(node), max_request_bytes)
        await server.start("127.0.0.1:0")
        try:
            await body(server, core)
        finally:
            await server.stop(0)
    asyncio.run(main())


def _address(server: LaneServer) -> str:
    return "127.0.0.1" + server.address


def _put(value: bytes) -> spb.PutRequest:
    return spb.PutRequest(put=pb.PutRequest(key=b"/k", value=value))


def test_what_is_not_a_lane_stream_is_refused_with_a_reason(caplog):
    async def body(server, core):
        # connected and closed at once (a port probe): nothing to answer, nothing to report
        _, probe = await asyncio.open_connection("127.0.0.1", int(server.address[1:]))
        probe.close()
        await asyncio.sleep(0.1)
        assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
        reader, writer = await asyncio.open_connection("127.0.0.1", int(server.address[1:]))
        writer.write(frame(b"GET / HTTP/1.1"))
        reply = await asyncio.wait_for(reader.read(), 5.0)  # the reason, then the close
        assert b"not a lane stream" in reply, reply
        writer.close()
        # an unknown stream method: the client's open fails as a gRPC stream's would
        stream = LaneStub(_address(server), {"Nope": spb.WriteResponses})
        call = stream.Nope()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.initial_metadata()
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "refused" in refused.value.details() and call.done()
        # nothing listening: the same
        dead = LaneStub("127.0.0.1:1", {"WriteBatches": spb.WriteResponses}).WriteBatches()
        with pytest.raises(grpc.aio.AioRpcError) as unreachable:
            await dead.initial_metadata()
        assert unreachable.value.code() == grpc.StatusCode.UNAVAILABLE
    run(body)


def test_a_message_over_the_limit_closes_the_connection_and_its_writes_are_lost():
    async def body(server, core):
        address = _address(server)
        stream = WriteStream(lambda: LaneStub(address, {"WriteBatches": spb.WriteResponses}),
                             "lane")
        await stream.open(5.0)
        assert (await stream.write("put", _put(b"small"))).put.header.revision == 7
        with pytest.raises(EtcdError) as lost:
            await asyncio.wait_for(stream.write("put", _put(b"x" * 4096)), 5.0)
        assert lost.value is LEADER_FAILED
        assert not stream.is_open and core.puts == 1
        # a new stream on a new connection works
        again = WriteStream(lambda: LaneStub(address, {"WriteBatches": spb.WriteResponses}),
                            "lane")
        await again.open(5.0)
        assert (await again.write("put", _put(b"small"))).put.header.revision == 7
        # the end of the caller's requests: answered, then the stream's clean end
        answer = await again.send("put", _put(b"last"))
        await again.finish()
        assert (await asyncio.wait_for(answer, 5.0)).put.header.revision == 7
        again.close()
    run(body, max_request_bytes=1024)


def test_the_end_frame_ends_the_stream_cleanly():
    async def body(server, core):
        reader, writer = await asyncio.open_connection("127.0.0.1", int(server.address[1:]))
        writer.write(frame(HELLO + b"WriteBatches"))
        assert await reader.readexactly(4) == END  # accepted
        msg = spb.WriteRequests(requests=[spb.WriteRequest(id=1, put=_put(b"v"))])
        writer.write(frame(msg.SerializeToString()) + END)
        size = int.from_bytes(await reader.readexactly(4), "big")
        answers = spb.WriteResponses.FromString(await reader.readexactly(size))
        assert [(a.id, a.put.put.header.revision) for a in answers.responses] == [(1, 7)]
        assert await reader.readexactly(len(OK)) == OK and await reader.read() == b""
        writer.close()
    run(body)


def test_the_feed_rides_the_lane_and_fails_as_on_grpc(tmp_path):
    """A router follows a shard service's commits on its lane: every commit delivered once, in
    order; a Feed from a compacted revision fails with the gRPC Feed's code and message."""
    server = start_shard(tmp_path, "sqlite", f"sqlite://{tmp_path / 'db'}",
                         ["--lane-address", "127.0.0.1:0"])

    async def main():
        shard = RemoteShard([server.endpoint])
        lanes = []
        found = shard.lane_of

        async def lane_of(target, stub):
            lanes.append(await found(target, stub))
            return lanes[-1]
        shard.lane_of = lane_of
        delivered: list[int] = []
        shard.listeners.append(lambda published, committed: delivered.extend(r for r, _ in published))
        await shard.open(wait_s=30.0, follow=True)
        try:
            revs = [(await shard.put(pb.PutRequest(key=b"/f%d" % i, value=b"v"))).header.revision
                    for i in range(20)]
            async with asyncio.timeout(10):
                while delivered[-1:] != revs[-1:]:
                    await asyncio.sleep(0.02)
            assert delivered == revs
            assert lanes and all(isinstance(lane, LaneStub) for lane in lanes), lanes
            # compacted history: the Feed's error, as the gRPC Feed gives it
            await shard.compact(revs[10])
            grpc_feed = shard.stubs[0].Feed(spb.FeedRequest(start_rev=2))
            with pytest.raises(grpc.aio.AioRpcError) as on_grpc:
                await grpc_feed.read()
            lane_feed = lanes[0].Feed(spb.FeedRequest(start_rev=2))
            with pytest.raises(grpc.aio.AioRpcError) as on_lane:
                await lane_feed.read()
            assert (on_lane.value.code(), on_lane.value.details()) == \
                (on_grpc.value.code(), on_grpc.value.details()), on_lane.value
            assert lane_feed.done()
        finally:
            await shard.close()
    try:
        asyncio.run(main())
    finally:
        server.stop()


def test_a_lane_port_in_use_stops_the_start_with_its_reason(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [sys.executable, "-m", "kubefabric.cli", "backend-sqlite", "--dsn",
                f"sqlite://{tmp_path / 'db'}", "--listen-address", "127.0.0.1:0",
                "--lane-address", f"127.0.0.1:{port}", "--metrics-address", ""]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"--lane-address: cannot listen on 127.0.0.1:{port}" in done.stderr, done.stderr
    assert "address already in use" in done.stderr and "Traceback" not in done.stderr
