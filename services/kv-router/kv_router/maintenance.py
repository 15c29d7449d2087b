"""etcd Maintenance, Cluster and Auth services.

KubeFabric is one logical member: MemberList describes it, Status reports the shard's revision
and term in the raft fields, alarms are the shard's (see kubefabric.shard.quota). What KubeFabric does not implement answers
UNIMPLEMENTED with a sentence, never a made-up result.
"""
from __future__ import annotations

import logging
import os

import grpc

from kubefabric.etcd import errors
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.etcdserverpb import rpc_pb2_grpc as rpc

from kubefabric.rpc.handlers import etcd_unary, unimplemented
from kubefabric.shard.surface import ShardSurface
from kubefabric.snapshot import schema, take

from .authguard import AuthGuard

# The etcd API level KubeFabric implements. kube-apiserver enables consistent reads from its
# watch cache and WatchList only for etcd >= 3.5.13 (progress requests answered correctly).
ETCD_VERSION = "3.5.21"
STORAGE_VERSION = "3.5.0"
PID_METADATA = "kubefabric-pid"  # Status's trailing metadata: the answering process's PID

log = logging.getLogger("kubefabric.router")


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
        # which process answered (`kubefabric serve --workers N` runs several on one port)
        context.set_trailing_metadata(((PID_METADATA, str(os.getpid())),))
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
        """etcd's backend file (kubefabric.snapshot.take): the keyspace at one revision across
        every shard as a bbolt file in etcd's layout, in 32 KiB chunks, then its SHA-256 (what
        `etcdctl snapshot save` checks and `etcdutl snapshot restore` verifies)."""
        try:
            self.auth.admin(context)
            async for blob, remaining, version in take.stream(self.shard):
                yield pb.SnapshotResponse(blob=blob, remaining_bytes=remaining, version=version)
        except errors.EtcdError as err:
            await context.abort(err.code, err.message)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # a bug or a storage failure: one line for the client
            log.exception("Maintenance.Snapshot failed")
            await context.abort(grpc.StatusCode.INTERNAL, f"kubefabric: snapshot failed: {exc}")

    @etcd_unary
    async def MoveLeader(self, request: pb.MoveLeaderRequest, context) -> pb.MoveLeaderResponse:
        """KubeFabric is one member, always its own leader: a move to itself is done at once, as
        on a one-member etcd (an empty response, no header); any other target is not a member."""
        self.auth.admin(context)
        if request.targetID != self.shard.state.member_id:
            raise errors.BAD_LEADER_TRANSFEREE
        return pb.MoveLeaderResponse()

    @etcd_unary
    async def Hash(self, request, context) -> pb.HashResponse:
        """etcd computes Hash over its bbolt file's buckets; KubeFabric over those of its own
        snapshot (kubefabric.snapshot.schema.etcd_hash): stable while nothing changes, moved
        by any write, lease or auth change, never equal to an etcd member's."""
        self.auth.admin(context)
        contents = await take.collect(self.shard)
        resp = pb.HashResponse(hash=schema.etcd_hash(contents))
        self.shard.state.fill(resp.header, contents.revision)
        return resp


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






for _name, _why in (("Downgrade", "Maintenance.Downgrade"),):
    setattr(MaintenanceService, _name, unimplemented(_why))

for _name, _why in (("MemberAdd", "Cluster.MemberAdd (scale kv-router replicas instead)"),
                    ("MemberRemove", "Cluster.MemberRemove"), ("MemberUpdate", "Cluster.MemberUpdate"),
                    ("MemberPromote", "Cluster.MemberPromote")):
    setattr(ClusterService, _name, unimplemented(_why))
