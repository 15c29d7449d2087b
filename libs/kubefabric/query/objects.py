"""What queries and the index see of a stored value: its labels and field values, or nothing
when the value is not a Kubernetes object.

One function, `view`, serves the writer (index rows), the scan and the differential tests'
oracle, so they cannot disagree on what an object's labels and fields are. It reads values
through the shared decoder's cheap path (kubefabric.k8s.summarize, DESIGN §8): JSON objects
with apiVersion, kind and metadata; Kubernetes protobuf built-ins as the decoder supports them.
"""
from __future__ import annotations

from typing import Iterable

from kubefabric.k8s import DecodeError, summarize
from kubefabric.store.schema import INDEX_MAX_KEY_BYTES

from .requirements import NAME_FIELD, NAMESPACE_FIELD

# Objects under longer keys are not Kubernetes objects to queries (the index cannot hold their
# keys on MySQL; kube-apiserver's keys stay under 700 bytes: 253-byte names and groups).
MAX_OBJECT_KEY = INDEX_MAX_KEY_BYTES
# What `view` can decode: part of every index's identity (kubefabric.index.rules), so that when
# the decoder learns to read more values (Kubernetes protobuf), raising this rebuilds every
# index instead of leaving the versions it could not read before unindexed.
VIEW_VERSION = 1


class View:
    """Labels and field values (strings) of one decoded object."""

    __slots__ = ("labels", "fields")

    def __init__(self, labels: dict[str, str], fields: dict[str, str]):
        self.labels = labels
        self.fields = fields


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def view(key: bytes, value: bytes, paths: Iterable[str] = ()) -> View | None:
    """The labels and the values of metadata.name, metadata.namespace and `paths` (a missing
    or non-scalar field reads as "", as Kubernetes field selectors compare); None when `value`
    is not a Kubernetes object or `key` is longer than MAX_OBJECT_KEY."""
    if len(key) > MAX_OBJECT_KEY:
        return None
    extra = tuple(p for p in paths if p not in (NAME_FIELD, NAMESPACE_FIELD))
    try:
        s = summarize(key, value, extra)
    except DecodeError:
        return None
    labels = s.labels if isinstance(s.labels, dict) else {}
    if not all(isinstance(v, str) and isinstance(k, str) for k, v in labels.items()):
        labels = {k: v for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)}
    fields = {NAME_FIELD: _text(s.name), NAMESPACE_FIELD: _text(s.namespace)}
    for p, v in s.fields.items():
        fields[p] = v or ""
    return View(labels, fields)
