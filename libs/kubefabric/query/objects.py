"""What queries and the index see of a stored value: its labels and field values, or nothing
when the value is not a Kubernetes object.

One function, `view`, serves the writer (index rows), the scan and the differential tests'
oracle, so they cannot disagree on what an object's labels and fields are.

Decoding: JSON objects with a `metadata` mapping (custom resources, and built-ins stored as
JSON). Kubernetes protobuf values (magic `k8s\\0`, DESIGN §8) are decoded by
kubefabric.k8s when that module is present; until then they count as undecodable.
"""
from __future__ import annotations

import json
from typing import Iterable

from kubefabric.store.schema import INDEX_MAX_KEY_BYTES

from .requirements import NAME_FIELD, NAMESPACE_FIELD

PROTOBUF_MAGIC = b"k8s\x00"
# Objects under longer keys are not Kubernetes objects to queries (the index cannot hold their
# keys on MySQL; kube-apiserver's keys stay under 700 bytes: 253-byte names and groups).
MAX_OBJECT_KEY = INDEX_MAX_KEY_BYTES

try:  # the shared decoder of stored Kubernetes objects (DESIGN §8), when it has landed
    from kubefabric.k8s import decode as _k8s_decode
except ImportError:  # pragma: no cover - depends on the tree
    _k8s_decode = None


class View:
    """Labels and field values (strings) of one decoded object."""

    __slots__ = ("labels", "fields")

    def __init__(self, labels: dict[str, str], fields: dict[str, str]):
        self.labels = labels
        self.fields = fields


def scalar(value) -> str:
    """A field's value as Kubernetes field selectors compare it: strings as they are, integers
    in decimal, booleans as true/false; anything else (missing, null, float, list, mapping) ""."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return ""


def _mapping(value: bytes) -> dict | None:
    if value[:1] == b"{":
        try:
            obj = json.loads(value)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        return obj if isinstance(obj, dict) else None
    if value.startswith(PROTOBUF_MAGIC) and _k8s_decode is not None:
        try:
            # kubefabric.k8s.decode takes (key, value, mod_revision): until this passes them,
            # protobuf-stored objects never decode here (the TypeError is caught below)
            obj = _k8s_decode(value)  # type: ignore[call-arg]
        except Exception:  # noqa: BLE001 - any decoding failure means "not an object"
            return None
        return obj if isinstance(obj, dict) else None
    return None


def _path(obj: dict, path: str):
    node = obj
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def view(value: bytes, paths: Iterable[str] = ()) -> View | None:
    """The labels and the values of metadata.name, metadata.namespace and `paths`; None when
    `value` is not a Kubernetes object (no JSON mapping with a `metadata` mapping)."""
    obj = _mapping(value)
    if obj is None:
        return None
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return None
    raw = meta.get("labels")
    labels = ({k: v for k, v in raw.items() if isinstance(v, str)} if isinstance(raw, dict) else {})
    fields = {NAME_FIELD: scalar(meta.get("name")), NAMESPACE_FIELD: scalar(meta.get("namespace"))}
    for p in paths:
        if p not in fields:
            fields[p] = scalar(_path(obj, p))
    return View(labels, fields)
