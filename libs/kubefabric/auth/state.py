"""etcd's auth store: users, roles, the enabled flag and the auth revision, and how each Auth
request changes them (etcd's authStore and auth applier, rule for rule).

Invariants:
- An AuthState is never changed in place: `apply` returns a new state (or None when nothing
  changed), so readers holding the old one see a consistent store.
- The revision starts at 1 and goes up by one with every change of users or roles and with
  AuthDisable (not AuthEnable), as in etcd; clients holding a JWT of an older revision are told
  their token's revision is old.
- A user's roles are kept sorted, a role's permissions sorted by key (etcd's order).
- Requests that need the root role (etcd's needAdminPermission) are checked here, against the
  state they change, with the caller's user name: a stale copy elsewhere cannot let one through.
- Passwords arrive already hashed (bcrypt, base64 as etcd's hashedPassword); plaintext never
  reaches the store.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any
from dataclasses import dataclass, field, replace

from kubefabric.proto.authpb import auth_pb2 as authpb
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

from kubefabric.etcd import errors

ROOT_USER = "root"
ROOT_ROLE = "root"
ROOT_PERM = authpb.Permission(permType=authpb.Permission.READWRITE, key=b"", range_end=b"\x00")


@dataclass(frozen=True)
class AuthState:
    enabled: bool = False
    revision: int = 1
    users: dict[str, authpb.User] = field(default_factory=dict)
    roles: dict[str, authpb.Role] = field(default_factory=dict)
    # the key that signs simple tokens; a new one at every AuthEnable (old tokens die with it)
    secret: bytes = b""

    def has_root_role(self, user: str) -> bool:
        u = self.users.get(user)
        return u is not None and ROOT_ROLE in u.roles

    def admin_error(self, user: str | None):
        """etcd's IsAdminPermitted: None when permitted, else the error."""
        if not self.enabled:
            return None
        if not user:
            return errors.USER_EMPTY
        if user not in self.users:
            return errors.USER_NOT_FOUND
        if not self.has_root_role(user):
            return errors.PERMISSION_DENIED
        return None

    def check_admin(self, user: str | None) -> None:
        err = self.admin_error(user)
        if err is not None:
            raise err


# etcd's needAdminPermission: the requests only a root-role user may make while auth is enabled
ADMIN_ONLY = frozenset({
    "AuthEnable", "AuthDisable", "UserAdd", "UserDelete", "UserChangePassword", "UserGrantRole",
    "UserRevokeRole", "RoleAdd", "RoleGrantPermission", "RoleRevokePermission", "RoleDelete",
    "UserList", "RoleList"})


def _user(name: str, password: bytes, roles, options) -> authpb.User:
    u = authpb.User(name=name.encode(), password=password, roles=sorted(roles))
    if options is not None:
        u.options.CopyFrom(options)
    return u


def _password(hashed: str) -> bytes:
    try:
        return base64.b64decode(hashed, validate=True)
    except (binascii.Error, ValueError):
        raise errors.NO_PASSWORD_USER from None


def _changed(state: AuthState, **kw) -> AuthState:
    return replace(state, revision=state.revision + 1, **kw)


def apply(state: AuthState, method: str, req, caller: str | None, new_secret: bytes = b""):
    """(response, new state or None) of Auth request `method` (etcd's RPC name) made by user
    `caller` (None: no identity). Raises an EtcdError as etcd would answer. new_secret: the
    token key AuthEnable installs."""
    if method in ADMIN_ONLY:
        state.check_admin(caller)
    elif method == "UserGet" and state.admin_error(caller) is not None and req.name != caller:
        raise state.admin_error(caller)
    elif method == "RoleGet" and state.admin_error(caller) is not None and not (
            caller in state.users and req.role in state.users[caller].roles):
        raise state.admin_error(caller)
    return HANDLERS[method](state, req, new_secret)


def _auth_enable(state: AuthState, req, new_secret: bytes):
    if state.enabled:
        return pb.AuthEnableResponse(), None
    root = state.users.get(ROOT_USER)
    if root is None:
        raise errors.ROOT_USER_NOT_EXIST
    if ROOT_ROLE not in root.roles:
        raise errors.ROOT_ROLE_NOT_EXIST
    return pb.AuthEnableResponse(), replace(state, enabled=True, secret=new_secret)


def _auth_disable(state: AuthState, req, _):
    if not state.enabled:
        return pb.AuthDisableResponse(), None
    return pb.AuthDisableResponse(), _changed(state, enabled=False, secret=b"")


def _auth_status(state: AuthState, req, _):
    return pb.AuthStatusResponse(enabled=state.enabled, authRevision=state.revision), None


def _user_add(state: AuthState, req: pb.AuthUserAddRequest, _):
    if not req.name:
        raise errors.USER_EMPTY
    if req.name in state.users:
        raise errors.USER_ALREADY_EXIST
    options = req.options if req.HasField("options") else authpb.UserAddOptions(no_password=False)
    password = b"" if options.no_password else _password(req.hashedPassword)
    users = {**state.users, req.name: _user(req.name, password, (), options)}
    return pb.AuthUserAddResponse(), _changed(state, users=users)


def _deleted(state: AuthState, table: dict, name: str, root: str, not_found) -> dict:
    """`table` (the users or the roles) without `name`, as etcd deletes one: never the root
    one while auth is enabled, `not_found` for a name it does not hold."""
    if state.enabled and name == root:
        raise errors.INVALID_AUTH_MGMT
    if name not in table:
        raise not_found
    return {n: v for n, v in table.items() if n != name}


def _user_delete(state: AuthState, req: pb.AuthUserDeleteRequest, _):
    users = _deleted(state, state.users, req.name, ROOT_USER, errors.USER_NOT_FOUND)
    return pb.AuthUserDeleteResponse(), _changed(state, users=users)


def _user_change_password(state: AuthState, req: pb.AuthUserChangePasswordRequest, _):
    user = state.users.get(req.name)
    if user is None:
        raise errors.USER_NOT_FOUND
    no_password = user.HasField("options") and user.options.no_password
    password = b"" if no_password else _password(req.hashedPassword)
    updated = _user(req.name, password, user.roles, user.options if user.HasField("options") else None)
    return pb.AuthUserChangePasswordResponse(), _changed(state, users={**state.users, req.name: updated})


def _user_grant_role(state: AuthState, req: pb.AuthUserGrantRoleRequest, _):
    user = state.users.get(req.user)
    if user is None:
        raise errors.USER_NOT_FOUND
    if req.role != ROOT_ROLE and req.role not in state.roles:
        raise errors.ROLE_NOT_FOUND
    if req.role in user.roles:
        return pb.AuthUserGrantRoleResponse(), None
    updated = _user(req.user, user.password, [*user.roles, req.role],
                    user.options if user.HasField("options") else None)
    return pb.AuthUserGrantRoleResponse(), _changed(state, users={**state.users, req.user: updated})


def _user_get(state: AuthState, req: pb.AuthUserGetRequest, _):
    user = state.users.get(req.name)
    if user is None:
        raise errors.USER_NOT_FOUND
    return pb.AuthUserGetResponse(roles=list(user.roles)), None


def _user_list(state: AuthState, req, _):
    return pb.AuthUserListResponse(users=_sorted_names(state.users)), None


def _user_revoke_role(state: AuthState, req: pb.AuthUserRevokeRoleRequest, _):
    if state.enabled and req.name == ROOT_USER and req.role == ROOT_ROLE:
        raise errors.INVALID_AUTH_MGMT
    user = state.users.get(req.name)
    if user is None:
        raise errors.USER_NOT_FOUND
    if req.role not in user.roles:
        raise errors.ROLE_NOT_GRANTED
    updated = _user(req.name, user.password, [r for r in user.roles if r != req.role],
                    user.options if user.HasField("options") else None)
    return pb.AuthUserRevokeRoleResponse(), _changed(state, users={**state.users, req.name: updated})


def _role_add(state: AuthState, req: pb.AuthRoleAddRequest, _):
    if not req.name:
        raise errors.ROLE_EMPTY
    if req.name in state.roles:
        raise errors.ROLE_ALREADY_EXIST
    roles = {**state.roles, req.name: authpb.Role(name=req.name.encode())}
    return pb.AuthRoleAddResponse(), _changed(state, roles=roles)


def _role_get(state: AuthState, req: pb.AuthRoleGetRequest, _):
    role = state.roles.get(req.role)
    if role is None:
        raise errors.ROLE_NOT_FOUND
    perms = [ROOT_PERM] if req.role == ROOT_ROLE else list(role.keyPermission)
    return pb.AuthRoleGetResponse(perm=perms), None


def _role_list(state: AuthState, req, _):
    return pb.AuthRoleListResponse(roles=_sorted_names(state.roles)), None


def _role_delete(state: AuthState, req: pb.AuthRoleDeleteRequest, _):
    roles = _deleted(state, state.roles, req.role, ROOT_ROLE, errors.ROLE_NOT_FOUND)
    users = {}
    for name, user in state.users.items():
        if req.role in user.roles:
            user = _user(name, user.password, [r for r in user.roles if r != req.role],
                         user.options if user.HasField("options") else None)
        users[name] = user
    return pb.AuthRoleDeleteResponse(), _changed(state, roles=roles, users=users)


def valid_permission_range(key: bytes, range_end: bytes) -> bool:
    """etcd's isValidPermissionRange: a key; no end, an end after the key, or "\\0" (to the end
    of the key space)."""
    if not key:
        return False
    if not range_end:
        return True
    return key < range_end or range_end == b"\x00"


def _role_grant_permission(state: AuthState, req: pb.AuthRoleGrantPermissionRequest, _):
    if not req.HasField("perm"):
        raise errors.PERMISSION_NOT_GIVEN
    if not valid_permission_range(req.perm.key, req.perm.range_end):
        raise errors.INVALID_AUTH_MGMT
    role = state.roles.get(req.name)
    if role is None:
        raise errors.ROLE_NOT_FOUND
    perms = [authpb.Permission(permType=p.permType, key=p.key, range_end=p.range_end)
             for p in role.keyPermission]
    same = next((p for p in perms if p.key == req.perm.key and p.range_end == req.perm.range_end), None)
    if same is not None:
        same.permType = req.perm.permType
    else:
        perms.append(authpb.Permission(permType=req.perm.permType, key=req.perm.key,
                                       range_end=req.perm.range_end))
        perms.sort(key=lambda p: p.key)  # stable, as Go's sort.Sort is not: same keys keep order
    updated = authpb.Role(name=role.name, keyPermission=perms)
    return pb.AuthRoleGrantPermissionResponse(), _changed(state, roles={**state.roles, req.name: updated})


def _role_revoke_permission(state: AuthState, req: pb.AuthRoleRevokePermissionRequest, _):
    role = state.roles.get(req.role)
    if role is None:
        raise errors.ROLE_NOT_FOUND
    kept = [p for p in role.keyPermission if p.key != req.key or p.range_end != req.range_end]
    if len(kept) == len(role.keyPermission):
        raise errors.PERMISSION_NOT_GRANTED
    updated = authpb.Role(name=role.name, keyPermission=kept)
    return pb.AuthRoleRevokePermissionResponse(), _changed(state, roles={**state.roles, req.role: updated})


def _sorted_names(items: dict) -> list[str]:
    """Names in etcd's order: its bucket's, bytewise."""
    return sorted(items, key=lambda n: n.encode())


HANDLERS = {
    "AuthEnable": _auth_enable, "AuthDisable": _auth_disable, "AuthStatus": _auth_status,
    "UserAdd": _user_add, "UserGet": _user_get, "UserList": _user_list, "UserDelete": _user_delete,
    "UserChangePassword": _user_change_password, "UserGrantRole": _user_grant_role,
    "UserRevokeRole": _user_revoke_role, "RoleAdd": _role_add, "RoleGet": _role_get,
    "RoleList": _role_list, "RoleDelete": _role_delete,
    "RoleGrantPermission": _role_grant_permission, "RoleRevokePermission": _role_revoke_permission,
}


def _message(method: str, suffix: str) -> Any:
    """etcd's message of an auth method: UserAdd -> AuthUserAddRequest (AuthEnable -> AuthEnable...)."""
    return getattr(pb, f"{'' if method.startswith('Auth') else 'Auth'}{method}{suffix}")


# method -> its request and response messages (the Shard API carries them serialized)
REQUESTS: dict[str, Any] = {m: _message(m, "Request") for m in HANDLERS}
RESPONSES: dict[str, Any] = {m: _message(m, "Response") for m in HANDLERS}


# ---- rows: how the default shard stores the state (kf_auth) ----

KIND_USER, KIND_ROLE, KIND_SECRET = 1, 2, 3
META_AUTH_REVISION = "auth_revision"
META_AUTH_ENABLED = "auth_enabled"


def to_rows(state: AuthState) -> list[tuple[int, bytes, bytes]]:
    """(kind, name, value) rows: users and roles as etcd's authpb messages, the token key."""
    rows = [(KIND_USER, u.name, u.SerializeToString()) for u in state.users.values()]
    rows += [(KIND_ROLE, r.name, r.SerializeToString()) for r in state.roles.values()]
    if state.secret:
        rows.append((KIND_SECRET, b"simple-token", state.secret))
    return rows


def from_rows(rows, meta: dict[str, int]) -> AuthState:
    users, roles, secret = {}, {}, b""
    for kind, name, value in rows:
        if kind == KIND_USER:
            users[bytes(name).decode()] = authpb.User.FromString(bytes(value))
        elif kind == KIND_ROLE:
            roles[bytes(name).decode()] = authpb.Role.FromString(bytes(value))
        elif kind == KIND_SECRET:
            secret = bytes(value)
    return AuthState(enabled=bool(meta.get(META_AUTH_ENABLED, 0)),
                     revision=meta.get(META_AUTH_REVISION, 1), users=users, roles=roles,
                     secret=secret)


# ---- the Shard API's AuthStore message ----

def to_message(state: AuthState, generation: int):
    from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb

    return spb.AuthStore(enabled=state.enabled, revision=state.revision,
                         users=list(state.users.values()), roles=list(state.roles.values()),
                         secret=state.secret, generation=generation)


def from_message(msg) -> tuple[AuthState, int]:
    return AuthState(enabled=msg.enabled, revision=msg.revision,
                     users={u.name.decode(): u for u in msg.users},
                     roles={r.name.decode(): r for r in msg.roles}, secret=msg.secret), msg.generation
