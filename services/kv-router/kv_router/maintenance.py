"""etcd Maintenance, Cluster and Auth services.

KubeFabric is one logical member: MemberList describes it, Status reports the shard's revision
and term in the raft fields, alarms are the shard's (see kubefabric.shard.quota). What KubeFabric does not implement answers
UNIMPLEMENTED with a sentence, never a made-up result.
"""
from __future__ import annotations

from kubefabric.etcd import errors
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.etcdserverpb import rpc_pb2_grpc as rpc

from kubefabric.rpc.handlers import etcd_unary, unimplemented
from kubefabric.shard.surface import ShardSurface

from .authguard import AuthGuard

# The etcd API level KubeFabric implements. kube-apiserver enables consistent reads from its
# watch cache and WatchList only for etcd >= 3.5.13 (progress requests answered correctly).
ETCD_VERSION = "3.5.21"
STORAGE_VERSION = "3.5.0"


def alarm_text(a: pb.AlarmMember) -> str:
    """An alarm as etcd 3.6+ lists it in Status: the message's text form, zero fields left out
    (3.4's gogo form ended in a space)."""
    member = f"memberID:{a.memberID} " if a.memberID else ""
    return f"{member}alarm:{pb.AlarmType.Name(a.alarm)}"


class MaintenanceService(rpc.MaintenanceServicer):
    """With auth enabled (etcd's authMaintenanceServer): Status and listing alarms need an
    identity; raising or disarming alarms, Defragment, HashKV and Snapshot the root role."""

    def __init__(self, shard: ShardSurface, auth: AuthGuard) -> None:
        self.shard = shard
        self.auth = auth  # AuthGuard

    @etcd_unary
    async def Status(self, request, context) -> pb.StatusResponse:
        self.auth.require(context)
        st = await self.shard.status()
        state = self.shard.state
        resp = pb.StatusResponse(
            version=ETCD_VERSION, dbSize=st.db_size, dbSizeInUse=st.db_size_in_use,
            leader=state.member_id, raftIndex=st.committed_rev, raftTerm=state.term,
            raftAppliedIndex=st.committed_rev, storageVersion=STORAGE_VERSION,
            dbSizeQuota=st.db_size_quota,
            errors=[alarm_text(a) for a in st.alarms])
        state.fill(resp.header, st.committed_rev)
        return resp

    @etcd_unary
    async def Alarm(self, request: pb.AlarmRequest, context) -> pb.AlarmResponse:
        if request.action == pb.AlarmRequest.GET:
            self.auth.require(context)
        else:
            self.auth.admin(context)
        resp = pb.AlarmResponse(alarms=await self.shard.alarm(request))
        self.shard.state.fill(resp.header)
        return resp

    @etcd_unary
    async def HashKV(self, request: pb.HashKVRequest, context) -> pb.HashKVResponse:
        """etcd's hash of the MVCC history up to a revision (kubefabric.shard.hashkv): equal to
        etcd's for the same history and compactions."""
        self.auth.admin(context)
        h, head = await self.shard.hash_kv(request.revision)
        resp = pb.HashKVResponse(hash=h.hash, compact_revision=h.compact_revision,
                                 hash_revision=h.revision)
        self.shard.state.fill(resp.header, head)
        return resp

    @etcd_unary
    async def Defragment(self, request, context) -> pb.DefragmentResponse:
        self.auth.admin(context)
        await self.shard.defragment()
        return pb.DefragmentResponse()  # etcd sends no header here



    async def Snapshot(self, request, context):
        err = errors.unimplemented("Maintenance.Snapshot (back up the shard databases instead)")
        await context.abort(err.code, err.message)
        yield  # pragma: no cover - makes this an async generator




class ClusterService(rpc.ClusterServicer):
    def __init__(self, shard: ShardSurface, name: str, client_urls: list[str],
                 peer_urls: list[str]) -> None:
        self.shard = shard
        self.name = name
        self.client_urls = client_urls
        self.peer_urls = peer_urls

    def _members(self) -> list[pb.Member]:
        return [pb.Member(ID=self.shard.state.member_id, name=self.name, peerURLs=self.peer_urls,
                          clientURLs=self.client_urls)]

    @etcd_unary
    async def MemberList(self, request, context) -> pb.MemberListResponse:
        resp = pb.MemberListResponse(members=self._members())
        self.shard.state.fill(resp.header, 0)  # etcd's member list header carries no revision
        return resp






for _name, _why in (("Hash", "Maintenance.Hash (a hash of etcd's bbolt file)"),
                    ("MoveLeader", "Maintenance.MoveLeader (KubeFabric has no raft leader)"),
                    ("Downgrade", "Maintenance.Downgrade")):
    setattr(MaintenanceService, _name, unimplemented(_why))

for _name, _why in (("MemberAdd", "Cluster.MemberAdd (scale kv-router replicas instead)"),
                    ("MemberRemove", "Cluster.MemberRemove"), ("MemberUpdate", "Cluster.MemberUpdate"),
                    ("MemberPromote", "Cluster.MemberPromote")):
    setattr(ClusterService, _name, unimplemented(_why))
