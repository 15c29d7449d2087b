"""Space exhaustion, like etcd: the NOSPACE alarm (quota reached, or the disk itself full)
refuses writes with etcd's error while reads, deletes, compaction and defragmentation keep
working; after compaction + defragment + alarm disarm, writes succeed again and nothing that
was acknowledged is lost."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.client import Client, Failure
from harness.servers import start_kubefabric
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

NO_SPACE = Failure("RESOURCE_EXHAUSTED", "etcdserver: mvcc: database space exceeded")
VALUE = b"x" * 16_000


def fill(client: Client, limit: int = 2000) -> dict[bytes, int]:
    """Put distinct keys until the server refuses; returns acknowledged key -> revision."""
    acked = {}
    for i in range(limit):
        key = b"/fill/%05d" % i
        resp = client.put(key, VALUE)
        if isinstance(resp, Failure):
            assert resp == NO_SPACE, resp
            return acked
        acked[key] = resp.header.revision
    raise AssertionError(f"{limit} puts of {len(VALUE)} bytes never hit the space limit")


def alarms(client: Client) -> list:
    resp = client.call(client.maintenance.Alarm, pb.AlarmRequest(action=pb.AlarmRequest.GET))
    return [(a.alarm) for a in resp.alarms]


def recover_and_check(client: Client, acked: dict[bytes, int]) -> None:
    # reads and deletes work under the alarm; writes do not
    assert client.put(b"/other", b"v") == NO_SPACE
    txn_put = client.txn(success=[pb.RequestOp(request_put=pb.PutRequest(key=b"/t", value=b"v"))])
    assert txn_put == NO_SPACE
    assert client.call(client.lease.LeaseGrant, pb.LeaseGrantRequest(TTL=60)) == NO_SPACE
    first = next(iter(acked))
    assert client.get(first).kvs[0].value == VALUE
    deleted = client.call(client.kv.DeleteRange, pb.DeleteRangeRequest(key=b"/fill/", range_end=b"/fill0"))
    assert deleted.deleted == len(acked)
    status = client.call(client.maintenance.Status, pb.StatusRequest())
    assert any("NOSPACE" in e for e in status.errors)
    # free the space, disarm, write again
    client.call(client.kv.Compact, pb.CompactionRequest(revision=deleted.header.revision, physical=True))
    client.call(client.maintenance.Defragment, pb.DefragmentRequest())
    # the alarm is the member's own (as etcd raises it): disarmed by that member id, as
    # `etcdctl alarm disarm` does after listing
    member = client.call(client.maintenance.Status, pb.StatusRequest()).header.member_id
    disarm = client.call(client.maintenance.Alarm, pb.AlarmRequest(
        action=pb.AlarmRequest.DEACTIVATE, memberID=member, alarm=pb.NOSPACE))
    assert [a.alarm for a in disarm.alarms] == [pb.NOSPACE]
    assert alarms(client) == []
    put = client.put(b"/after", b"recovered")
    assert not isinstance(put, Failure), put
    assert put.header.revision == deleted.header.revision + 1


def test_quota_raises_nospace_and_recovers(tmp_path):
    server = start_kubefabric(tmp_path, ["--quota-backend-bytes", str(1024 * 1024)])
    client = Client(server.endpoint)
    try:
        acked = fill(client)
        assert alarms(client) == [pb.NOSPACE]
        recover_and_check(client, acked)
    finally:
        client.close()
        server.stop()


@pytest.fixture
def small_fs(tmp_path):
    """A 12 MiB tmpfs made for this test (tests run as root in CI)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_raises_nospace_and_store_reopens(tmp_path, small_fs: Path):
    data = small_fs / "data"
    server = start_kubefabric(tmp_path, ["--sqlite-synchronous", "NORMAL"], data_dir=data)
    client = Client(server.endpoint)
    try:
        acked = fill(client)
        assert alarms(client) == [pb.NOSPACE]
        for key, rev in list(acked.items())[::25]:
            got = client.get(key)
            assert got.kvs[0].mod_revision == rev and got.kvs[0].value == VALUE
        recover_and_check(client, acked)
    finally:
        client.close()
        assert server.stop() == 0, server.log()
    (tmp_path / "again").mkdir()
    reopened = start_kubefabric(tmp_path / "again", data_dir=data)
    client = Client(reopened.endpoint)
    try:
        assert client.get(b"/after").kvs[0].value == b"recovered"
    finally:
        client.close()
        reopened.stop()
