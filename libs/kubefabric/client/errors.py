"""Errors of the async etcd client. Every error carries one line a person can act on."""
from __future__ import annotations

import grpc

from kubefabric.etcd import errors
from kubefabric.rpc.channel import status_error


class ClientError(Exception):
    """A call failed; `code` is the gRPC status code (None when no call was made)."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None):
        super().__init__(message)
        self.code = code


class Unavailable(ClientError):
    """No endpoint answered within the call's deadline (every endpoint was tried)."""


class Compacted(ClientError):
    """The revision a read or watch asked for is compacted away; `compact_revision` is the
    server's compaction revision (0 when the server did not say). A watcher that gets this has
    missed events: it must re-list at a current revision and watch from there."""

    def __init__(self, compact_revision: int, message: str = ""):
        super().__init__(message or f"revision compacted (compaction revision {compact_revision})",
                         grpc.StatusCode.OUT_OF_RANGE)
        self.compact_revision = compact_revision


class LeaseLost(ClientError):
    """A lease expired or was revoked before it could be renewed."""


def from_rpc(err: grpc.aio.AioRpcError, what: str) -> ClientError:
    """The client error for a failed call `what` (e.g. "Range /registry/...")."""
    details = err.details() or ""
    code = err.code()
    if status_error(err) is errors.COMPACTED:
        return Compacted(0, f"{what}: {details}")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(f"{what}: {details or code.name}", code)
    return ClientError(f"{what}: {details or code.name}", code)
