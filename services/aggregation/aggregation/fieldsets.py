"""Field sets as server-side apply tracks them (structured-merge-diff's model), over a CRD's
schema.

A field set is a Python set of paths; a path is a tuple of elements written as in managedFields'
FieldsV1: `f:<field>`, `k:{"key":"value"}` (an item of a list-type map), `v:<json>` (an item of
a list-type set). Every node of an object is in its set except the root; nothing below an atomic
node (atomic list, atomic map, a scalar) is. FieldsV1 nests the paths, marking a node that is
itself a member and has children with ".".
"""
from __future__ import annotations

import json
from typing import Any, Iterable

Path = tuple[str, ...]

# never owned by anyone (the field manager strips them, as kube-apiserver's does)
STRIPPED: frozenset[Path] = frozenset({
    ("f:apiVersion",), ("f:kind",), ("f:metadata",), ("f:metadata", "f:name"),
    ("f:metadata", "f:namespace"), ("f:metadata", "f:creationTimestamp"),
    ("f:metadata", "f:selfLink"), ("f:metadata", "f:uid"), ("f:metadata", "f:clusterName"),
    ("f:metadata", "f:generation"), ("f:metadata", "f:managedFields"),
    ("f:metadata", "f:resourceVersion")})

_METADATA_SCHEMA = {"type": "object", "properties": {
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    "finalizers": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
    "ownerReferences": {"type": "array", "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["uid"],
                        "items": {"type": "object", "x-kubernetes-map-type": "atomic"}},
}}


def _json(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def key_element(item: dict, keys: list[str]) -> str:
    return "k:" + _json({k: item.get(k) for k in sorted(keys) if k in item})


def _child_schema(s: dict | None, name: str) -> dict | None:
    if s is None:
        return None
    props = s.get("properties") or {}
    if name in props:
        return props[name]
    extra = s.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def _atomic(s: dict | None, value: Any) -> bool:
    if isinstance(value, list):
        return s is None or s.get("x-kubernetes-list-type", "atomic") == "atomic"
    if isinstance(value, dict):
        return s is not None and s.get("x-kubernetes-map-type") == "atomic"
    return True


def root_schema(schema: dict) -> dict:
    """The CRD schema with ObjectMeta's shape for metadata (labels and annotations granular,
    finalizers a set, ownerReferences a map keyed by uid)."""
    props = dict(schema.get("properties") or {})
    props["metadata"] = _METADATA_SCHEMA
    return {**schema, "properties": props}


def paths(obj: Any, schema: dict | None, prefix: Path = ()) -> dict[Path, Any]:
    """Every path of the object (root excluded) with the value found there."""
    out: dict[Path, Any] = {}
    _walk(obj, schema, prefix, out)
    return out


def _walk(value: Any, s: dict | None, path: Path, out: dict[Path, Any]) -> None:
    if path:
        out[path] = value
        if _atomic(s, value):
            return
    if isinstance(value, dict):
        for k, v in value.items():
            _walk(v, _child_schema(s, k), path + (f"f:{k}",), out)
    elif isinstance(value, list):
        items = s.get("items") if s else None
        if s and s.get("x-kubernetes-list-type") == "map":
            keys = s.get("x-kubernetes-list-map-keys") or []
            for item in value:
                if isinstance(item, dict):
                    _walk(item, items, path + (key_element(item, keys),), out)
        else:
            for item in value:
                _walk(item, items, path + ("v:" + _json(item),), out)


def field_set(obj: Any, schema: dict | None) -> set[Path]:
    return set(paths(obj, schema)) - STRIPPED


def compare(old: dict[Path, Any], new: dict[Path, Any]) -> tuple[set[Path], set[Path], set[Path]]:
    """(added, removed, modified): modified are paths in both whose values differ where the
    value is a leaf (a scalar, an atomic node) or changed kind."""
    added = set(new) - set(old)
    removed = set(old) - set(new)
    modified = set()
    for p in set(old) & set(new):
        a, b = old[p], new[p]
        if isinstance(a, dict) and isinstance(b, dict):
            continue
        if isinstance(a, list) and isinstance(b, list) and not _leafy(a, b, old, new, p):
            continue
        if a != b or type(a) is not type(b):
            modified.add(p)
    return added - STRIPPED, removed - STRIPPED, modified - STRIPPED


def _leafy(a, b, old, new, p) -> bool:
    """A list is a leaf when the walk did not descend into it (atomic)."""
    return not any(len(q) == len(p) + 1 and q[:len(p)] == p for q in new) and \
        not any(len(q) == len(p) + 1 and q[:len(p)] == p for q in old)


def exclude(fields: Iterable[Path], prefixes: Iterable[Path]) -> set[Path]:
    """The fields without the given ones and everything below them."""
    pre = list(prefixes)
    return {f for f in fields if not any(f[:len(x)] == x for x in pre)}


def to_fields_v1(fields: set[Path]) -> dict:
    tree: dict = {}
    for p in sorted(fields, key=len):
        node = tree
        for el in p:
            node = node.setdefault(el, {})
    # a member with children is marked "."
    for p in fields:
        node = tree
        for el in p:
            node = node[el]
        if node and "." not in node:
            node["."] = {}
    return _sorted(tree)


def _sorted(tree: dict) -> dict:
    keys = sorted(tree, key=lambda k: (k != ".", k))
    return {k: _sorted(tree[k]) for k in keys}


def from_fields_v1(tree: dict, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for k, v in (tree or {}).items():
        if k == ".":
            if prefix:
                out.add(prefix)
            continue
        p = prefix + (k,)
        if not v:
            out.add(p)
        else:
            out |= from_fields_v1(v, p)
    return out


def describe(path: Path) -> str:
    """A path as kube-apiserver names it in apply conflicts: .spec.color,
    .spec.conditions[type="Ready"], .spec.tags[="a"]."""
    out = ""
    for el in path:
        kind, _, rest = el.partition(":")
        if kind == "f":
            out += f".{rest}"
        elif kind == "k":
            keys = json.loads(rest)
            out += "[" + ",".join(f"{k}={_json(v)}" for k, v in keys.items()) + "]"
        elif kind == "v":
            out += f"[={rest}]"
        else:
            out += f"[{rest}]"
    return out
