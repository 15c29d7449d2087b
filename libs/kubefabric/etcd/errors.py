"""etcd's errors, with etcd's exact gRPC status codes and messages (DESIGN §6): clients such as
kube-apiserver and etcdctl match on the message text, so these strings are part of the API.

Inside KubeFabric errors are compared by identity (`err is errors.COMPACTED`), never by text: a
status that crossed a gRPC hop (a shard service, its leader) is mapped back to the canonical
instance once, by `from_status`, as etcd's clients do with errStringToError."""
from __future__ import annotations

from functools import partial

from grpc import StatusCode


class EtcdError(Exception):
    """An error that reaches the client as the gRPC status (code, message)."""

    def __init__(self, code: StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"EtcdError({self.code.name}, {self.message!r})"


# the table below reads <status code>(message): each code is named once, here
_invalid_argument = partial(EtcdError, StatusCode.INVALID_ARGUMENT)
_out_of_range = partial(EtcdError, StatusCode.OUT_OF_RANGE)
_failed_precondition = partial(EtcdError, StatusCode.FAILED_PRECONDITION)
_not_found = partial(EtcdError, StatusCode.NOT_FOUND)
_unavailable = partial(EtcdError, StatusCode.UNAVAILABLE)
_resource_exhausted = partial(EtcdError, StatusCode.RESOURCE_EXHAUSTED)
_data_loss = partial(EtcdError, StatusCode.DATA_LOSS)
_permission_denied = partial(EtcdError, StatusCode.PERMISSION_DENIED)
_unauthenticated = partial(EtcdError, StatusCode.UNAUTHENTICATED)
_unknown = partial(EtcdError, StatusCode.UNKNOWN)

EMPTY_KEY = _invalid_argument("etcdserver: key is not provided")
KEY_NOT_FOUND = _invalid_argument("etcdserver: key not found")
VALUE_PROVIDED = _invalid_argument("etcdserver: value is provided")
LEASE_PROVIDED = _invalid_argument("etcdserver: lease is provided")
TOO_MANY_OPS = _invalid_argument("etcdserver: too many operations in txn request")
DUPLICATE_KEY = _invalid_argument("etcdserver: duplicate key given in txn request")
INVALID_SORT_OPTION = _invalid_argument("etcdserver: invalid sort option")
REQUEST_TOO_LARGE = _invalid_argument("etcdserver: request is too large")
COMPACTED = _out_of_range("etcdserver: mvcc: required revision has been compacted")
FUTURE_REV = _out_of_range("etcdserver: mvcc: required revision is a future revision")
NO_SPACE = _resource_exhausted("etcdserver: mvcc: database space exceeded")
CORRUPT = _data_loss("etcdserver: corrupt cluster")
LEASE_NOT_FOUND = _not_found("etcdserver: requested lease not found")
LEASE_EXIST = _failed_precondition("etcdserver: lease already exists")
LEASE_TTL_TOO_LARGE = _out_of_range("etcdserver: too large lease TTL")
STOPPING = _unavailable("etcdserver: server stopped")
TIMEOUT = _unavailable("etcdserver: request timed out")
BAD_LEADER_TRANSFEREE = _failed_precondition("etcdserver: bad leader transferee")
# Not etcd's: a shard replica that is not (or no longer) the writer. UNAVAILABLE, nothing applied:
# clients retry (etcd's clients treat UNAVAILABLE as retriable).
NOT_LEADER = _unavailable("etcdserver: not leader")
# Not etcd's: the shard's database cannot be reached (or dropped the connection) and the request
# was not applied. Clients are told no more than this (never the DSN's user, host, port or
# database); the shard service logs the cause.
DB_UNAVAILABLE = _unavailable("kubefabric: the shard's database is unavailable")
# Not etcd's: a shard replica that cannot serve yet (its database is unreachable or the election
# is running); nothing was applied.
SHARD_NOT_READY = _unavailable("etcdserver: shard not ready (database unreachable or election running)")

# auth (etcd's rpctypes), raised by kubefabric.auth and kv-router's auth service
ROOT_USER_NOT_EXIST = _failed_precondition("etcdserver: root user does not exist")
ROOT_ROLE_NOT_EXIST = _failed_precondition("etcdserver: root user does not have root role")
USER_ALREADY_EXIST = _failed_precondition("etcdserver: user name already exists")
USER_EMPTY = _invalid_argument("etcdserver: user name is empty")
USER_NOT_FOUND = _failed_precondition("etcdserver: user name not found")
ROLE_ALREADY_EXIST = _failed_precondition("etcdserver: role name already exists")
ROLE_NOT_FOUND = _failed_precondition("etcdserver: role name not found")
ROLE_EMPTY = _invalid_argument("etcdserver: role name is empty")
AUTH_FAILED = _invalid_argument("etcdserver: authentication failed, invalid user ID or password")
PERMISSION_NOT_GIVEN = _invalid_argument("etcdserver: permission not given")
PERMISSION_DENIED = _permission_denied("etcdserver: permission denied")
ROLE_NOT_GRANTED = _failed_precondition("etcdserver: role is not granted to the user")
PERMISSION_NOT_GRANTED = _failed_precondition("etcdserver: permission is not granted to the role")
AUTH_NOT_ENABLED = _failed_precondition("etcdserver: authentication is not enabled")
INVALID_AUTH_TOKEN = _unauthenticated("etcdserver: invalid auth token")
INVALID_AUTH_MGMT = _invalid_argument("etcdserver: invalid auth management")
AUTH_OLD_REVISION = _invalid_argument("etcdserver: revision of auth store is old")
# etcd has no gRPC mapping for this one: it reaches clients as UNKNOWN with the store's text
NO_PASSWORD_USER = _unknown("auth: authentication failed, password was given for no password user")


def key_too_large(limit: int, database: str) -> EtcdError:
    return _invalid_argument(f"etcdserver: key is too large: this shard's {database} index holds "
                             f"keys of at most {limit} bytes")


MEMBER_NOT_FOUND = _not_found("etcdserver: member not found")


def unimplemented(what: str) -> EtcdError:
    return EtcdError(StatusCode.UNIMPLEMENTED, f"{what} is not implemented by KubeFabric")


# (code, message) -> the canonical instance, for every fixed error above
_CANONICAL = {(e.code, e.message): e for e in globals().values() if isinstance(e, EtcdError)}


def from_status(code: StatusCode, message: str) -> EtcdError:
    """The error a gRPC status stands for: the canonical instance when it is one of the fixed
    errors above (so callers compare with `is`), otherwise a new EtcdError carrying it."""
    return _CANONICAL.get((code, message)) or EtcdError(code, message)
