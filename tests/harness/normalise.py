"""What may differ between etcd and KubeFabric, and nothing more.

Documented normalisations (everything else is compared field by field):
- ResponseHeader.cluster_id and member_id, Member.ID, StatusResponse.leader and
  AlarmMember.memberID: identities of a particular cluster, set to 0 on both sides.
- Lease IDs chosen by the server (LeaseGrant with ID 0): replaced by their order of first
  appearance (lease#1, lease#2, ...) on each side, so tests can still compare where they are used.
- Fields listed per call in `ignore` (for example Status.dbSize): server-specific measurements.
"""
from __future__ import annotations

from google.protobuf import json_format
from google.protobuf.message import Message

from harness.client import Failure

IDENTITY_FIELDS = {"cluster_id", "member_id", "leader", "memberID"}


def to_plain(value, ignore: frozenset[str] = frozenset()):
    """A protobuf message (or list/tuple/Failure of them) as plain data for comparison."""
    if isinstance(value, Message):
        data = json_format.MessageToDict(value, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=False)
        return _scrub(data, ignore)
    if isinstance(value, (list, tuple)):
        return [to_plain(v, ignore) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v, ignore) for k, v in value.items()}
    if isinstance(value, Failure):
        return {"error": value.code, "message": value.details}
    return value


def _scrub(data, ignore):
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if k in ignore:
                continue
            if k in IDENTITY_FIELDS:
                continue
            if k == "ID" and isinstance(v, str) and "peerURLs" in data:
                continue  # Member.ID
            out[k] = _scrub(v, ignore)
        return out
    if isinstance(data, list):
        return [_scrub(v, ignore) for v in data]
    return data


class LeaseIds:
    """Maps server-chosen lease IDs to lease#N in order of first appearance."""

    def __init__(self):
        self.names: dict[int, str] = {}

    def name(self, lease_id: int) -> str:
        return self.names.setdefault(lease_id, f"lease#{len(self.names) + 1}")
