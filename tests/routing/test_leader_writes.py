"""kv-router's writes to a shard service on one Writes stream (kubefabric.shardsvc.leaderwrites),
through RemoteShard against real `backend-sqlite` replicas:

- once the stream to the leader is open, Put/DeleteRange/Txn go on it (the unary path is
  refused during those writes, so a write that went unary fails the test); writes pipelined on
  the stream are applied in the order sent, concurrent callers each see their own order;
- concurrent writes of 1 MiB each, more than one message of the shard service's size limit
  (--max-request-bytes) could carry, all succeed on the stream;
- a stream that breaks leaves writes going unary until a new one is open;
- a write on the stream while the leader is killed fails with etcd's "request timed out,
  possibly due to previous leader failure" (not a hang), the next write succeeds on the new
  leader, and writes then go on a stream to it.
Each on both carriers: a gRPC stream, and the batch lane (the service with --lane-address).
"""
from __future__ import annotations

import asyncio
import signal
import sys
import time

import grpc
import pytest

from harness.servers import shard_role, start_shard
from kubefabric.etcd.errors import EtcdError
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb
from kubefabric.shardsvc.client import KV_WRITE_METHODS, RemoteShard
from kubefabric.shardsvc.lane import LaneStub
from kubefabric.shardsvc.replicas import LEADER_FAILED

UNARY_WRITES = frozenset(KV_WRITE_METHODS.values())


CARRIER = "grpc"  # the streams' carrier in this test: a gRPC stream, or the batch lane


@pytest.fixture(autouse=True, params=["grpc", "lane"])
def carrier(request, monkeypatch):
    """Every test runs with the Writes stream on gRPC and on the batch lane (the shard service
    with --lane-address): the writes' outcomes must not depend on the carrier."""
    monkeypatch.setattr(sys.modules[__name__], "CARRIER", request.param)


def shard_args(extra: list[str] | None = None) -> list[str]:
    lane = ["--lane-address", "127.0.0.1:0"] if CARRIER == "lane" else []
    return [*lane, *(extra or [])]


class UnaryGuard:
    """Wraps shard._call: while `refuse` is set, a unary KV write fails the test."""

    def __init__(self, shard: RemoteShard):
        self.refuse = False
        self.unary_writes = 0
        self._call = shard._call
        shard._call = self

    async def __call__(self, method, request, write=True):
        if method in UNARY_WRITES:
            self.unary_writes += 1
            assert not self.refuse, f"a {method} went unary while the stream was open"
        return await self._call(method, request, write)


async def wait_stream(shard: RemoteShard, target: int, timeout: float = 10.0):
    """The open stream to replica `target` (writes trigger its opening)."""
    lw = shard.leader_writes
    deadline = time.monotonic() + timeout
    i = 0
    while time.monotonic() < deadline:
        stream = lw.slot.stream
        if stream is not None and stream.is_open and lw.slot.stub is shard.stubs[target]:
            on_lane = isinstance(stream.stub(), LaneStub)
            assert on_lane == (CARRIER == "lane"), f"the stream is on the wrong carrier ({CARRIER})"
            return stream
        await shard.put(pb.PutRequest(key=b"/wait", value=b"%d" % i))
        i += 1
        await asyncio.sleep(0.05)
    raise AssertionError(f"no Writes stream to replica {target} opened within {timeout}s")


def run_on(replicas, body) -> None:
    """asyncio.run(body(shard)) with a RemoteShard on `replicas` (harness Servers), closed after;
    the replicas still running are stopped."""
    async def main():
        shard = RemoteShard([r.endpoint for r in replicas])
        await shard.open(follow=False)
        try:
            await body(shard)
        finally:
            await shard.close()

    try:
        asyncio.run(main())
    finally:
        for r in replicas:
            if r.proc.poll() is None:
                r.stop(signal.SIGTERM)


def _put(key: bytes, value: bytes) -> spb.PutRequest:
    return spb.PutRequest(put=pb.PutRequest(key=key, value=value))


def test_writes_on_the_stream_keep_order_and_fall_back(tmp_path):
    server = start_shard(tmp_path, "sqlite", f"sqlite://{tmp_path / 'db'}", shard_args())

    async def body(shard):
        guard = UnaryGuard(shard)
        stream = await wait_stream(shard, 0)
        guard.refuse = True
        # every kind of write goes on the stream and answers as the unary call would
        put = await shard.put(pb.PutRequest(key=b"/a", value=b"1"))
        txn = await shard.txn(pb.TxnRequest(
            compare=[pb.Compare(key=b"/a", target=pb.Compare.VALUE, value=b"1")],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=b"/a", value=b"2"))]))
        assert txn.succeeded and txn.header.revision == put.header.revision + 1
        deleted = await shard.delete_range(pb.DeleteRangeRequest(key=b"/a"))
        assert deleted.deleted == 1 and deleted.header.revision == txn.header.revision + 1
        assert shard.state.committed == deleted.header.revision
        with pytest.raises(EtcdError) as refused:  # an etcd error answers that write only
            await shard.txn(pb.TxnRequest(success=[
                pb.RequestOp(request_put=pb.PutRequest(key=b"/d")),
                pb.RequestOp(request_put=pb.PutRequest(key=b"/d"))]))
        assert "duplicate key" in refused.value.message, refused.value

        # 100 writes of one key pipelined on the stream: applied in the order sent
        answers = [await stream.send("put", _put(b"/order", b"%03d" % i)) for i in range(100)]
        revs = [(await a).put.header.revision for a in answers]
        assert revs == sorted(revs) and len(set(revs)) == 100, revs
        got = await shard.range(pb.RangeRequest(key=b"/order"))
        assert got.kvs[0].value == b"099" and got.kvs[0].mod_revision == revs[-1]
        assert got.kvs[0].version == 100

        # 8 callers at once, 25 writes each to a key of its own and to one shared key
        async def caller(c: int) -> list[int]:
            out = []
            for i in range(25):
                r = await shard.put(pb.PutRequest(key=b"/c%d" % c, value=b"%d" % i))
                await shard.put(pb.PutRequest(key=b"/shared", value=b"%d-%d" % (c, i)))
                out.append(r.header.revision)
            return out
        per_caller = await asyncio.gather(*(caller(c) for c in range(8)))
        for c, seen in enumerate(per_caller):
            assert seen == sorted(seen), (c, seen)
            kv = (await shard.range(pb.RangeRequest(key=b"/c%d" % c))).kvs[0]
            assert kv.value == b"24" and kv.mod_revision == seen[-1]
        assert (await shard.range(pb.RangeRequest(key=b"/shared"))).kvs[0].version == 200

        # the stream breaks: the next writes go unary, then on a new stream
        stream.close()
        guard.refuse = False
        before = guard.unary_writes
        resp = await shard.put(pb.PutRequest(key=b"/after-break", value=b"x"))
        assert resp.header.revision > revs[-1]
        assert guard.unary_writes == before + 1
        reopened = await wait_stream(shard, 0)
        assert reopened is not stream
        guard.refuse = True
        await shard.put(pb.PutRequest(key=b"/after-break", value=b"y"))

    run_on([server], body)


def _leader(replicas, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i, r in enumerate(replicas):
            if r.proc.poll() is None and shard_role(r.endpoint, 1.0) == "leader":
                return i
        time.sleep(0.05)
    raise AssertionError("no replica became leader")


def test_concurrent_large_writes_all_succeed_on_the_stream(tmp_path):
    server = start_shard(tmp_path, "sqlite", f"sqlite://{tmp_path / 'db'}", shard_args())

    async def body(shard):
        guard = UnaryGuard(shard)
        await wait_stream(shard, 0)
        guard.refuse = True
        big = b"x" * (1 << 20)
        puts = await asyncio.gather(*(shard.put(pb.PutRequest(key=b"/big%d" % i, value=big))
                                      for i in range(6)))
        assert len({p.header.revision for p in puts}) == 6, puts  # six commits, none failed
        got = await shard.range(pb.RangeRequest(key=b"/big", range_end=b"/bih", keys_only=True))
        assert got.count == 6, got
    run_on([server], body)


def test_a_write_on_the_stream_when_the_leader_is_killed(tmp_path):
    dsn = f"sqlite://{tmp_path / 'db'}"
    lease = ["--leader-lease", "2s"]
    replicas = [start_shard(tmp_path, "sqlite", dsn, shard_args(lease), name=f"replica{i}") for i in range(2)]

    async def body(shard):
        guard = UnaryGuard(shard)
        old = _leader(replicas)
        shard.leader = old
        stream = await wait_stream(shard, old)
        guard.refuse = True
        before = await shard.put(pb.PutRequest(key=b"/k", value=b"before"))
        # frozen, a write reaches its socket but no answer; then it dies with it unanswered
        replicas[old].proc.send_signal(signal.SIGSTOP)
        write = asyncio.ensure_future(shard.put(pb.PutRequest(key=b"/k", value=b"lost?")))
        await asyncio.sleep(0.1)
        assert not write.done()
        replicas[old].proc.kill()
        replicas[old].proc.wait()
        with pytest.raises(EtcdError) as failed:
            await asyncio.wait_for(write, 15.0)
        assert failed.value is LEADER_FAILED, failed.value
        assert not stream.is_open
        # the next write finds the new leader (unary), then writes go on a stream to it. The
        # first unary write may be the one that finds the dead leader's connection broken
        # ("Stream removed", UNAVAILABLE: its outcome unknown to the router); a client retries
        # it, as around any etcd leader change: one such failure at most
        guard.refuse = False
        try:
            after = await asyncio.wait_for(shard.put(pb.PutRequest(key=b"/k", value=b"after")), 20.0)
        except EtcdError as err:
            assert err.code == grpc.StatusCode.UNAVAILABLE, err
            after = await asyncio.wait_for(shard.put(pb.PutRequest(key=b"/k", value=b"after")), 20.0)
        assert after.header.revision > before.header.revision
        # the router learns the new leader from a probe (a write that reached the other replica
        # first is forwarded there and succeeds without one): writes reach a stream to it
        new = 1 - old
        await wait_stream(shard, new)
        assert shard.leader == new
        guard.refuse = True
        last = await shard.put(pb.PutRequest(key=b"/k", value=b"on the new stream"))
        got = await shard.range(pb.RangeRequest(key=b"/k"))
        assert got.kvs[0].value == b"on the new stream"
        assert got.kvs[0].mod_revision == last.header.revision

    run_on(replicas, body)


def test_a_stopping_shard_service_ends_the_writes_stream(tmp_path):
    """A router's Writes stream is one long call: SIGTERM on the shard service ends it (its
    running writes answered) instead of the service waiting for it until its grace ran out and
    being killed."""
    server = start_shard(tmp_path, "sqlite", f"sqlite://{tmp_path / 'db'}",
                         shard_args(["--shutdown-grace", "30s"]))

    async def body(shard):
        stream = await wait_stream(shard, 0)
        answers = [await stream.send("put", _put(b"/last", b"%d" % i)) for i in range(20)]
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(server.proc.wait, 15)
        took = time.monotonic() - t0
        assert code == 0, f"exit {code}:\n{server.log()[-3000:]}"
        assert took < 5, f"the shard service took {took:.1f}s to stop with a Writes stream open"
        for a in answers:   # sent before the SIGTERM: answered (or, unread, outcome unknown)
            try:
                assert (await a).put.header.revision > 0
            except EtcdError as err:
                assert err is LEADER_FAILED, err
        deadline = time.monotonic() + 5
        while stream.is_open and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not stream.is_open, "the stream still counts as open after the server ended it"

    run_on([server], body)
