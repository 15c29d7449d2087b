"""Maintenance, Cluster.MemberList and gRPC health, against etcd and KubeFabric.

Status fields that measure a particular server (database size, raft indexes, version strings,
quota) are left out of the comparison; KubeFabric's version and dbSize get their own checks below.
Member client URLs keep their shape (the side's own endpoint reads CLIENT); peer URLs are reduced
to http://PEER: the harness gives etcd a loopback peer URL, KubeFabric has no peers and reports a
placeholder. Two comparisons are narrowed on purpose:
- AlarmResponse.header: etcd 3.4 sends none, etcd >= 3.5 fills it (revision included); clients
  ignore it, so only the alarms are compared.
- gRPC health for an unknown service: the code (NOT_FOUND) is compared, not the text, which is
  grpc-go's ("unknown service"), not etcd's.
"""
from __future__ import annotations

import re

from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.client import Client
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

MEASURED = ("dbSize", "dbSizeInUse", "raftIndex", "raftAppliedIndex", "version", "storageVersion",
            "dbSizeQuota")


def status(c):
    return c.call(c.maintenance.Status, pb.StatusRequest())


def members(c, **kw):
    r = c.call(c.cluster.MemberList, pb.MemberListRequest(**kw))
    if isinstance(r, pb.MemberListResponse):
        for m in r.members:
            clients = [u.replace(c.endpoint, "CLIENT") for u in m.clientURLs]
            peers = [re.sub(r"^(\w+)://[^/]+", r"\1://PEER", u) for u in m.peerURLs]
            del m.clientURLs[:], m.peerURLs[:]
            m.clientURLs.extend(clients)
            m.peerURLs.extend(peers)
    return r


def test_status(differential):
    def body(c, record):
        record("status", status(c), ignore=MEASURED)
        record("put", c.put(b"k", b"v"))
        record("status after a write", status(c), ignore=MEASURED)
        record("compact", c.call(c.kv.Compact, pb.CompactionRequest(revision=2)))
        record("status after compaction", status(c), ignore=MEASURED)
    differential(body)


def test_alarm_and_defragment(differential):
    def body(c, record):
        record("alarm get", c.call(c.maintenance.Alarm, pb.AlarmRequest(action=pb.AlarmRequest.GET)),
               ignore=("header",))
        record("alarm get, any member", c.call(c.maintenance.Alarm, pb.AlarmRequest(
            action=pb.AlarmRequest.GET, memberID=0, alarm=pb.NONE)), ignore=("header",))
        for i in range(20):
            c.put(b"k%d" % i, b"x" * 1000)
        record("delete", c.delete(b"k", range_end=b"l"))
        record("compact", c.call(c.kv.Compact, pb.CompactionRequest(revision=22, physical=True)))
        record("defragment", c.call(c.maintenance.Defragment, pb.DefragmentRequest()))
        record("data survives defragment", c.put(b"after", b"1"))
        record("get", c.get(b"after"))
        record("status after defragment", status(c), ignore=MEASURED)
    differential(body)


def test_member_list(differential):
    def body(c, record):
        record("member list", members(c))
        record("member list, linearizable", members(c, linearizable=True))
        record("header after a write", [c.put(b"k", b"v"), members(c)])
        record("one member, the status leader", [
            len(getattr(members(c), "members", [])),
            [m.ID for m in getattr(members(c), "members", [])] == [getattr(status(c), "leader", None)]])
    differential(body)


def test_move_leader(differential):
    """One member is its own leader: moving leadership to it is done at once (an empty response,
    no header); a target that is not a member is refused."""
    def body(c, record):
        own = getattr(members(c), "members", [pb.Member()])[0].ID
        record("move to itself", c.call(c.maintenance.MoveLeader, pb.MoveLeaderRequest(targetID=own)))
        record("move to a stranger", c.call(c.maintenance.MoveLeader,
                                             pb.MoveLeaderRequest(targetID=own ^ 0x5A5A), timeout=15))
    differential(body)


def test_grpc_health(differential):
    def body(c, record):
        health = health_pb2_grpc.HealthStub(c.channel)
        record("overall", c.call(health.Check, health_pb2.HealthCheckRequest()))
        unknown = c.call(health.Check, health_pb2.HealthCheckRequest(service="no.such.Service"))
        record("unknown service", getattr(unknown, "code", unknown))
    differential(body)


def _version(text: str) -> tuple[int, ...]:
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)(?:[-+].*)?", text)
    assert m, f"Status.version {text!r} is not a semantic version"
    return tuple(int(x) for x in m.groups())


def test_kubefabric_status_reports_a_recent_etcd_and_its_size(server_factory):
    """kube-apiserver enables consistent reads from cache and WatchList from etcd 3.5.13 on (DESIGN §6)."""
    server = server_factory("kubefabric")
    c = Client(server.endpoint, "kubefabric")
    try:
        s = status(c)
        assert isinstance(s, pb.StatusResponse), s
        assert _version(s.version) >= (3, 5, 13), s.version
        assert s.dbSize > 0, s
        assert 0 < s.dbSizeInUse <= s.dbSize or s.dbSizeInUse == 0, s
        health = health_pb2_grpc.HealthStub(c.channel)
        reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        c.close()
