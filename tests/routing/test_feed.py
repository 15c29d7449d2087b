"""The Shard API's Feed (kubefabric.shardsvc.service) against a real `backend-sqlite` replica:
commits queued while the feed's previous message was being written (a subscriber that reads
slowly) go out together in one message, up to about FEED_MESSAGE_BYTES, still in revision order,
each exactly once, with the closed revision of the newest."""
from __future__ import annotations

import asyncio

import grpc

from harness.servers import start_shard
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2_grpc
from kubefabric.shardsvc.service import FEED_MESSAGE_BYTES

PUTS = 40
VALUE = b"v" * (512 << 10)  # a few of them fill the stream's flow-control window


def test_commits_queued_behind_a_slow_reader_go_out_together_in_order(tmp_path):
    server = start_shard(tmp_path, "sqlite", f"sqlite://{tmp_path / 'db'}")

    async def main():
        options = [("grpc.max_receive_message_length", 64 << 20)]
        async with grpc.aio.insecure_channel(server.endpoint, options=options) as channel:
            stub = shard_pb2_grpc.ShardStub(channel)
            feed = stub.Feed(spb.FeedRequest())
            first = await feed.read()  # subscribed: the closed revision so far, no commits
            assert not first.commits, first
            # not reading: the feed's writes stall on flow control and later commits queue
            revs = []
            for i in range(PUTS):
                put = await stub.Put(spb.PutRequest(put=pb.PutRequest(key=b"/k%d" % i, value=VALUE)),
                                     timeout=10)
                revs.append(put.put.header.revision)
            assert revs == list(range(revs[0], revs[0] + PUTS)), revs  # one commit each
            messages, got = [], []
            async with asyncio.timeout(30):
                while not got or got[-1] < revs[-1]:
                    msg = await feed.read()
                    assert msg is not grpc.aio.EOF
                    messages.append(msg)
                    got += [c.rev for c in msg.commits]
                    if msg.commits:
                        assert msg.committed_rev >= msg.commits[-1].rev, msg.committed_rev
            feed.cancel()
        assert got == revs, got  # every commit once, in order
        carried = [len(m.commits) for m in messages if m.commits]
        assert max(carried) > 1, carried  # what queued went out together
        assert len(carried) < PUTS, carried
        # merging stops once a message reaches FEED_MESSAGE_BYTES: one commit more at most
        assert all(m.ByteSize() < FEED_MESSAGE_BYTES + len(VALUE) + 4096 for m in messages), carried

    try:
        asyncio.run(main())
    finally:
        server.stop()
