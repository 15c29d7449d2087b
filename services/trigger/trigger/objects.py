"""Kubernetes objects as the trigger sees them: keys of a watched resource, and stored values
decoded to the `kubectl get -o json` form. Decoding and key layout are kubefabric.k8s's (the one
decoder in libs/, DESIGN §8)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from kubefabric import k8s
from kubefabric.k8s import DecodeError

__all__ = ["DecodeError", "ObjectRef", "decode", "resource_prefix", "object_ref", "pluralize"]


@dataclass(frozen=True)
class ObjectRef:
    namespace: str   # "" when cluster-scoped
    name: str


def decode(key: bytes, value: bytes, mod_revision: int) -> dict:
    """The object as `kubectl get -o json` shows it (managedFields dropped, as kubectl does
    unless --show-managed-fields). Raises DecodeError."""
    obj = k8s.decode(key, value, mod_revision)
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def resource_prefix(group: str, plural: str, namespace: str | None = None) -> bytes:
    """Where kube-apiserver stores the objects of a resource (in one namespace)."""
    return k8s.resource_prefix(group, plural, namespace)


def object_ref(key: bytes, prefix: bytes) -> ObjectRef | None:
    """Namespace and name of the object stored at `key` under the resource `prefix`."""
    if not key.startswith(prefix):
        return None
    rest = key[len(prefix):].decode(errors="replace").split("/")
    if len(rest) == 1 and rest[0]:
        return ObjectRef("", rest[0])
    if len(rest) == 2 and rest[0] and rest[1]:
        return ObjectRef(rest[0], rest[1])
    return None


_IRREGULAR = {"endpoints": "endpoints"}


def pluralize(kind: str) -> str:
    """kube's default plural of a kind (lower case, English rules); CRDs may say otherwise and
    are asked first (resolve.py)."""
    k = kind.lower()
    if k in _IRREGULAR:
        return _IRREGULAR[k]
    if re.search(r"(s|x|z|ch|sh)$", k):
        return k + "es"
    if re.search(r"[^aeiou]y$", k):
        return k[:-1] + "ies"
    return k + "s"
