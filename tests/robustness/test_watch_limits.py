"""Limits on watches (etcd has none; refused the ways an etcd client understands):
--max-watchers-per-stream refuses one more create with created+canceled and a reason, like etcd
refuses a watch it cannot serve, and the stream keeps working; --max-watch-streams-per-connection
refuses one more stream on a connection with RESOURCE_EXHAUSTED, other connections unaffected; a
client that reads nothing at all holds the server to --watch-stream-buffer-bytes."""
from __future__ import annotations

import queue
import time

import grpc
import pytest

from harness.client import Client
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.etcdserverpb import rpc_pb2_grpc as rpc


def create(key: bytes, range_end: bytes = b"") -> pb.WatchRequest:
    return pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key, range_end=range_end))


class Stream:
    """One Watch stream on `channel`, fed from a queue (never half-closed until close())."""

    def __init__(self, channel: grpc.Channel):
        self.requests: queue.Queue = queue.Queue()
        self.responses = rpc.WatchStub(channel).Watch(iter(self.requests.get, None), timeout=60)

    def send(self, req: pb.WatchRequest) -> None:
        self.requests.put(req)

    def next(self) -> pb.WatchResponse:
        return next(self.responses)

    def close(self) -> None:
        self.requests.put(None)
        self.responses.cancel()


def own_connection(endpoint: str) -> grpc.Channel:
    """A channel with its own TCP connection (grpc shares connections between equal channels)."""
    return grpc.insecure_channel(endpoint, options=[("grpc.use_local_subchannel_pool", 1)])


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_watchers_per_stream_limit_refuses_like_etcd(kf):
    server = kf(extra=["--max-watchers-per-stream", "3"])
    writer = Client(server.endpoint)
    channel = own_connection(server.endpoint)
    try:
        s = Stream(channel)
        ids = []
        for i in range(3):
            s.send(create(b"/k%d" % i))
            resp = s.next()
            assert resp.created and not resp.canceled, resp
            ids.append(resp.watch_id)
        s.send(create(b"/k3"))
        refused = s.next()
        assert refused.created and refused.canceled and refused.watch_id == -1, refused
        assert "--max-watchers-per-stream" in refused.cancel_reason
        assert "limit is 3" in refused.cancel_reason

        # the stream keeps serving its watchers, and a cancel frees a place
        rev = writer.put(b"/k1", b"v").header.revision
        ev = s.next()
        assert ev.watch_id == ids[1] and [e.kv.mod_revision for e in ev.events] == [rev]
        s.send(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=ids[0])))
        assert s.next().canceled
        s.send(create(b"/k3"))
        again = s.next()
        assert again.created and not again.canceled and again.watch_id >= 0, again
        s.close()
    finally:
        channel.close()
        writer.close()


def test_streams_per_connection_limit_is_resource_exhausted(kf):
    server = kf(extra=["--max-watch-streams-per-connection", "2"])
    one, other = own_connection(server.endpoint), own_connection(server.endpoint)
    try:
        held = []
        for i in range(2):
            s = Stream(one)
            s.send(create(b"/a"))
            assert s.next().created
            held.append(s)
        third = Stream(one)
        third.send(create(b"/a"))
        with pytest.raises(grpc.RpcError) as refused:
            third.next()
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-watch-streams-per-connection" in refused.value.details()

        elsewhere = Stream(other)  # another connection has its own allowance
        elsewhere.send(create(b"/a"))
        assert elsewhere.next().created

        held.pop().close()  # a closed stream frees its place on the connection
        deadline = time.monotonic() + 5
        while True:
            s = Stream(one)
            s.send(create(b"/a"))
            try:
                assert s.next().created
                break
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() < deadline, "the closed stream's place was never freed"
                time.sleep(0.05)
        s.close()
        elsewhere.close()
        for s in held:
            s.close()
    finally:
        one.close()
        other.close()


WATCHERS = 200          # on the one stream that is never read
VALUE = b"x" * 50_000   # each put queues WATCHERS responses of ~50 kB: 10 MB per put
PUTS = 40               # 400 MB of responses if nothing bounded them
BUDGET = 1024 * 1024


def test_client_that_reads_nothing_stays_within_the_buffer_budget(kf, say):
    """The client sends creates and never reads a single response (not even `created`): the
    server queues at most the budget, cancels the watchers, and does not grow past it."""
    server = kf(extra=["--watch-stream-buffer-bytes", str(BUDGET)])
    writer = Client(server.endpoint)
    deaf = own_connection(server.endpoint)
    try:
        writer.put(b"/deaf/warmup", VALUE)
        s = Stream(deaf)
        for _ in range(WATCHERS):
            s.send(create(b"/deaf/", b"/deaf0"))
        # creates are read while the backlog is under the budget, then the stream pushes back
        time.sleep(1.0)
        before = rss_kib(server.proc.pid)
        for i in range(PUTS):
            assert writer.put(b"/deaf/%d" % (i % 4), VALUE).header.revision
        growth = rss_kib(server.proc.pid) - before
        say(f"client reading nothing: {PUTS} puts × {WATCHERS} watchers ({PUTS * WATCHERS * len(VALUE) >> 20} MB "
            f"of events unbounded), router RSS grew {growth} KiB with a {BUDGET >> 10} KiB budget")
        assert growth < 48 * 1024, f"RSS grew {growth} KiB: the buffer budget does not bound a deaf client"

        # what was queued arrives in order, then every watcher's cancel with the reason
        created = cancelled = 0
        while cancelled < created or created == 0:
            resp = s.next()
            created += resp.created
            if resp.canceled:
                cancelled += 1
                assert "too slow" in resp.cancel_reason, resp
        assert created <= WATCHERS
        assert writer.get(b"/deaf/0").kvs, "the server keeps serving"
        s.close()
    finally:
        deaf.close()
        writer.close()
