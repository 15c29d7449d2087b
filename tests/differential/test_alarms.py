"""Alarms raised and disarmed by clients, against etcd and KubeFabric (issue 20 point 5).

etcd stores an alarm as the (member id, type) pair it was given: member id 0 is kept as 0 (the
client library's "disarm all" lists first, then disarms each), so raising NOSPACE for 0 and for
the member itself lists two alarms. Any NOSPACE alarm caps writes (puts, txns with puts, lease
grants) while reads, deletes and compaction go on; any CORRUPT alarm refuses every write,
compaction and lease grant/revoke with DATA_LOSS 'etcdserver: corrupt cluster' while ranges and
read-only txns are served. (etcd 3.4 dies on ACTIVATE of alarm NONE, 3.5+ ignores it:
KubeFabric ignores it, and it is not compared.) The reference is etcd 3.7.3: etcd 3.4 swaps its whole applier when an
alarm type is raised or its last alarm disarmed (NOSPACE raised after CORRUPT answers puts with
NOSPACE; disarming CORRUPT stops enforcing a NOSPACE still listed), 3.6+ rebuilds it from the
alarms listed. etcd lists alarms in Go map order, so lists are compared sorted; the
member id of each alarm is compared as "0", "self" (the member's own id) or its value.

Targets: alarms are the shard core's and persisted as meta rows; the MariaDB and watch-hub
targets add nothing here, so they are left out to keep CI's time.
"""
from __future__ import annotations

from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

GET, ACTIVATE, DEACTIVATE = pb.AlarmRequest.GET, pb.AlarmRequest.ACTIVATE, pb.AlarmRequest.DEACTIVATE


def alarm(c, action, member, kind):
    """The alarms one Alarm call lists, as sorted (member, type) pairs (or its failure)."""
    me = c.call(c.maintenance.Status, pb.StatusRequest()).header.member_id
    resp = c.call(c.maintenance.Alarm, pb.AlarmRequest(action=action, memberID=member, alarm=kind))
    if not isinstance(resp, pb.AlarmResponse):
        return resp
    def who(m):
        return "0" if m == 0 else "self" if m == me else str(m)
    return sorted((who(a.memberID), pb.AlarmType.Name(a.alarm)) for a in resp.alarms)


def status_errors(c):
    """Status.errors as etcd formats them (gogo's text form: a zero member id is left out),
    the member's own id written as "self"."""
    st = c.call(c.maintenance.Status, pb.StatusRequest())
    return sorted(e.replace(str(st.header.member_id), "self") for e in st.errors)


def own_id(c) -> int:
    return c.call(c.maintenance.Status, pb.StatusRequest()).header.member_id


def test_member_zero_is_kept_and_listed_beside_the_member(differential):
    def body(c, record):
        me = own_id(c)
        record("raise NOSPACE for member 0", alarm(c, ACTIVATE, 0, pb.NOSPACE))
        record("raise NOSPACE for the member", alarm(c, ACTIVATE, me, pb.NOSPACE))
        record("raise it again", alarm(c, ACTIVATE, me, pb.NOSPACE))
        record("raise CORRUPT for another member", alarm(c, ACTIVATE, 42, pb.CORRUPT))
        record("list all", alarm(c, GET, 0, pb.NONE))
        record("list NOSPACE", alarm(c, GET, 0, pb.NOSPACE))
        record("list CORRUPT", alarm(c, GET, 7, pb.CORRUPT))
        record("status errors", status_errors(c))
        record("disarm one that is not raised", alarm(c, DEACTIVATE, 9, pb.NOSPACE))
        record("disarm NONE", alarm(c, DEACTIVATE, 0, pb.NONE))
        record("disarm CORRUPT", alarm(c, DEACTIVATE, 42, pb.CORRUPT))
        record("disarm the member's NOSPACE", alarm(c, DEACTIVATE, me, pb.NOSPACE))
        record("member 0 still listed", alarm(c, GET, 0, pb.NONE))
        record("disarm member 0", alarm(c, DEACTIVATE, 0, pb.NOSPACE))
        record("none left", alarm(c, GET, 0, pb.NONE))
        record("status errors after", status_errors(c))
    differential(body, reference="etcd37", without=("mariadb", "hub"))  # CI time: see module doc


def test_nospace_caps_writes_until_every_nospace_alarm_is_disarmed(differential):
    def body(c, record):
        me = own_id(c)
        record("put", c.put(b"k", b"v"))
        record("lease", c.call(c.lease.LeaseGrant, pb.LeaseGrantRequest(ID=7, TTL=60)))
        alarm(c, ACTIVATE, 0, pb.NOSPACE)
        alarm(c, ACTIVATE, me, pb.NOSPACE)
        record("put refused", c.put(b"k2", b"v"))
        record("txn with a put refused", c.txn(success=[pb.RequestOp(
            request_put=pb.PutRequest(key=b"k3", value=b"v"))]))
        record("read-only txn served", c.txn(success=[pb.RequestOp(
            request_range=pb.RangeRequest(key=b"k"))]))
        record("lease grant refused", c.call(c.lease.LeaseGrant, pb.LeaseGrantRequest(ID=8, TTL=60)))
        record("get served", c.get(b"k"))
        record("delete served", c.delete(b"k"))
        record("lease revoke served", c.call(c.lease.LeaseRevoke, pb.LeaseRevokeRequest(ID=7)))
        record("compact served", c.call(c.kv.Compact, pb.CompactionRequest(revision=2)))
        alarm(c, DEACTIVATE, me, pb.NOSPACE)
        record("still capped by member 0's alarm", c.put(b"k2", b"v"))
        alarm(c, DEACTIVATE, 0, pb.NOSPACE)
        record("put after disarming", c.put(b"k2", b"v"))
    differential(body, reference="etcd37", without=("mariadb", "hub"))  # CI time: see module doc


def test_corrupt_refuses_writes_and_serves_reads(differential):
    def body(c, record):
        record("put", c.put(b"k", b"v"))
        record("lease", c.call(c.lease.LeaseGrant, pb.LeaseGrantRequest(ID=7, TTL=60)))
        record("raise CORRUPT", alarm(c, ACTIVATE, 0, pb.CORRUPT))
        record("put refused", c.put(b"k2", b"v"))
        record("delete refused", c.delete(b"k"))
        record("txn with a delete refused", c.txn(success=[pb.RequestOp(
            request_delete_range=pb.DeleteRangeRequest(key=b"k"))]))
        record("read-only txn served", c.txn(success=[pb.RequestOp(
            request_range=pb.RangeRequest(key=b"k"))]))
        record("get served", c.get(b"k"))
        record("compact refused", c.call(c.kv.Compact, pb.CompactionRequest(revision=2)))
        record("lease grant refused", c.call(c.lease.LeaseGrant, pb.LeaseGrantRequest(ID=8, TTL=60)))
        record("lease revoke refused", c.call(c.lease.LeaseRevoke, pb.LeaseRevokeRequest(ID=7)))
        record("NOSPACE too: CORRUPT wins", [alarm(c, ACTIVATE, 0, pb.NOSPACE), c.put(b"k2", b"v")])
        alarm(c, DEACTIVATE, 0, pb.CORRUPT)
        record("NOSPACE alone", c.put(b"k2", b"v"))
        alarm(c, DEACTIVATE, 0, pb.NOSPACE)
        record("put after disarming", c.put(b"k2", b"v"))
        record("get", c.get(b"k2"))
    differential(body, reference="etcd37", without=("mariadb", "hub"))  # CI time: see module doc
