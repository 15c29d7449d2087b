"""Shard leaders publish their committed txns on NATS JetStream (DESIGN §5): one stream per
shard, messages chained by prev_rev, heartbeats with the closed revision, and the log as the
source of truth: after a NATS outage or a crash of the shard, publishing resumes from the log
and the stream ends up with every committed txn."""
from __future__ import annotations

import signal
import time

from harness.eventstream import check_chain, committed_revisions, heartbeats, publish, stream_messages
from harness.client import Client
from harness.nats import NatsServer
from harness.servers import start_router, start_shard
from harness.waiting import wait_for
from kubefabric.events.bus import CLOCK_SUBJECT, events_subject


def put_many(router, prefix: bytes, n: int) -> list[int]:
    c = Client(router.endpoint)
    try:
        return [c.put(prefix + b"%03d" % i, b"v%d" % i).header.revision for i in range(n)]
    finally:
        c.close()


def test_commits_heartbeats_and_the_clock(tmp_path, nats_server):
    name = f"pub{time.monotonic_ns() % 10**9}"
    shard = start_shard(tmp_path, "sqlite", f"sqlite://{tmp_path / 'db'}", ["--nats-url", nats_server.url], name=name)
    router = start_router(tmp_path, [shard])
    try:
        revs = put_many(router, b"/p/", 20)
        messages = wait_for(lambda: (m := stream_messages(nats_server.url, name))
                            and committed_revisions(m)[-1:] == revs[-1:] and m, 15, "the stream")
        assert committed_revisions(messages) == revs
        check_chain(messages)
        for headers, m in messages:
            assert headers["Nats-Msg-Id"] == f"{name}:{m.cluster_id:x}:{m.commits[-1].rev}"
            assert m.shard == name and m.cluster_id != 0 and m.term > 0
        event = messages[-1][1].commits[-1].events[0]
        assert event.kv.key == b"/p/019" and event.kv.value == b"v19"

        beats = heartbeats(nats_server.url, name, 1.0)
        assert len(beats) >= 5, f"{len(beats)} heartbeats in 1 s (every 100 ms expected)"
        assert {(b.prev_rev, b.committed_rev) for b in beats} == {(revs[-1], revs[-1])}

        publish(nats_server.url, CLOCK_SUBJECT, b"5000")  # a hub saw 5000 elsewhere
        wait_for(lambda: any(b.committed_rev >= 5000 for b in heartbeats(nats_server.url, name, 0.3)),
                 15, "the shard to close the broadcast revision")
        assert put_many(router, b"/q/", 1) == [5001], "the next write comes after the synced clock"
    finally:
        router.stop()
        shard.stop()


def test_publishing_resumes_from_the_log(tmp_path):
    """NATS down while writes commit, then the shard killed before it could publish them:
    after both come back the stream has every txn, once per revision, chained."""
    nats = NatsServer(tmp_path)
    nats.start()
    shard = start_shard(tmp_path, "sqlite", f"sqlite://{tmp_path / 'db'}", ["--nats-url", nats.url], name="resume")
    router = start_router(tmp_path, [shard])
    try:
        revs = put_many(router, b"/a/", 10)
        wait_for(lambda: committed_revisions(stream_messages(nats.url, "resume")) == revs, 15, "first batch")
        nats.stop()
        revs += put_many(router, b"/b/", 10)  # committed, not publishable
        time.sleep(0.5)
        nats.start()
        revs += put_many(router, b"/c/", 5)
        wait_for(lambda: committed_revisions(stream_messages(nats.url, "resume")) == revs,
                 15, "the outage's txns from the log")

        nats.stop()
        revs += put_many(router, b"/d/", 5)
        shard.stop(signal.SIGKILL)
        nats.start()
        shard = start_shard(tmp_path, "sqlite", f"sqlite://{tmp_path / 'db'}", ["--nats-url", nats.url],
                            name="resume", port=int(shard.endpoint.rsplit(":", 1)[1]))
        revs += put_many(router, b"/e/", 5)
        messages = wait_for(lambda: (m := stream_messages(nats.url, "resume"))
                            and committed_revisions(m) == revs and m, 15, "the crashed shard's txns")
        check_chain(messages)
        assert "publishing revisions" in shard.log()
    finally:
        router.stop()
        shard.stop()
        nats.stop()
