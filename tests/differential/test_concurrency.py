"""etcd's Lock and Election services (v3lock, v3election) against etcd 3.7.3: lock ordering
between contenders, Unlock waking the next, a revoked or expired lease releasing the lock, a
waiting call given up (its key deleted, as etcd does), campaign/leader/proclaim/observe/resign,
the errors, and the permission checks of the underlying KV calls with auth on.

Leases are granted with IDs chosen here, so the keys (<name>/<lease hex>) are equal on both
sides. A call expected to wait runs in a thread; "still waiting" is recorded after a pause, and
a step that must follow an Observe message waits for that message, so the recordings do not
depend on timing.

Targets: embedded, topology (the election's keys live on the MariaDB "events" shard, the
lock's on the default one) and hub (waits follow a watch-hub stream instead of the router's own
feed). PostgreSQL and MariaDB shard services alone add nothing the topology does not cover.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

from harness.client import Failure
from kubefabric.proto.authpb import auth_pb2 as authpb
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.v3electionpb import v3election_pb2 as epb
from kubefabric.proto.v3electionpb import v3election_pb2_grpc as erpc
from kubefabric.proto.v3lockpb import v3lock_pb2 as lpb
from kubefabric.proto.v3lockpb import v3lock_pb2_grpc as lrpc

TARGETS = ["embedded", "topology", "hub"]
PAUSE_S = 0.5  # how long a call that must wait is watched not to return


def call(method, request, timeout=20.0, token=None):
    md = [("token", token)] if token else None
    try:
        return method(request, timeout=timeout, metadata=md)
    except grpc.RpcError as err:
        return Failure(err.code().name, err.details() or "")


# A call whose deadline passes ends with the server's answer (CANCELLED) or, when the client's own
# timer fires first, the client library's DEADLINE_EXCEEDED: a race on etcd as on KubeFabric (CI
# saw KubeFabric lose it once under load), so both are recorded as the caller giving up.
GAVE_UP = {"CANCELLED", "DEADLINE_EXCEEDED"}


def code(result):
    """A deadline's message is the client library's (or a race with the server's reset)."""
    if isinstance(result, Failure):
        return "gave up" if result.code in GAVE_UP else result.code
    return result


def grant(c, lease_id, ttl=60):
    return call(c.lease.LeaseGrant, pb.LeaseGrantRequest(ID=lease_id, TTL=ttl))


def prefix_range(prefix: bytes) -> pb.RangeRequest:
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    return pb.RangeRequest(key=prefix, range_end=end)


class Background:
    """Calls that wait, each in a thread of its own."""

    def __init__(self):
        self.pool = ThreadPoolExecutor(max_workers=4)

    def start(self, method, request, timeout=30.0):
        return self.pool.submit(call, method, request, timeout)

    def close(self):
        self.pool.shutdown(wait=True)


def still_waiting(future) -> bool:
    time.sleep(PAUSE_S)
    return not future.done()


def test_lock(differential):
    def body(c, record):
        lock = lrpc.LockStub(c.channel)
        bg = Background()
        try:
            for lease_id in (0xA1, 0xB2, 0xC3, 0xE5):
                record(f"grant {lease_id:x}", grant(c, lease_id))
            record("lock by a lease that does not exist", call(lock.Lock, lpb.LockRequest(name=b"lk", lease=0x99)))
            first = call(lock.Lock, lpb.LockRequest(name=b"lk", lease=0xA1))
            record("first locks at once", first)
            record("the same lease again: the same key", call(lock.Lock, lpb.LockRequest(name=b"lk", lease=0xA1)))
            second = bg.start(lock.Lock, lpb.LockRequest(name=b"lk", lease=0xB2))
            record("second waits", still_waiting(second))
            third = bg.start(lock.Lock, lpb.LockRequest(name=b"lk", lease=0xC3))
            record("third waits", still_waiting(third))
            record("contenders' keys", call(c.kv.Range, prefix_range(b"lk/")))
            record("unlock the first", call(lock.Unlock, lpb.UnlockRequest(key=first.key)))
            record("second holds it", second.result())
            record("third still waits", still_waiting(third))
            record("revoke the second's lease", call(c.lease.LeaseRevoke, pb.LeaseRevokeRequest(ID=0xB2)))
            record("third holds it", third.result())
            # a lock on another shard of the topology (the events shard): expiry releases it
            record("grant a lease of 2 s", grant(c, 0xD4, 2))
            record("lock with an expiring lease", call(lock.Lock, lpb.LockRequest(name=b"/registry/events/lk", lease=0xD4)))
            after_expiry = bg.start(lock.Lock, lpb.LockRequest(name=b"/registry/events/lk", lease=0xE5))
            record("the next waits", still_waiting(after_expiry))
            got = after_expiry.result()
            record("the lease expired: the next holds it", got)
            record("keys after expiry", call(c.kv.Range, prefix_range(b"/registry/events/lk/")))
            # a contender that gives up (its deadline) has its key deleted
            record("given up", code(call(lock.Lock, lpb.LockRequest(name=b"lk", lease=0xA1), timeout=PAUSE_S)))
            time.sleep(PAUSE_S)
            record("the given-up key is gone", call(c.kv.Range, prefix_range(b"lk/")))
            record("unlock a key that does not exist", call(lock.Unlock, lpb.UnlockRequest(key=b"lk/none")))
            record("unlock without a key", call(lock.Unlock, lpb.UnlockRequest()))
            record("unlock the third", call(lock.Unlock, lpb.UnlockRequest(key=b"lk/c3")))
            record("free again", call(lock.Lock, lpb.LockRequest(name=b"lk", lease=0xA1)))
            # lease 0: the server grants a lease of its own (etcd's session default, 60 s)
            own = call(lock.Lock, lpb.LockRequest(name=b"own", lease=0))
            record("lease 0", [own.key.startswith(b"own/"), own.header.revision])
            ttl = call(c.lease.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=int(own.key[4:], 16)))
            record("its lease", [ttl.grantedTTL, 55 <= ttl.TTL <= 60])
        finally:
            bg.close()
    differential(body, reference="etcd37", targets=TARGETS)


class Observer:
    """An Observe stream read in a thread: the messages so far, as (key, value, create, mod,
    header revision)."""

    def __init__(self, election, name: bytes):
        self.seen: list = []
        self.error = None
        self.stream = election.Observe(epb.LeaderRequest(name=name), timeout=60)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for resp in self.stream:
                kv = resp.kv
                self.seen.append([kv.key.decode(), kv.value.decode(), kv.create_revision,
                                  kv.mod_revision, resp.header.revision])
        except grpc.RpcError as err:
            self.error = err.code().name

    def wait_for(self, n: int, timeout: float = 10.0) -> list:
        deadline = time.monotonic() + timeout
        while len(self.seen) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.seen)

    def close(self) -> str | None:
        self.stream.cancel()
        self.thread.join(5)
        return self.error


def test_election(differential):
    def body(c, record):
        el = erpc.ElectionStub(c.channel)
        name = b"/registry/events/el"  # the events shard on the topology target
        bg = Background()
        try:
            for lease_id in (0x51, 0x62):
                record(f"grant {lease_id:x}", grant(c, lease_id))
            record("no leader yet", call(el.Leader, epb.LeaderRequest(name=name)))
            observer = Observer(el, name)
            time.sleep(PAUSE_S)  # the observer is waiting for a first candidate
            record("campaign by a lease that does not exist",
                   call(el.Campaign, epb.CampaignRequest(name=name, lease=0x99, value=b"x")))
            won = call(el.Campaign, epb.CampaignRequest(name=name, lease=0x51, value=b"one"))
            record("first campaign wins at once", won)
            record("observed the first leader", observer.wait_for(1))
            record("leader", call(el.Leader, epb.LeaderRequest(name=name)))
            rival = bg.start(el.Campaign, epb.CampaignRequest(name=name, lease=0x62, value=b"two"))
            record("the rival waits", still_waiting(rival))
            leader = won.leader
            record("proclaim", call(el.Proclaim, epb.ProclaimRequest(leader=leader, value=b"one again")))
            record("observed the proclamation", observer.wait_for(2))
            stale = epb.LeaderKey(name=leader.name, key=leader.key, rev=leader.rev - 1, lease=leader.lease)
            record("proclaim by a stale leadership",
                   call(el.Proclaim, epb.ProclaimRequest(leader=stale, value=b"x")))
            record("resign by a stale leadership: nothing happens",
                   call(el.Resign, epb.ResignRequest(leader=stale)))
            record("proclaim without a leader", call(el.Proclaim, epb.ProclaimRequest(value=b"x")))
            record("resign without a leader", call(el.Resign, epb.ResignRequest()))
            record("campaign again, another value: proclaimed, same leadership",
                   call(el.Campaign, epb.CampaignRequest(name=name, lease=0x51, value=b"one more")))
            record("observed it", observer.wait_for(3))
            record("resign", call(el.Resign, epb.ResignRequest(leader=leader)))
            second = rival.result()
            record("the rival wins", second)
            record("observed the next leader", observer.wait_for(4))
            record("leader now", call(el.Leader, epb.LeaderRequest(name=name)))
            record("proclaim after resigning", call(el.Proclaim, epb.ProclaimRequest(leader=leader, value=b"x")))
            record("revoke the leader's lease", call(c.lease.LeaseRevoke, pb.LeaseRevokeRequest(ID=0x62)))
            time.sleep(PAUSE_S)
            record("no leader again", call(el.Leader, epb.LeaderRequest(name=name)))
            record("observed", observer.wait_for(5, timeout=PAUSE_S))
            record("observer ended by", observer.close())
            # a candidate that gives up while waiting resigns (its key is deleted)
            record("grant again", grant(c, 0x51))
            record("lead", call(el.Campaign, epb.CampaignRequest(name=b"gu", lease=0x51, value=b"a")))
            record("grant a rival", grant(c, 0x62))
            record("given up", code(call(el.Campaign, epb.CampaignRequest(name=b"gu", lease=0x62, value=b"b"),
                                         timeout=PAUSE_S)))
            time.sleep(PAUSE_S)
            record("the given-up candidate is gone", call(c.kv.Range, prefix_range(b"gu/")))
        finally:
            bg.close()
    differential(body, reference="etcd37", targets=TARGETS)


def test_permissions(differential):
    """With auth on, Lock, Unlock and the Election calls are refused as their KV steps are:
    UNKNOWN with the KV error's message (etcd answers from its in-process client)."""
    def body(c, record):
        a = c.auth
        lock = lrpc.LockStub(c.channel)
        el = erpc.ElectionStub(c.channel)
        for user in ("root", "alice"):
            record(f"add {user}", call(a.UserAdd, pb.AuthUserAddRequest(name=user, password="pw")))
        record("grant root", call(a.UserGrantRole, pb.AuthUserGrantRoleRequest(user="root", role="root")))
        record("role", call(a.RoleAdd, pb.AuthRoleAddRequest(name="locks")))
        record("lk/ to the role", call(a.RoleGrantPermission, pb.AuthRoleGrantPermissionRequest(
            name="locks", perm=authpb.Permission(permType=authpb.Permission.READWRITE, key=b"lk/", range_end=b"lk0"))))
        record("role to alice", call(a.UserGrantRole, pb.AuthUserGrantRoleRequest(user="alice", role="locks")))
        record("grant a lease", grant(c, 0x77))
        record("enable", call(a.AuthEnable, pb.AuthEnableRequest()))
        alice = a.Authenticate(pb.AuthenticateRequest(name="alice", password="pw")).token
        root = a.Authenticate(pb.AuthenticateRequest(name="root", password="pw")).token
        record("lock, no identity", call(lock.Lock, lpb.LockRequest(name=b"lk", lease=0x77)))
        record("lock, a bad token", call(lock.Lock, lpb.LockRequest(name=b"lk", lease=0x77), token="bad.1"))
        record("lock as alice", call(lock.Lock, lpb.LockRequest(name=b"lk", lease=0x77), token=alice))
        record("lock elsewhere as alice", call(lock.Lock, lpb.LockRequest(name=b"other", lease=0x77), token=alice))
        record("unlock elsewhere as alice", call(lock.Unlock, lpb.UnlockRequest(key=b"other/77"), token=alice))
        record("unlock as alice", call(lock.Unlock, lpb.UnlockRequest(key=b"lk/77"), token=alice))
        record("campaign as alice", call(el.Campaign, epb.CampaignRequest(name=b"el", lease=0x77), token=alice))
        record("leader as alice", call(el.Leader, epb.LeaderRequest(name=b"el"), token=alice))
        record("campaign as root", call(el.Campaign, epb.CampaignRequest(name=b"el", lease=0x77, value=b"v"), token=root))
        record("leader as alice, led by root", call(el.Leader, epb.LeaderRequest(name=b"el"), token=alice))
        observed = []
        try:
            for resp in el.Observe(epb.LeaderRequest(name=b"el"), timeout=5,
                                   metadata=[("token", alice)]):
                observed.append(resp)
        except grpc.RpcError as err:
            observed.append(Failure(err.code().name, err.details() or ""))
        record("observe as alice: the stream just ends", observed)
        record("disable", call(a.AuthDisable, pb.AuthDisableRequest(), token=root))
    differential(body, reference="etcd37", targets=["embedded"])
