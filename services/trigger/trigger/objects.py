"""Kubernetes objects as the trigger sees them: keys of a watched resource, and stored values
decoded to the `kubectl get -o json` form.

Decoding is kubefabric.k8s's (the one decoder in libs/, DESIGN §8). Until that package is on
this branch, JSON values (custom resources, KubeFabric's own records) are decoded here and a
protobuf value is refused with a clear error; nothing else is decoded twice.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

try:  # the shared decoder (decoder engineer, libs/kubefabric/k8s)
    from kubefabric.k8s import DecodeError, decode as _decode
    from kubefabric.k8s import resource_prefix as _resource_prefix
    HAVE_DECODER = True
except ImportError:  # pragma: no cover - depends on what main holds
    HAVE_DECODER = False

    class DecodeError(ValueError):  # type: ignore[no-redef]
        pass

REGISTRY = "/registry/"
PROTOBUF_MAGIC = b"k8s\x00"
# groups kube-apiserver itself serves and stores without the group in the key (DESIGN §8)
_GROUPED_BUILTINS = {"apiextensions.k8s.io", "apiregistration.k8s.io"}


@dataclass(frozen=True)
class ObjectRef:
    namespace: str   # "" when cluster-scoped
    name: str


def decode(key: bytes, value: bytes, mod_revision: int) -> dict:
    """The object as `kubectl get -o json` shows it (managedFields dropped, as kubectl does
    unless --show-managed-fields). Raises DecodeError."""
    if HAVE_DECODER:
        obj = _decode(key, value, mod_revision)
    else:
        if value.startswith(PROTOBUF_MAGIC):
            raise DecodeError(f"{key.decode(errors='replace')}: a protobuf value needs "
                              "kubefabric.k8s (the shared decoder), not on this build")
        try:
            obj = json.loads(value)
        except ValueError as err:
            raise DecodeError(f"{key.decode(errors='replace')}: not JSON: {err}") from None
        if not isinstance(obj, dict):
            raise DecodeError(f"{key.decode(errors='replace')}: not a JSON object")
        obj.setdefault("metadata", {})["resourceVersion"] = str(mod_revision)
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def is_builtin_group(group: str) -> bool:
    return group == "" or group.endswith(".k8s.io") and group not in _GROUPED_BUILTINS \
        or "." not in group


def resource_prefix(group: str, plural: str, namespace: str | None = None) -> bytes:
    """Where kube-apiserver stores the objects of a resource (in one namespace)."""
    if HAVE_DECODER:
        p = _resource_prefix(group, plural, namespace)
        return p if isinstance(p, bytes) else p.encode()
    path = _SPECIAL_PATHS.get(plural, plural) if group == "" else plural
    base = f"{REGISTRY}{path}/" if is_builtin_group(group) else f"{REGISTRY}{group}/{plural}/"
    return (base + f"{namespace}/" if namespace else base).encode()


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
# core resources kube-apiserver stores under another path (kubefabric.k8s has the full table)
_SPECIAL_PATHS = {"services": "services/specs", "nodes": "minions", "endpoints": "services/endpoints",
                  "replicationcontrollers": "controllers"}


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
