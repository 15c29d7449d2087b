"""Permission checks over key ranges, as etcd's range permission cache decides them.

Each user's roles are merged into read and write interval sets. Keys compare bytewise, except
that an empty bound is the end of the key space ("\\0" as a range end means the same). A
permission without range end covers its key alone. A request for one key is allowed when some
interval holds the key; a request for a range when the intervals overlapping it cover it
without a gap.
"""
from __future__ import annotations

from dataclasses import dataclass

from kubefabric.proto.authpb import auth_pb2 as authpb

from kubefabric.etcd import errors
from .state import AuthState

READ, WRITE = authpb.Permission.READ, authpb.Permission.WRITE

_INF = None  # the end of the key space


def _lt(a: bytes | None, b: bytes | None) -> bool:
    """a < b with None (and b"") as +infinity: etcd's BytesAffineComparable."""
    if not a:
        return False
    if not b:
        return True
    return a < b


def _interval(key: bytes, range_end: bytes) -> tuple[bytes, bytes | None]:
    if not range_end:
        return key, key + b"\x00"
    return key, _INF if range_end == b"\x00" else range_end


@dataclass(frozen=True)
class UserPerms:
    read: tuple[tuple[bytes, bytes | None], ...]   # sorted by begin
    write: tuple[tuple[bytes, bytes | None], ...]


def merged(state: AuthState, user: str) -> UserPerms | None:
    u = state.users.get(user)
    if u is None:
        return None
    read, write = [], []
    for name in u.roles:
        role = state.roles.get(name)
        if role is None:
            continue
        for p in role.keyPermission:
            ivl = _interval(p.key, p.range_end)
            if p.permType in (authpb.Permission.READ, authpb.Permission.READWRITE):
                read.append(ivl)
            if p.permType in (authpb.Permission.WRITE, authpb.Permission.READWRITE):
                write.append(ivl)
    order = lambda i: (not i[0], i[0])  # noqa: E731 - an empty begin sorts last
    return UserPerms(tuple(sorted(read, key=order)), tuple(sorted(write, key=order)))


def _contains(ivls, begin: bytes, end: bytes | None) -> bool:
    """etcd's IntervalTree.Contains: the intervals overlapping [begin, end) cover it."""
    min_begin = max_end = None
    first = True
    for b, e in ivls:
        if not (_lt(b, end) and _lt(begin, e)):  # no overlap
            continue
        if first:
            min_begin, max_end, first = b, e, False
            continue
        if _lt(max_end, b):
            return False
        if _lt(max_end, e):
            max_end = e
    if first:
        return False
    return not _lt(max_end, end) and not _lt(begin, min_begin)


def _holds(ivls, key: bytes) -> bool:
    return any(not _lt(key, b) and _lt(key, e) for b, e in ivls)


def range_permitted(perms: UserPerms, key: bytes, range_end: bytes, kind: int) -> bool:
    ivls = perms.read if kind == READ else perms.write
    if not range_end:
        return _holds(ivls, key)
    return _contains(ivls, key, _INF if range_end == b"\x00" else range_end)


class Checker:
    """One auth state with each user's merged permissions, built once per state."""

    def __init__(self, state: AuthState):
        self.state = state
        self._perms: dict[str, UserPerms | None] = {}

    def perms(self, user: str) -> UserPerms | None:
        if user not in self._perms:
            self._perms[user] = merged(self.state, user)
        return self._perms[user]

    def check(self, user: str, revision: int, key: bytes, range_end: bytes, kind: int) -> None:
        """etcd's isOpPermitted: an identity of the current auth revision whose roles allow it."""
        state = self.state
        if not state.enabled:
            return
        if revision == 0:
            raise errors.USER_EMPTY
        if revision < state.revision:
            raise errors.AUTH_OLD_REVISION
        if user not in state.users:
            raise errors.PERMISSION_DENIED
        if state.has_root_role(user):
            return
        perms = self.perms(user)
        if perms is None or not range_permitted(perms, key, range_end, kind):
            raise errors.PERMISSION_DENIED
