"""etcd's Auth API against etcd 3.7.3 (issue 20 point 1): every Auth RPC with its errors, then
what enabling auth changes for KV (every Txn branch), Watch, Lease and Maintenance calls, for
no identity, a bad token, a user with some permissions and root.

Tokens differ per server by nature: a response's token is recorded as "a token" and used in the
calls that follow. Each side's bcrypt runs at etcd's default cost.

Targets: every one but MariaDB (PostgreSQL covers the auth store on a database server shard;
left out to keep CI's time). The tests that change the store and call at once through the other
process leave out "router-workers" too: kv-router processes in front of shard services (as
kv-router replicas) take a change made through another one within AuthGuard.POLL_S, not on the
next call (README, "Serve on more than one core").
"""
from __future__ import annotations

import grpc

from harness.client import Failure
from kubefabric.proto.authpb import auth_pb2 as authpb
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

READ, WRITE, READWRITE = authpb.Permission.READ, authpb.Permission.WRITE, authpb.Permission.READWRITE


def call(c, method, request, token=None):
    md = [("token", token)] if token else None
    try:
        return method(request, timeout=20, metadata=md)
    except grpc.RpcError as err:
        return Failure(err.code().name, err.details() or "")


def login(c, name, password):
    """(what to record, the token or None)."""
    resp = call(c, c.auth.Authenticate, pb.AuthenticateRequest(name=name, password=password))
    if isinstance(resp, pb.AuthenticateResponse):
        token = resp.token
        resp.token = "TOKEN" if token else ""
        return resp, token
    return resp, None


def perm(key, end=b"", kind=READWRITE):
    return authpb.Permission(permType=kind, key=key, range_end=end)


def put_op(key, value=b"v", **kw):
    return pb.RequestOp(request_put=pb.PutRequest(key=key, value=value, **kw))


def range_op(key, end=b""):
    return pb.RequestOp(request_range=pb.RangeRequest(key=key, range_end=end))


def delete_op(key, end=b"", prev_kv=False):
    return pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key, range_end=end, prev_kv=prev_kv))


def first_watch_response(c, request, token=None):
    md = [("token", token)] if token else None
    stream = c.watch.Watch(iter([pb.WatchRequest(create_request=request)]), timeout=10, metadata=md)
    try:
        return next(stream)
    except grpc.RpcError as err:
        return Failure(err.code().name, err.details() or "")
    finally:
        stream.cancel()


def test_auth_rpcs_before_enabling(differential):
    def body(c, record):
        a = c.auth
        record("status", call(c, a.AuthStatus, pb.AuthStatusRequest()))
        record("enable without root", call(c, a.AuthEnable, pb.AuthEnableRequest()))
        record("user add, no name", call(c, a.UserAdd, pb.AuthUserAddRequest(name="", password="x")))
        record("user add root", call(c, a.UserAdd, pb.AuthUserAddRequest(name="root", password="rootpw")))
        record("user add again", call(c, a.UserAdd, pb.AuthUserAddRequest(name="root", password="x")))
        record("enable without the root role", call(c, a.AuthEnable, pb.AuthEnableRequest()))
        record("user add, no password", call(c, a.UserAdd, pb.AuthUserAddRequest(
            name="certuser", options=authpb.UserAddOptions(no_password=True))))
        record("user add alice", call(c, a.UserAdd, pb.AuthUserAddRequest(name="alice", password="pw")))
        record("role add, no name", call(c, a.RoleAdd, pb.AuthRoleAddRequest(name="")))
        record("role add", call(c, a.RoleAdd, pb.AuthRoleAddRequest(name="app")))
        record("role add again", call(c, a.RoleAdd, pb.AuthRoleAddRequest(name="app")))
        record("role add ops", call(c, a.RoleAdd, pb.AuthRoleAddRequest(name="ops")))
        for key, end, kind in ((b"/app/", b"/app0", READWRITE), (b"/shared", b"", READ),
                               (b"/logs/", b"\x00", WRITE), (b"/app/", b"/app0", READ),
                               (b"/a", b"/b", READWRITE)):
            record(f"grant {key!r}-{end!r}", call(c, a.RoleGrantPermission,
                   pb.AuthRoleGrantPermissionRequest(name="app", perm=perm(key, end, kind))))
        record("grant, no permission", call(c, a.RoleGrantPermission,
                                            pb.AuthRoleGrantPermissionRequest(name="app")))
        record("grant, end before key", call(c, a.RoleGrantPermission, pb.AuthRoleGrantPermissionRequest(
            name="app", perm=perm(b"/z", b"/a"))))
        record("grant, empty key", call(c, a.RoleGrantPermission, pb.AuthRoleGrantPermissionRequest(
            name="app", perm=perm(b"", b"/a"))))
        record("grant to no role", call(c, a.RoleGrantPermission, pb.AuthRoleGrantPermissionRequest(
            name="nope", perm=perm(b"/x"))))
        record("revoke permission", call(c, a.RoleRevokePermission, pb.AuthRoleRevokePermissionRequest(
            role="app", key=b"/a", range_end=b"/b")))
        record("revoke it again", call(c, a.RoleRevokePermission, pb.AuthRoleRevokePermissionRequest(
            role="app", key=b"/a", range_end=b"/b")))
        record("revoke from no role", call(c, a.RoleRevokePermission, pb.AuthRoleRevokePermissionRequest(
            role="nope", key=b"/a")))
        record("role get", call(c, a.RoleGet, pb.AuthRoleGetRequest(role="app")))
        record("role get, none", call(c, a.RoleGet, pb.AuthRoleGetRequest(role="nope")))
        record("role get root before it exists", call(c, a.RoleGet, pb.AuthRoleGetRequest(role="root")))
        record("grant root role (needs no role)", call(c, a.UserGrantRole, pb.AuthUserGrantRoleRequest(
            user="root", role="root")))
        record("grant app", call(c, a.UserGrantRole, pb.AuthUserGrantRoleRequest(user="alice", role="app")))
        record("grant ops", call(c, a.UserGrantRole, pb.AuthUserGrantRoleRequest(user="alice", role="ops")))
        record("grant again", call(c, a.UserGrantRole, pb.AuthUserGrantRoleRequest(user="alice", role="app")))
        record("grant to no user", call(c, a.UserGrantRole, pb.AuthUserGrantRoleRequest(user="bob", role="app")))
        record("grant no role", call(c, a.UserGrantRole, pb.AuthUserGrantRoleRequest(user="alice", role="x")))
        record("user get", call(c, a.UserGet, pb.AuthUserGetRequest(name="alice")))
        record("user get, none", call(c, a.UserGet, pb.AuthUserGetRequest(name="bob")))
        record("user list", call(c, a.UserList, pb.AuthUserListRequest()))
        record("role list", call(c, a.RoleList, pb.AuthRoleListRequest()))
        record("revoke ops", call(c, a.UserRevokeRole, pb.AuthUserRevokeRoleRequest(name="alice", role="ops")))
        record("revoke ops again", call(c, a.UserRevokeRole, pb.AuthUserRevokeRoleRequest(name="alice", role="ops")))
        record("revoke from no user", call(c, a.UserRevokeRole, pb.AuthUserRevokeRoleRequest(name="bob", role="x")))
        record("role delete", call(c, a.RoleDelete, pb.AuthRoleDeleteRequest(role="ops")))
        record("role delete, none", call(c, a.RoleDelete, pb.AuthRoleDeleteRequest(role="ops")))
        record("change password", call(c, a.UserChangePassword, pb.AuthUserChangePasswordRequest(
            name="alice", password="pw2")))
        record("change password, no user", call(c, a.UserChangePassword, pb.AuthUserChangePasswordRequest(
            name="bob", password="pw2")))
        record("user delete, none", call(c, a.UserDelete, pb.AuthUserDeleteRequest(name="bob")))
        record("user delete", call(c, a.UserDelete, pb.AuthUserDeleteRequest(name="certuser")))
        record("authenticate while disabled", login(c, "root", "rootpw")[0])
        record("status before enabling", call(c, a.AuthStatus, pb.AuthStatusRequest()))
        record("enable", call(c, a.AuthEnable, pb.AuthEnableRequest()))
        record("status after enabling", call(c, a.AuthStatus, pb.AuthStatusRequest()))
    differential(body, reference="etcd37", without=("mariadb",))  # CI time: see module doc


def _setup(c):
    """root (root role), alice with role app: readwrite /app/ prefix, read /shared, write /logs/*."""
    a = c.auth
    call(c, a.UserAdd, pb.AuthUserAddRequest(name="root", password="rootpw"))
    call(c, a.UserGrantRole, pb.AuthUserGrantRoleRequest(user="root", role="root"))
    call(c, a.UserAdd, pb.AuthUserAddRequest(name="alice", password="pw"))
    call(c, a.RoleAdd, pb.AuthRoleAddRequest(name="app"))
    for p in (perm(b"/app/", b"/app0"), perm(b"/shared", b"", READ), perm(b"/logs/", b"\x00", WRITE)):
        call(c, a.RoleGrantPermission, pb.AuthRoleGrantPermissionRequest(name="app", perm=p))
    call(c, a.UserGrantRole, pb.AuthUserGrantRoleRequest(user="alice", role="app"))
    c.put(b"/shared", b"s")
    c.put(b"/app/x", b"1")
    c.put(b"/other", b"o")
    call(c, a.AuthEnable, pb.AuthEnableRequest())


def test_auth_enabled_kv_and_txn(differential):
    def body(c, record):
        _setup(c)
        kv = c.kv
        record("put, no identity", call(c, kv.Put, pb.PutRequest(key=b"/app/y", value=b"1")))
        record("get, no identity", call(c, kv.Range, pb.RangeRequest(key=b"/app/x")))
        record("put, bad token", call(c, kv.Put, pb.PutRequest(key=b"/app/y"), token="garbage.1"))
        record("login, wrong password", login(c, "alice", "nope")[0])
        record("login, no user", login(c, "bob", "pw")[0])
        resp, alice = login(c, "alice", "pw")
        record("login alice", resp)
        resp, root = login(c, "root", "rootpw")
        record("login root", resp)
        t = alice
        record("put in the prefix", call(c, kv.Put, pb.PutRequest(key=b"/app/y", value=b"2"), t))
        record("put outside", call(c, kv.Put, pb.PutRequest(key=b"/other", value=b"2"), t))
        record("put read-only key", call(c, kv.Put, pb.PutRequest(key=b"/shared", value=b"2"), t))
        record("put write-only, prev_kv", call(c, kv.Put, pb.PutRequest(key=b"/logs/1", value=b"2",
                                                                         prev_kv=True), t))
        record("put write-only", call(c, kv.Put, pb.PutRequest(key=b"/logs/1", value=b"2"), t))
        record("get the prefix", call(c, kv.Range, pb.RangeRequest(key=b"/app/", range_end=b"/app0"), t))
        record("get a wider range", call(c, kv.Range, pb.RangeRequest(key=b"/app", range_end=b"/app0"), t))
        record("get read-only key", call(c, kv.Range, pb.RangeRequest(key=b"/shared"), t))
        record("get write-only key", call(c, kv.Range, pb.RangeRequest(key=b"/logs/1"), t))
        record("get everything", call(c, kv.Range, pb.RangeRequest(key=b"\x00", range_end=b"\x00"), t))
        record("delete in the prefix", call(c, kv.DeleteRange, pb.DeleteRangeRequest(key=b"/app/y"), t))
        record("delete read-only", call(c, kv.DeleteRange, pb.DeleteRangeRequest(key=b"/shared"), t))
        record("delete write-only, prev_kv", call(c, kv.DeleteRange, pb.DeleteRangeRequest(
            key=b"/logs/", range_end=b"/logs0", prev_kv=True), t))
        txn = lambda **kw: call(c, kv.Txn, pb.TxnRequest(**kw), t)  # noqa: E731
        record("txn allowed", txn(compare=[pb.Compare(key=b"/app/x", target=pb.Compare.VERSION,
                                                       result=pb.Compare.GREATER, version=0)],
                                  success=[put_op(b"/app/z")], failure=[range_op(b"/shared")]))
        record("txn, denied compare", txn(compare=[pb.Compare(key=b"/other", target=pb.Compare.VERSION,
                                                              result=pb.Compare.GREATER, version=0)]))
        record("txn, denied op on the branch not taken", txn(success=[put_op(b"/app/z")],
                                                           failure=[put_op(b"/other")]))
        record("txn, denied nested", txn(success=[pb.RequestOp(request_txn=pb.TxnRequest(
            success=[delete_op(b"/shared")]))]))
        record("txn, read-only allowed", txn(success=[range_op(b"/app/", b"/app0"), range_op(b"/shared")]))
        record("txn, read-only denied", txn(success=[range_op(b"/other")]))
        record("compact as alice", call(c, kv.Compact, pb.CompactionRequest(revision=2), t))
        record("compact as root", call(c, kv.Compact, pb.CompactionRequest(revision=2), root))
        record("root reads anything", call(c, kv.Range, pb.RangeRequest(key=b"\x00", range_end=b"\x00"), root))
        a = c.auth
        record("user list as alice", call(c, a.UserList, pb.AuthUserListRequest(), t))
        record("user get self", call(c, a.UserGet, pb.AuthUserGetRequest(name="alice"), t))
        record("user get root as alice", call(c, a.UserGet, pb.AuthUserGetRequest(name="root"), t))
        record("role get own role", call(c, a.RoleGet, pb.AuthRoleGetRequest(role="app"), t))
        record("role get root as alice", call(c, a.RoleGet, pb.AuthRoleGetRequest(role="root"), t))
        record("role get root as root", call(c, a.RoleGet, pb.AuthRoleGetRequest(role="root"), root))
        record("role add, no identity", call(c, a.RoleAdd, pb.AuthRoleAddRequest(name="x")))
        record("role add as alice", call(c, a.RoleAdd, pb.AuthRoleAddRequest(name="x"), t))
        record("status, no identity", call(c, a.AuthStatus, pb.AuthStatusRequest()))
        record("delete root", call(c, a.UserDelete, pb.AuthUserDeleteRequest(name="root"), root))
        record("revoke root's root role", call(c, a.UserRevokeRole, pb.AuthUserRevokeRoleRequest(
            name="root", role="root"), root))
        record("delete role root", call(c, a.RoleDelete, pb.AuthRoleDeleteRequest(role="root"), root))
        record("grant more as root", call(c, a.RoleGrantPermission, pb.AuthRoleGrantPermissionRequest(
            name="app", perm=perm(b"/other")), root))
        record("put now allowed", call(c, kv.Put, pb.PutRequest(key=b"/other", value=b"3"), t))
        record("disable as alice", call(c, a.AuthDisable, pb.AuthDisableRequest(), t))
        record("disable as root", call(c, a.AuthDisable, pb.AuthDisableRequest(), root))
        record("status", call(c, a.AuthStatus, pb.AuthStatusRequest()))
        record("put, no identity, disabled", call(c, kv.Put, pb.PutRequest(key=b"/other", value=b"4")))
    differential(body, reference="etcd37", without=("mariadb", "router-workers"))  # see module doc


def test_auth_enabled_watch_lease_maintenance(differential):
    def body(c, record):
        _setup(c)
        _, t = login(c, "alice", "pw")
        _, root = login(c, "root", "rootpw")
        w = lambda key, end=b"", tok=None: first_watch_response(  # noqa: E731
            c, pb.WatchCreateRequest(key=key, range_end=end), tok)
        record("watch, no identity", w(b"/app/x"))
        record("watch, bad token", w(b"/app/x", tok="bad.token"))
        record("watch denied", w(b"/other", tok=t))
        record("watch allowed", w(b"/app/", b"/app0", t))
        lease = c.lease
        record("grant, no identity", call(c, lease.LeaseGrant, pb.LeaseGrantRequest(ID=10, TTL=60)))
        record("grant", call(c, lease.LeaseGrant, pb.LeaseGrantRequest(ID=10, TTL=60), t))
        record("grant 11", call(c, lease.LeaseGrant, pb.LeaseGrantRequest(ID=11, TTL=60), root))
        record("put with the lease", call(c, c.kv.Put, pb.PutRequest(key=b"/app/l", lease=10), t))
        record("root puts /other on lease 11", call(c, c.kv.Put, pb.PutRequest(key=b"/other", lease=11), root))
        record("alice puts on lease 11", call(c, c.kv.Put, pb.PutRequest(key=b"/app/m", lease=11), t))
        record("ttl with keys", call(c, lease.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=10, keys=True), t))
        record("ttl of 11 with keys", call(c, lease.LeaseTimeToLive,
                                           pb.LeaseTimeToLiveRequest(ID=11, keys=True), t))
        record("ttl of 11, no keys", call(c, lease.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=11), t))
        record("ttl, no identity", call(c, lease.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=10)))
        record("leases as alice", call(c, lease.LeaseLeases, pb.LeaseLeasesRequest(), t))
        record("leases as root", call(c, lease.LeaseLeases, pb.LeaseLeasesRequest(), root))
        record("revoke 11 as alice", call(c, lease.LeaseRevoke, pb.LeaseRevokeRequest(ID=11), t))
        record("revoke 10 as alice", call(c, lease.LeaseRevoke, pb.LeaseRevokeRequest(ID=10), t))
        m = c.maintenance
        record("status, no identity", call(c, m.Status, pb.StatusRequest()))
        record("alarm list, no identity", call(c, m.Alarm, pb.AlarmRequest(action=pb.AlarmRequest.GET)))
        record("alarm list as alice", call(c, m.Alarm, pb.AlarmRequest(action=pb.AlarmRequest.GET), t))
        record("alarm raise as alice", call(c, m.Alarm, pb.AlarmRequest(
            action=pb.AlarmRequest.ACTIVATE, alarm=pb.NOSPACE), t))
        record("hashkv as alice", call(c, m.HashKV, pb.HashKVRequest(), t))
        record("hashkv as root", call(c, m.HashKV, pb.HashKVRequest(), root))
        record("defragment as alice", call(c, m.Defragment, pb.DefragmentRequest(), t))
        record("defragment as root", call(c, m.Defragment, pb.DefragmentRequest(), root))
        a = c.auth
        record("change alice's password", call(c, a.UserChangePassword, pb.AuthUserChangePasswordRequest(
            name="alice", password="new"), root))
        record("the old token", call(c, c.kv.Range, pb.RangeRequest(key=b"/app/x"), t))
        record("login with the new password", login(c, "alice", "new")[0])
    differential(body, reference="etcd37", without=("mariadb", "router-workers"))  # see module doc


def test_simple_token_ttl_and_move_leader(differential):
    """--auth-token-ttl (etcd's flag, seconds): a simple token used within its TTL stays valid,
    one left idle longer is refused. MoveLeader with auth on: the root role only."""
    import time

    def body(c, record):
        a = c.auth
        record("add root", call(c, a.UserAdd, pb.AuthUserAddRequest(name="root", password="pw")))
        record("grant root", call(c, a.UserGrantRole, pb.AuthUserGrantRoleRequest(user="root", role="root")))
        record("add bob", call(c, a.UserAdd, pb.AuthUserAddRequest(name="bob", password="pw")))
        record("enable", call(c, a.AuthEnable, pb.AuthEnableRequest()))
        resp, root = login(c, "root", "pw")
        record("login root", resp)
        resp, bob = login(c, "bob", "pw")
        own = getattr(call(c, c.cluster.MemberList, pb.MemberListRequest(), root), "members", [pb.Member()])[0].ID
        record("move leader, no identity", call(c, c.maintenance.MoveLeader, pb.MoveLeaderRequest(targetID=own)))
        record("move leader as bob", call(c, c.maintenance.MoveLeader, pb.MoveLeaderRequest(targetID=own), bob))
        record("move leader as root", call(c, c.maintenance.MoveLeader, pb.MoveLeaderRequest(targetID=own), root))
        for i in range(3):  # used every second: stays valid past its 2 s TTL
            time.sleep(1)
            record(f"root's token in use, {i + 1} s", call(c, c.kv.Range, pb.RangeRequest(key=b"k"), root))
        time.sleep(4)
        record("root's token after 4 s idle", call(c, c.kv.Range, pb.RangeRequest(key=b"k"), root))
    ttl = ["--auth-token-ttl", "2"]
    differential(body, etcd_args=ttl, kubefabric_args=ttl, reference="etcd37", targets=["embedded"])
