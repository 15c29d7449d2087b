"""Errors that cross a gRPC hop come back as the canonical instances (kubefabric.etcd.errors), so
code inside KubeFabric compares them by identity, never by their text."""
from __future__ import annotations

import grpc

from kubefabric.etcd import errors
from kubefabric.etcd.errors import EtcdError


def canonical() -> list[EtcdError]:
    return [e for e in vars(errors).values() if isinstance(e, EtcdError)]


def test_every_fixed_error_maps_back_to_itself():
    found = canonical()
    assert errors.COMPACTED in found and errors.NOT_LEADER in found and errors.SHARD_NOT_READY in found
    for err in found:
        assert errors.from_status(err.code, err.message) is err, err


def test_fixed_errors_are_distinct_statuses():
    statuses = [(e.code, e.message) for e in canonical()]
    assert len(statuses) == len(set(statuses)), "two fixed errors share a status: identity is ambiguous"


def test_other_statuses_keep_their_code_and_text():
    err = errors.from_status(grpc.StatusCode.FAILED_PRECONDITION, "kubefabric: this txn touches two shards")
    assert err not in canonical()
    assert (err.code, err.message) == (grpc.StatusCode.FAILED_PRECONDITION,
                                       "kubefabric: this txn touches two shards")
    # same text, another code: not the canonical error
    other = errors.from_status(grpc.StatusCode.INTERNAL, errors.COMPACTED.message)
    assert other is not errors.COMPACTED and other.code == grpc.StatusCode.INTERNAL
