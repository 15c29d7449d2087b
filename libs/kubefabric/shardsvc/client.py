"""A shard service seen from kv-router: the same surface as the in-process Shard core, over the
Shard gRPC API, so the router's etcd services and watch hub run unchanged on either.

Invariants:
- `state.committed` is the highest committed revision any response reported (headers never go
  back); the watch hub's feed position is separate (it only advances with the Feed, so progress
  notifications are never ahead of delivered events).
- Writes go to the replica last known as leader (Put, DeleteRange and Txn on one WriteBatches stream
  while it is open: kubefabric.shardsvc.leaderwrites); Range and Query go on one ReadBatches stream
  per replica while it is open (kubefabric.shardsvc.replicareads), any other call is unary. They are retried on another replica only
  when the failure proves nothing was applied (NOT_LEADER, or no connection could be made); any
  other failure reaches the client as it is (etcd's clients decide). A replica that stops answering
  (frozen) is handled by kubefabric.shardsvc.replicas: reads hedged to another replica, writes
  abandoned once another replica leads.
- The feed resumes from the last revision it delivered, so listeners see every commit once, in
  revision order, across reconnects and leader failovers; a feed silent for FEED_STALL_S (the
  leader sends its closed revision every 100 ms) is given up and resubscribed at the leader.
"""
from __future__ import annotations

import asyncio
import logging

import grpc

from kubefabric.auth.state import RESPONSES, from_message
from kubefabric.etcd import errors
from kubefabric.etcd.keyrange import KeyRange
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2_grpc
from kubefabric.rpc.channel import never_reached, open_channel, parse_endpoints, status_error
from kubefabric.shard.hashkv import KVHash
from kubefabric.shard.state import ShardState
from kubefabric.telemetry import instrument_shard_stub, tracing
from kubefabric.tls import ClientTLS, TLSError

from .lane import lane_stub
from .leaderwrites import LeaderWrites
from .replicareads import ReplicaReads
from .replicas import LEADER_FAILED, LeaderChanged, Replicas

log = logging.getLogger("kubefabric.shard.client")

RETRY_FOR_S = 10.0        # how long a call looks for a leader before giving up
HEAD_WAIT_S = 2.0         # how long a watch's start waits for the leader's revision (refresh_head)
TLS_RECHECK_S = 2.0       # how often the TLS files are checked for changes
TLS_GRACE_S = 60.0        # calls on channels replaced by a TLS reload get this long to finish
TLS_REFUSALS = 5          # handshake refusals in a row at open(): a TLS mismatch, not a restart
CALL_TIMEOUT_S = 60.0
# calls for the leader that may run twice: retried at a new leader when the old one stopped
# answering (the others' outcome is unknown then)
IDEMPOTENT = frozenset({"Status", "Range", "Query", "LeaseRenew", "LeaseTimeToLive", "LeaseList",
                        "Alarm", "Defragment"})
# the Shard API method of each KV write, by the field of its request that holds the etcd request
KV_WRITE_METHODS = {"put": "Put", "delete_range": "DeleteRange", "txn": "Txn"}
FEED_STALL_S = 1.0        # a feed without a message this long: its leader stopped answering


def _tls_refusal(details: str) -> bool:
    """grpc's words for a handshake the other side refused: a failed verification here, or the
    server closing the socket as it rejects our certificate (or plaintext meets TLS)."""
    return "handshake failed" in details.lower() or details.endswith("Socket closed")


def _not_applied(err: grpc.aio.AioRpcError) -> bool:
    """The call certainly did not reach a writer."""
    return never_reached(err) or status_error(err) in (errors.NOT_LEADER, errors.SHARD_NOT_READY)


class RemoteShard:
    def __init__(self, endpoints: list[str], name: str = "default", tls=None):
        """tls: None (plaintext) or an object with ca_file, cert_file, key_file, server_name."""
        if not endpoints:
            raise ValueError("a remote shard needs at least one endpoint")
        self.name = name
        self.endpoints = endpoints
        self.tls = _client_tls(tls)
        self._carriers: dict[int, str] = {}  # replica -> what its streams went on last (lane_of)
        self._head_failing = False  # refresh_head could not reach the leader last time
        self.channels: list = []
        self.stubs: list = []
        self._connect()
        self._old_channels: list = []
        self.reads = ReplicaReads(self)
        self.replicas = Replicas(lambda: self.stubs, name, self.reads.call)
        self.state = ShardState(committed=0, clock=0)
        self.listeners: list = []
        self.feed_committed = 0
        self._feed: asyncio.Task | None = None
        self._tls_task: asyncio.Task | None = None
        self.is_leader = True                 # the router's view: writes are accepted
        self.reported_name = ""               # the service's --name, from its Status
        self.leader_writes = LeaderWrites(self)

    @property
    def leader(self) -> int:
        """Index of the replica last known as leader."""
        return self.replicas.leader

    @leader.setter
    def leader(self, i: int) -> None:
        self.replicas.leader = i

    # ---- lifecycle ----

    async def open(self, wait_s: float = 30.0, follow: bool = True) -> None:
        """Learn the shard's identity and revision; waits for a ready replica. follow: deliver
        the shard's commits to `listeners` from its Feed RPC (False: another transport calls
        `deliver`, or nobody watches)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        refused = 0
        while True:
            status, errors_seen = await self._first_status()
            if status is not None:
                break
            # a TLS mismatch does not heal by waiting: say so at once (after a few rounds, so
            # replicas that are only restarting do not count)
            refused = refused + 1 if all(_tls_refusal(e) for e in errors_seen) else 0
            if refused >= TLS_REFUSALS:
                raise ConnectionError(
                    f"shard {self.name} at {', '.join(self.endpoints)} refused the connection "
                    f"during the TLS handshake ({errors_seen[-1]}): check that both sides use TLS, "
                    "that this router's CA file verifies the shard's certificate, and that its "
                    "client certificate is signed by the shard's --trusted-ca-file")
            if loop.time() > deadline:
                raise ConnectionError(f"no replica of shard {self.name} is ready at "
                                      f"{', '.join(self.endpoints)}: {errors_seen[-1]}")
            await asyncio.sleep(0.2)
        self.reported_name = status.name
        self.state.cluster_id, self.state.member_id = status.cluster_id, status.member_id
        self.state.term = status.term
        self._observe(status.committed_rev)
        self.state.compact_rev = status.compact_rev
        self.feed_committed = status.committed_rev
        if self.tls is not None:
            self._tls_task = asyncio.create_task(self._reload_tls(), name=f"tls-{self.name}")
        if follow:
            self._feed = asyncio.create_task(self._follow_feed(), name=f"feed-{self.name}")

    async def _first_status(self) -> tuple[spb.StatusResponse | None, list[str]]:
        """The Status of the first replica that answers (preferring the leader), or the errors."""
        errors_seen = []
        found = None
        for i, stub in enumerate(self.stubs):
            try:
                status = await stub.Status(spb.StatusRequest(), timeout=2.0)
            except grpc.aio.AioRpcError as err:
                errors_seen.append(err.details() or err.code().name)
                continue
            if found is None or status.role == "leader":
                found = status
                if status.role == "leader":
                    self.leader = i
        return found, errors_seen

    async def lane_of(self, target: int, stub):
        """The batch lane of replica `target` (a lane.LaneStub, dialled with this shard's TLS
        when it has one) when its Status advertises one; None otherwise: its streams go on gRPC."""
        try:
            status = await stub.Status(spb.StatusRequest(), timeout=2.0)
        except grpc.aio.AioRpcError:
            return None
        try:
            lane = lane_stub(self.endpoints[target], status.lane, self.tls)
        except TLSError as err:  # mid-rotation: gRPC's channel keeps the files it read
            log.warning("shard %s: %s; streams to %s go on gRPC", self.name, err, self.endpoints[target])
            return None
        carrier = (f"the batch lane at {lane.address}{' (TLS)' if lane.tls else ''}" if lane
                   else "gRPC (no lane advertised)")
        if self._carriers.get(target) != carrier:  # said once, and again when it changes
            self._carriers[target] = carrier
            log.info("shard %s: streams to %s go on %s", self.name, self.endpoints[target], carrier)
        return lane

    def _connect(self) -> None:
        """New channels from the TLS files as they are now; calls on the old ones finish there."""
        self._old_channels = [*getattr(self, "_old_channels", []), *self.channels]
        self.channels = [open_channel(e, self.tls) for e in self.endpoints]
        self.stubs = [instrument_shard_stub(shard_pb2_grpc.ShardStub(c), self.name)
                      for c in self.channels]

    async def _reload_tls(self) -> None:
        """Changed certificate files reach new connections without a restart."""
        while True:
            await asyncio.sleep(TLS_RECHECK_S)
            if self.tls.changed():
                old = self.channels
                try:
                    self._connect()
                except TLSError as err:  # mid-rotation: keep the old files' channels, try again
                    log.warning("shard %s: TLS files changed but cannot be used yet: %s",
                                self.name, err)
                    continue
                log.info("shard %s: TLS files changed; new connections use them", self.name)
                self._retire_later(old)

    def _retire_later(self, channels: list) -> None:
        """Close `channels` once calls on them had TLS_GRACE_S to finish."""
        def retire() -> None:
            asyncio.ensure_future(self._retire(channels))
        asyncio.get_running_loop().call_later(TLS_GRACE_S, retire)

    async def _retire(self, channels: list) -> None:
        for c in channels:
            if c in self._old_channels:
                self._old_channels.remove(c)
                await c.close()

    async def close(self) -> None:
        self.replicas.close()
        self.reads.close()
        self.leader_writes.close()
        for task in (self._feed, self._tls_task):
            if task:
                task.cancel()
        for c in [*self.channels, *self._old_channels]:
            await c.close()

    def _observe(self, committed: int) -> None:
        if committed > self.state.committed:
            self.state.committed = self.state.clock = committed

    # ---- calls ----

    async def _call(self, method: str, request, write: bool = True):
        """Call a replica (the leader for writes, round robin for reads) with retries that
        cannot apply anything twice."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETRY_FOR_S
        target = self.leader if write else self.replicas.reader()
        while True:
            try:
                if write:
                    return await self.replicas.write(method, request, target, CALL_TIMEOUT_S)
                return await self.replicas.read(method, request, target, CALL_TIMEOUT_S)
            except LeaderChanged as moved:
                if method not in IDEMPOTENT or loop.time() > deadline:
                    log.warning("shard %s: replica %d leads now (term %d); a %s sent to replica %d "
                                "is abandoned, its outcome unknown", self.name, moved.leader,
                                self.replicas.term, method, target)
                    raise LEADER_FAILED from None
                self.state.term = max(self.state.term, self.replicas.term)
                target = moved.leader
                continue
            except grpc.aio.AioRpcError as err:
                retry = _not_applied(err) or (not write and err.code() == grpc.StatusCode.UNAVAILABLE)
                if not retry or loop.time() > deadline:
                    raise status_error(err) from None
            if write:
                target = await self._find_leader(target)
            else:
                await asyncio.sleep(0.05)
                target = self.replicas.reader(avoid=target)

    async def _find_leader(self, failed: int) -> int:
        """The replica that says it is the leader (or the next one), after a short pause."""
        await asyncio.sleep(0.05)
        leader = await self.replicas.probe()
        if leader is not None:
            self.state.term = max(self.state.term, self.replicas.term)
            return leader
        return (failed + 1) % len(self.stubs)

    @staticmethod
    def _clock(sync_rev: int) -> spb.Clock:
        return spb.Clock(sync_rev=sync_rev)

    async def sync(self, sync_rev: int) -> int:
        """Move the shard's clock to at least sync_rev (through its leader)."""
        if sync_rev > self.state.committed:
            resp = await self._call("Status", spb.StatusRequest(clock=self._clock(sync_rev)))
            self._observe(resp.committed_rev)
        return self.state.committed

    # ---- KV ----

    async def range(self, req: pb.RangeRequest, sync_rev: int = 0) -> pb.RangeResponse:
        """sync_rev > 0: read on the leader after moving its clock there (cross-shard reads)."""
        request = spb.RangeRequest(clock=self._clock(sync_rev), range=req)
        resp = await self._call("Range", request, write=sync_rev > 0)
        self._observe(max(resp.committed_rev, resp.range.header.revision))
        return resp.range

    async def query(self, req, sync_rev: int = 0):
        """The Query API on this shard; sync_rev > 0: on the leader, as range()."""
        resp = await self._call("Query", spb.QueryRequest(clock=self._clock(sync_rev), query=req),
                                write=sync_rev > 0)
        self._observe(max(resp.committed_rev, resp.query.header.revision))
        return resp.query

    async def indexes(self) -> list:
        resp = await self._call("Indexes", qpb.IndexesRequest(), write=False)
        return list(resp.indexes)

    async def put(self, req: pb.PutRequest, sync_rev: int = 0) -> pb.PutResponse:
        return await self._kv_write("put", spb.PutRequest(clock=self._clock(sync_rev), put=req))

    async def delete_range(self, req: pb.DeleteRangeRequest, sync_rev: int = 0) -> pb.DeleteRangeResponse:
        return await self._kv_write("delete_range", spb.DeleteRangeRequest(clock=self._clock(sync_rev),
                                                                           delete_range=req))

    async def txn(self, req: pb.TxnRequest, sync_rev: int = 0) -> pb.TxnResponse:
        return await self._kv_write("txn", spb.TxnRequest(clock=self._clock(sync_rev), txn=req))

    async def _kv_write(self, field: str, request):
        """A KV write whose etcd request is in `field` of the Shard API `request`: its etcd
        response, the committed revision observed."""
        resp = await self._send_kv_write(field, request)
        self._observe(resp.committed_rev)
        return getattr(resp, field)

    async def _send_kv_write(self, field: str, request):
        """The Shard API response to a KV write: on the Writes stream to the leader when one is
        open, else (and when the stream says it was not applied) a unary call."""
        resp = await self.leader_writes.write(field, request)
        if resp is not None:
            return resp
        return await self._call(KV_WRITE_METHODS[field], request)

    async def compact(self, revision: int, physical: bool = False, sync_rev: int = 0) -> pb.CompactionResponse:
        resp = await self._call("Compact", spb.CompactRequest(clock=self._clock(sync_rev), revision=revision,
                                                              physical=physical))
        self._observe(resp.committed_rev)
        self.state.compact_rev = max(self.state.compact_rev, resp.compact_rev)
        out = pb.CompactionResponse()
        self.state.fill(out.header)
        return out

    # ---- leases ----

    async def lease_grant(self, lease_id: int, ttl: int, sync_rev: int = 0) -> tuple[int, int]:
        resp = await self._call("LeaseGrant", spb.LeaseGrantRequest(clock=self._clock(sync_rev),
                                                                      id=lease_id, ttl=ttl))
        self._observe(resp.committed_rev)
        return resp.id, resp.ttl

    async def lease_revoke(self, lease_id: int, sync_rev: int = 0) -> int:
        resp = await self._call("LeaseRevoke", spb.LeaseRevokeRequest(clock=self._clock(sync_rev), id=lease_id))
        self._observe(resp.committed_rev)
        return resp.committed_rev

    async def lease_renew(self, lease_id: int) -> int:
        resp = await self._call("LeaseRenew", spb.LeaseRenewRequest(id=lease_id))
        self._observe(resp.committed_rev)
        return resp.ttl

    async def lease_time_to_live(self, lease_id: int, keys: bool) -> tuple[int, int, list[bytes]]:
        resp = await self._call("LeaseTimeToLive", spb.LeaseTimeToLiveRequest(id=lease_id, keys=keys))
        self._observe(resp.committed_rev)
        return resp.ttl, resp.granted_ttl, list(resp.keys)

    async def lease_list(self) -> list[int]:
        resp = await self._call("LeaseList", spb.LeaseListRequest())
        self._observe(resp.committed_rev)
        return list(resp.ids)

    # ---- maintenance ----

    async def status(self, sync_rev: int = 0) -> spb.StatusResponse:
        """The leader's Status; sync_rev > 0: its clock first moved to at least sync_rev."""
        resp = await self._call("Status", spb.StatusRequest(clock=self._clock(sync_rev)), write=True)
        self._observe(resp.committed_rev)
        return resp

    async def refresh_head(self) -> None:
        """Raises state.committed to the leader's committed revision (kubefabric.watch.registry):
        a write another router acknowledged (another kv-router replica or `--workers` process)
        is there, while this router's feed may not have delivered it yet. A watch "from now"
        then starts after it and a progress answer covers it, as on etcd. Without a leader
        within HEAD_WAIT_S (a failover), what this router has seen serves."""
        try:
            async with asyncio.timeout(HEAD_WAIT_S):
                await self.status()
        except (errors.EtcdError, grpc.aio.AioRpcError, TimeoutError) as err:
            if not self._head_failing:  # said once per episode, not for every watch meanwhile
                log.warning("shard %s: no leader's revision for watch starts and progress answers "
                            "(%s); using the newest this router has seen until it answers",
                            self.name, getattr(err, "message", None) or type(err).__name__)
            self._head_failing = True
            return
        if self._head_failing:
            log.info("shard %s: the leader's revision is back for watch starts", self.name)
            self._head_failing = False

    async def refresh_compaction(self) -> int:
        """The shard's compact revision as of now (any replica), into state.compact_rev."""
        resp = await self._call("Status", spb.StatusRequest(), write=False)
        self.state.compact_rev = max(self.state.compact_rev, resp.compact_rev)
        return self.state.compact_rev

    async def alarm(self, req: pb.AlarmRequest) -> list[pb.AlarmMember]:
        resp = await self._call("Alarm", spb.AlarmRequest(alarm=req))
        return list(resp.alarms)

    async def defragment(self) -> None:
        await self._call("Defragment", spb.DefragmentRequest())

    async def auth_apply(self, method: str, request, caller: str | None):
        """An Auth request on the shard's auth store: (response message, state, generation)."""
        resp = await self._call("AuthApply", spb.AuthApplyRequest(
            method=method, request=request.SerializeToString(), caller=caller or "",
            has_caller=caller is not None))
        state, generation = from_message(resp.store)
        return RESPONSES[method].FromString(resp.response), state, generation

    async def auth_read(self, generation: int = -1):
        """(state, generation) of the shard's auth store; None when `generation` is current."""
        resp = await self._call("AuthRead", spb.AuthReadRequest(generation=generation), write=True)
        if resp.unchanged:
            return None
        return from_message(resp)

    async def hash_kv(self, revision: int, crc: int | None = None, sync_rev: int = 0):
        """etcd's HashKV on the shard: (KVHash, the shard's committed revision)."""
        resp = await self._call("HashKV", spb.HashKVRequest(
            clock=self._clock(sync_rev), revision=revision, chained=crc is not None, crc=crc or 0))
        self._observe(resp.committed_rev)
        return KVHash(resp.hash, resp.compact_revision, resp.hash_revision), resp.committed_rev

    # ---- history and the feed ----

    async def history(self, rng: KeyRange, lo: int, hi: int, leader: bool = False) -> list:
        """Events of revisions lo..hi in `rng`, oldest first, with prev_kv (from any replica, or
        the leader); a replica that cannot answer is replaced by another for RETRY_FOR_S."""
        end = rng.end if rng.end is not None else b""
        if rng.end == b"":
            end = b"\x00"
        req = spb.HistoryRequest(key=rng.start, range_end=end, start_rev=lo, prev_kv=True, end_rev=hi)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETRY_FOR_S
        target = self.leader if leader else self.replicas.reader()
        while True:
            out = []
            try:
                async for msg in self.stubs[target].History(req, timeout=CALL_TIMEOUT_S):
                    if msg.rev > hi:
                        break
                    out.extend(msg.events)
                return out
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE or loop.time() > deadline:
                    raise status_error(err) from None
            target = await self._find_leader(target)

    async def _follow_feed(self) -> None:
        """Deliver the leader's commits to the listeners, resuming after the last one."""
        while True:
            call = None
            try:
                stub = self.stubs[self.leader]
                lane = await self.lane_of(self.leader, stub)  # the lane when it has one
                call = (lane or stub).Feed(spb.FeedRequest(start_rev=self.feed_committed + 1))
                while True:
                    async with asyncio.timeout(FEED_STALL_S):
                        msg = await call.read()
                    if msg is grpc.aio.EOF:
                        break
                    self._deliver(msg)
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                log.info("shard %s feed: no message from replica %d for %.1fs; resubscribing",
                         self.name, self.leader, FEED_STALL_S)
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.OUT_OF_RANGE:
                    log.error("shard %s feed: revisions after %d were compacted before delivery",
                              self.name, self.feed_committed)
                    self.feed_committed = self.state.compact_rev
                log.debug("shard %s feed interrupted: %s", self.name, err.details())
            except Exception:
                log.exception("shard %s feed failed", self.name)
            finally:
                if call is not None:
                    call.cancel()
            await self._find_leader(self.leader)
            await asyncio.sleep(0.1)

    def _deliver(self, msg: spb.FeedResponse) -> None:
        self.deliver(msg.commits, msg.committed_rev, msg.compact_rev)

    def deliver(self, commits, committed: int, compact_rev: int) -> None:
        """Hand commits (HistoryResponse-like: rev, events; revision order) and the closed
        revision to the listeners; what was delivered before is dropped (exactly once)."""
        published = [(c.rev, tracing.events_of_commit(c)) for c in commits if c.rev > self.feed_committed]
        committed = max(committed, self.feed_committed)
        if published:
            committed = max(committed, published[-1][0])
        self.state.compact_rev = max(self.state.compact_rev, compact_rev)
        self._observe(committed)
        if not published and committed == self.feed_committed:
            return
        self.feed_committed = committed
        for listener in self.listeners:
            listener(published, committed)


async def connect_shard(endpoints: str, name: str = "default", tls=None,
                        follow: bool = True) -> RemoteShard:
    """An opened RemoteShard for `grpc://host:port[,...]`; ValueError for a bad endpoint list,
    ConnectionError when no replica is ready in time (both with a sentence for the operator)."""
    try:
        shard = RemoteShard(parse_endpoints(endpoints), name=name, tls=tls)
    except TLSError as err:
        raise ValueError(str(err)) from None
    try:
        await shard.open(follow=follow)
    except BaseException:
        await shard.close()
        raise
    log.info("shard %s: shard service at %s", name, ", ".join(shard.endpoints))
    return shard


def _client_tls(tls):
    """A ClientTLS (re-readable files) from a ClientTLS or a topology TLSSpec; None: plaintext."""
    if tls is None or isinstance(tls, ClientTLS):
        return tls
    return ClientTLS(tls.ca_file, tls.cert_file, tls.key_file, getattr(tls, "server_name", None))
