"""What may differ between etcd and KubeFabric, and nothing more.

Documented normalisations (everything else is compared field by field):
- ResponseHeader.cluster_id and member_id, Member.ID, StatusResponse.leader and
  AlarmMember.memberID: identities of a particular cluster, set to 0 on both sides.
- Lease IDs chosen by the server (LeaseGrant with ID 0): replaced by their order of first
  appearance (lease#1, lease#2, ...) on each side, so tests can still compare where they are used.
- Fields listed per call in `ignore` (for example Status.dbSize): server-specific measurements.
"""
from __future__ import annotations

import json

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


DROP = object()


def rewrite(data, entry, leaf=None):
    """JSON-like `data` rewritten: every dict entry becomes entry(key, value, the dict) (DROP
    leaves it out), then is rewritten in turn; other leaves pass through leaf() when given."""
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            v = entry(k, v, data)
            if v is not DROP:
                out[k] = rewrite(v, entry, leaf)
        return out
    if isinstance(data, list):
        return [rewrite(v, entry, leaf) for v in data]
    return data if leaf is None else leaf(data)


def _scrub(data, ignore):
    def entry(k, v, parent):
        if k in ignore or k in IDENTITY_FIELDS:
            return DROP
        if k == "ID" and isinstance(v, str) and "peerURLs" in parent:
            return DROP  # Member.ID
        return v
    return rewrite(data, entry)


class LeaseIds:
    """Maps server-chosen lease IDs to lease#N in order of first appearance."""

    def __init__(self):
        self.names: dict[int, str] = {}

    def name(self, lease_id: int) -> str:
        return self.names.setdefault(lease_id, f"lease#{len(self.names) + 1}")


def recording(client, body) -> list[tuple[str, object]]:
    """Run body(client, record) and close the client; the (label, plain value) steps it
    recorded. record.leases names server-chosen lease IDs; record.strict tells bodies that may
    check their own expectations whether this side is etcd."""
    rec: list[tuple[str, object]] = []

    def record(label, value, ignore=()):
        rec.append((label, to_plain(value, frozenset(ignore))))

    record.leases = LeaseIds()  # type: ignore[attr-defined]
    record.strict = client.kind == "etcd"  # type: ignore[attr-defined]
    try:
        body(client, record)
    finally:
        client.close()
    return rec


def compare_recordings(etcd: list, ours: list, kind: str = "kubefabric", note: str = "") -> None:
    """The differential comparison: the same labels in the same order, equal values, as many
    steps, at least one. `note` ends every failure message (e.g. why a server exited)."""
    for (l1, v1), (l2, v2) in zip(etcd, ours):
        assert l1 == l2, f"test body recorded different steps: {l1!r} vs {l2!r}{note}"
        assert v2 == v1, (f"step {l1!r} differs on {kind}\n etcd:       {json.dumps(v1, sort_keys=True)}\n"
                          f" {kind}: {json.dumps(v2, sort_keys=True)}{note}")
    assert len(etcd) == len(ours), f"test body recorded a different number of steps on {kind}{note}"
    assert etcd, "test body recorded nothing"
