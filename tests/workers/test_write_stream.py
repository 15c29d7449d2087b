"""The Shard API's Writes stream (kubefabric.shardsvc.writes), against a real `backend-sqlite`
shard service: concurrent writes on one stream are each answered by id and share the writer's
batches, one write's etcd error leaves the stream serving the others, and a stream whose server
went away fails what it had sent with an unknown outcome and says what it could not send."""
from __future__ import annotations

import asyncio
import signal

import grpc
import pytest

from harness.servers import start_shard
from kubefabric.etcd import errors
from kubefabric.etcd.errors import EtcdError
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2_grpc
from kubefabric.shardsvc.replicas import LEADER_FAILED
from kubefabric.shardsvc.writes import WriteStream


def _put(key: bytes, value: bytes) -> spb.PutRequest:
    return spb.PutRequest(put=pb.PutRequest(key=key, value=value))


def test_writes_on_one_stream(tmp_path):
    shard = start_shard(tmp_path, "sqlite", f"sqlite://{tmp_path / 'db'}", ["--leader-lease", "5s"])

    async def body():
        channel = grpc.aio.insecure_channel(shard.endpoint)
        stream = WriteStream(lambda: shard_pb2_grpc.ShardStub(channel), "test")
        try:
            # 200 concurrent puts: every answer is its own request's (its key's revision)
            puts = await asyncio.gather(*(stream.write("put", _put(b"k%03d" % i, b"v%d" % i))
                                          for i in range(200)))
            revs = [p.put.header.revision for p in puts]
            assert sorted(revs) == list(range(2, 202)), revs
            got = await shard_pb2_grpc.ShardStub(channel).Range(spb.RangeRequest(
                range=pb.RangeRequest(key=b"k", range_end=b"l")))
            by_key = {kv.key: kv.mod_revision for kv in got.range.kvs}
            assert by_key == {b"k%03d" % i: revs[i] for i in range(200)}
            # an etcd error answers that write only; the stream goes on
            dup = spb.TxnRequest(txn=pb.TxnRequest(success=[
                pb.RequestOp(request_put=pb.PutRequest(key=b"d")),
                pb.RequestOp(request_put=pb.PutRequest(key=b"d"))]))
            with pytest.raises(EtcdError) as refused:
                await stream.write("txn", dup)
            assert refused.value is errors.DUPLICATE_KEY, refused.value
            deleted = await stream.write("delete_range", spb.DeleteRangeRequest(
                delete_range=pb.DeleteRangeRequest(key=b"k000")))
            assert deleted.delete_range.deleted == 1 and deleted.committed_rev == 202
            # the server stops: the stream ends; a write sent later is reported as not sent
            shard.stop(signal.SIGTERM)
            with pytest.raises((WriteStream.NotSent, EtcdError)) as after:
                await stream.write("put", _put(b"late", b"x"))
            if isinstance(after.value, EtcdError):  # sent just before the stream noticed
                assert after.value is LEADER_FAILED, after.value
        finally:
            stream.close()
            await channel.close()

    asyncio.run(body())
