"""etcd's errors, with etcd's exact gRPC status codes and messages (DESIGN §6): clients such as
kube-apiserver and etcdctl match on the message text, so these strings are part of the API.

Inside KubeFabric errors are compared by identity (`err is errors.COMPACTED`), never by text: a
status that crossed a gRPC hop (a shard service, its leader) is mapped back to the canonical
instance once, by `from_status`, as etcd's clients do with errStringToError."""
from __future__ import annotations

from grpc import StatusCode


class EtcdError(Exception):
    """An error that reaches the client as the gRPC status (code, message)."""

    def __init__(self, code: StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"EtcdError({self.code.name}, {self.message!r})"


def _e(code: StatusCode, message: str) -> EtcdError:
    return EtcdError(code, message)


EMPTY_KEY = _e(StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided")
KEY_NOT_FOUND = _e(StatusCode.INVALID_ARGUMENT, "etcdserver: key not found")
VALUE_PROVIDED = _e(StatusCode.INVALID_ARGUMENT, "etcdserver: value is provided")
LEASE_PROVIDED = _e(StatusCode.INVALID_ARGUMENT, "etcdserver: lease is provided")
TOO_MANY_OPS = _e(StatusCode.INVALID_ARGUMENT, "etcdserver: too many operations in txn request")
DUPLICATE_KEY = _e(StatusCode.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request")
INVALID_SORT_OPTION = _e(StatusCode.INVALID_ARGUMENT, "etcdserver: invalid sort option")
REQUEST_TOO_LARGE = _e(StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large")
COMPACTED = _e(StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
FUTURE_REV = _e(StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")
NO_SPACE = _e(StatusCode.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")
CORRUPT = _e(StatusCode.DATA_LOSS, "etcdserver: corrupt cluster")
LEASE_NOT_FOUND = _e(StatusCode.NOT_FOUND, "etcdserver: requested lease not found")
LEASE_EXIST = _e(StatusCode.FAILED_PRECONDITION, "etcdserver: lease already exists")
LEASE_TTL_TOO_LARGE = _e(StatusCode.OUT_OF_RANGE, "etcdserver: too large lease TTL")
STOPPING = _e(StatusCode.UNAVAILABLE, "etcdserver: server stopped")
TIMEOUT = _e(StatusCode.UNAVAILABLE, "etcdserver: request timed out")
BAD_LEADER_TRANSFEREE = _e(StatusCode.FAILED_PRECONDITION, "etcdserver: bad leader transferee")
# Not etcd's: a shard replica that is not (or no longer) the writer. UNAVAILABLE, nothing applied:
# clients retry (etcd's clients treat UNAVAILABLE as retriable).
NOT_LEADER = _e(StatusCode.UNAVAILABLE, "etcdserver: not leader")
# Not etcd's: the shard's database cannot be reached (or dropped the connection) and the request
# was not applied. Clients are told no more than this (never the DSN's user, host, port or
# database); the shard service logs the cause.
DB_UNAVAILABLE = _e(StatusCode.UNAVAILABLE, "kubefabric: the shard's database is unavailable")
# Not etcd's: a shard replica that cannot serve yet (its database is unreachable or the election
# is running); nothing was applied.
SHARD_NOT_READY = _e(StatusCode.UNAVAILABLE,
                     "etcdserver: shard not ready (database unreachable or election running)")


def key_too_large(limit: int, database: str) -> EtcdError:
    return _e(StatusCode.INVALID_ARGUMENT,
              f"etcdserver: key is too large: this shard's {database} index holds keys of at most "
              f"{limit} bytes")


MEMBER_NOT_FOUND = _e(StatusCode.NOT_FOUND, "etcdserver: member not found")


def unimplemented(what: str) -> EtcdError:
    return EtcdError(StatusCode.UNIMPLEMENTED, f"{what} is not implemented by KubeFabric")


# (code, message) -> the canonical instance, for every fixed error above
_CANONICAL = {(e.code, e.message): e for e in globals().values() if isinstance(e, EtcdError)}


def from_status(code: StatusCode, message: str) -> EtcdError:
    """The error a gRPC status stands for: the canonical instance when it is one of the fixed
    errors above (so callers compare with `is`), otherwise a new EtcdError carrying it."""
    return _CANONICAL.get((code, message)) or EtcdError(code, message)
