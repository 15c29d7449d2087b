"""Lease: Grant, Revoke, KeepAlive, TimeToLive, Leases and expiry, against etcd and KubeFabric.

Server-chosen lease IDs (Grant with ID 0) are renamed lease#N by order of first appearance on each
side; IDs the test chose itself are compared as they are. A TimeToLive's remaining TTL is compared
right after the grant (etcd truncates: a fresh 60 s lease reports 59).
"""
from __future__ import annotations

import time

from harness.stream import KeepAliveStream, NoResponse, WatchStream, by_watch_id, conversation
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from harness.normalise import to_plain

EXPLICIT = {7, 100, 101, 102, 103, 200, 201, -5, 9000}


def named(record, value):
    """to_plain(value) with server-chosen lease IDs (not in EXPLICIT) replaced by lease#N."""
    data = to_plain(value)

    def fix(d):
        if isinstance(d, dict):
            for k, v in d.items():
                if k in ("ID", "lease") and isinstance(v, str) and int(v) not in EXPLICIT:
                    d[k] = record.leases.name(int(v))
                else:
                    fix(v)
        elif isinstance(d, list):
            for v in d:
                fix(v)
    fix(data)
    return data


def grant(c, ttl, lease_id=0):
    return c.call(c.lease.LeaseGrant, pb.LeaseGrantRequest(TTL=ttl, ID=lease_id))


def revoke(c, lease_id):
    return c.call(c.lease.LeaseRevoke, pb.LeaseRevokeRequest(ID=lease_id))


def ttl(c, lease_id, keys=False):
    r = c.call(c.lease.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=lease_id, keys=keys))
    if isinstance(r, pb.LeaseTimeToLiveResponse):
        r.keys.sort()  # etcd lists a lease's keys in map order
    return r


def leases(c):
    return c.call(c.lease.LeaseLeases, pb.LeaseLeasesRequest())


def test_grant(differential):
    def body(c, record):
        record("explicit id", grant(c, 60, 100))
        record("ttl of fresh 60 s lease", ttl(c, 100))
        record("ttl below etcd's minimum is raised", grant(c, 1, 101))
        record("ttl 0", grant(c, 0, 102))
        record("negative ttl", grant(c, -5, 103))
        record("negative id", grant(c, 10, -5))
        record("existing id", grant(c, 30, 100))
        record("ttl too large", grant(c, 9_000_000_001, 200))
        record("largest ttl", grant(c, 9_000_000_000, 201))
        chosen = []
        for t in (30, 40, 50):
            r = grant(c, t)
            chosen.append(getattr(r, "ID", 0))
            record(f"server-chosen id (ttl {t})", named(record, r))
        record("server-chosen ids are positive and distinct",
               [all(i > 0 for i in chosen), len(set(chosen)) == len(chosen)])
        record("chosen id is a real lease", named(record, ttl(c, chosen[0])))
        record("leases", named(record, leases(c)))
        record("put with unknown lease", c.put(b"k", b"v", lease=12345))
        record("put with lease", c.put(b"k", b"v", lease=chosen[1]))
        record("get", named(record, c.get(b"k")))
    differential(body)


def test_revoke(differential):
    def steps(c, w, record):
        record("grant 7", grant(c, 60, 7))
        record("grant 9000", grant(c, 60, 9000))
        for key, lease in ((b"b", 7), (b"a", 7), (b"c", 7), (b"other", 9000), (b"plain", 0)):
            record(f"put {key!r}", c.put(key, b"v-" + key, lease=lease))
        record("move c off the lease", c.put(b"c", b"v2", lease=0))
        record("move d to another lease", [c.put(b"d", b"v-d", lease=7), c.put(b"d", b"v2", lease=9000)])
        record("delete a leased key", [c.put(b"e", b"v-e", lease=7), c.delete(b"e")])
        record("txn put with an unknown lease", c.txn(success=[pb.RequestOp(request_put=pb.PutRequest(
            key=b"f", value=b"x", lease=31337))]))
        record("ttl of the other lease", ttl(c, 9000, keys=True))
        record("watch", w.created(b"\0", range_end=b"\0", prev_kv=True))
        record("ttl with keys", ttl(c, 7, keys=True))
        record("ttl without keys", ttl(c, 7))
        record("revoke", revoke(c, 7))
        record("one revision deletes the keys", by_watch_id(w.events(2)))
        record("range after revoke", c.get(b"\0", range_end=b"\0"))
        record("revoke again", revoke(c, 7))
        record("revoke unknown", revoke(c, 424242))
        record("revoke 0", revoke(c, 0))
        record("ttl after revoke", ttl(c, 7, keys=True))
        record("put with revoked lease", c.put(b"x", b"v", lease=7))
        record("revoke lease without keys: revision unchanged?", [grant(c, 60, 100), revoke(c, 100),
                                                                  c.get(b"plain")])
        record("id can be granted again", grant(c, 60, 7))
        record("leases", leases(c))
    conversation(differential, steps)


def test_keepalive_stream(differential):
    def body(c, record):
        record("grant", grant(c, 60, 7))
        record("grant short", grant(c, 1, 100))
        record("grant chosen", named(record, grant(c, 30)))
        k = KeepAliveStream(c)
        record("keepalive", k.keepalive(7))
        record("keepalive raised ttl", k.keepalive(100))
        record("keepalive unknown", k.keepalive(999))
        record("keepalive 0", k.keepalive(0))
        for r in leases(c).leases:
            if r.ID not in (7, 100):
                record("keepalive chosen", named(record, k.keepalive(r.ID)))
        record("stream stays open", k.keepalive(7))
        record("revoke", revoke(c, 7))
        record("keepalive revoked", k.keepalive(7))
        record("nothing else", k.pending())
        k.close()
        unary = KeepAliveStream(c)   # a second stream works independently
        record("second stream", unary.keepalive(100))
        unary.close()
    differential(body)


def test_expiry(differential):
    def body(c, record):
        record("grant expiring", grant(c, 2, 7))
        record("grant kept alive", grant(c, 2, 100))
        for key, lease in ((b"e1", 7), (b"e2", 7), (b"k1", 100), (b"p", 0)):
            record(f"put {key!r}", c.put(key, b"v", lease=lease))
        k = KeepAliveStream(c)
        kept, deadline = [], time.monotonic() + 10
        while time.monotonic() < deadline:
            r = k.keepalive(100)
            kept.append((r.ID, r.TTL) if isinstance(r, pb.LeaseKeepAliveResponse) else r)
            left = ttl(c, 7)
            if getattr(left, "TTL", None) == -1:
                break
            time.sleep(0.4)
        record("expired lease", ttl(c, 7, keys=True))
        record("keep-alives answered with the full TTL", sorted(set(kept)))
        record("range: expired keys gone in one revision", c.get(b"\0", range_end=b"\0"))
        alive = ttl(c, 100, keys=True)
        record("kept lease alive", [alive.ID, alive.grantedTTL, [k.decode() for k in alive.keys], 0 < alive.TTL <= 2]
               if isinstance(alive, pb.LeaseTimeToLiveResponse) else alive)
        record("leases", leases(c))
        record("keepalive expired", k.keepalive(7))
        k.close()
        try:
            w = WatchStream(c)
            w.create(b"\0", range_end=b"\0", start_revision=1)
            record("history", w.events(5))
            w.close()
        except NoResponse as e:
            record("history", str(e))
    differential(body)
