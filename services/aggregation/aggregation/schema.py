"""A CRD's structural schema applied to objects as kube-apiserver applies it: pruning of unknown
fields, defaulting, and OpenAPI v3 validation with kube-openapi's wording
(`spec.replicas in body should be greater than or equal to 0`), plus the list-type invariants
(x-kubernetes-list-type set and map)."""
from __future__ import annotations

import copy
import re
from functools import lru_cache
from typing import Any

from . import fielderrors as fe
from .fielderrors import FieldError

_META_FIELDS = ("apiVersion", "kind", "metadata")
_OBJECT_META = {"name", "generateName", "namespace", "selfLink", "uid", "resourceVersion",
                "generation", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                "labels", "annotations", "ownerReferences", "finalizers", "managedFields"}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ---- pruning ----

def prune(obj: Any, schema: dict, root: bool = True) -> list[str]:
    """Drop fields the schema does not declare (unless x-kubernetes-preserve-unknown-fields);
    the dropped paths, sorted (fieldValidation=Strict refuses them, Warn reports them)."""
    unknown: list[str] = []
    if root and isinstance(obj, dict):
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            for k in [k for k in meta if k not in _OBJECT_META]:
                unknown.append(f"metadata.{k}")
                del meta[k]
    _prune(obj, schema, "", root, unknown)
    return sorted(unknown)


def _prune(x: Any, s: dict | None, path: str, root: bool, unknown: list[str]) -> None:
    if s is not None and s.get("x-kubernetes-preserve-unknown-fields"):
        _prune_known(x, s, path, unknown)
        return
    if isinstance(x, dict):
        if s is None:
            for k in list(x):
                unknown.append(_join(path, k))
                del x[k]
            return
        embedded = s.get("x-kubernetes-embedded-resource")
        props = s.get("properties") or {}
        extra = s.get("additionalProperties")
        for k in list(x):
            if (embedded or root) and k in _META_FIELDS:
                continue
            if k in props:
                _prune(x[k], props[k], _join(path, k), False, unknown)
            elif isinstance(extra, dict):
                _prune(x[k], extra, _join(path, k), False, unknown)
            elif extra is True:
                continue
            else:
                unknown.append(_join(path, k))
                del x[k]
    elif isinstance(x, list):
        items = s.get("items") if s is not None else None
        for i, v in enumerate(x):
            _prune(v, items, f"{path}[{i}]", False, unknown)


def _prune_known(x: Any, s: dict, path: str, unknown: list[str]) -> None:
    if isinstance(x, dict):
        props = s.get("properties") or {}
        extra = s.get("additionalProperties")
        for k, v in x.items():
            if s.get("x-kubernetes-embedded-resource") and k in _META_FIELDS:
                continue
            if k in props:
                _prune(v, props[k], _join(path, k), False, unknown)
            elif isinstance(extra, dict):
                _prune(v, extra, _join(path, k), False, unknown)
    elif isinstance(x, list) and isinstance(s.get("items"), dict):
        for i, v in enumerate(x):
            _prune(v, s["items"], f"{path}[{i}]", False, unknown)


# ---- defaulting ----

def default(x: Any, s: dict | None) -> None:
    """Set every missing (or null, when not nullable) property that has a default."""
    if s is None:
        return
    if isinstance(x, dict):
        props = s.get("properties") or {}
        for k, prop in props.items():
            if "default" in prop and (k not in x or (x[k] is None and not prop.get("nullable"))):
                x[k] = copy.deepcopy(prop["default"])
        for k, v in x.items():
            if k in props:
                default(v, props[k])
            elif isinstance(s.get("additionalProperties"), dict):
                default(v, s["additionalProperties"])
    elif isinstance(x, list) and isinstance(s.get("items"), dict):
        for v in x:
            default(v, s["items"])


# ---- validation ----

def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "integer" if v.is_integer() else "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _num(v: float) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


@lru_cache(maxsize=512)
def _pattern(expr: str) -> re.Pattern:
    return re.compile(expr)


def validate(x: Any, s: dict, path: str = "", root: bool = True) -> list[FieldError]:
    errs: list[FieldError] = []
    _validate(x, s, path, root, errs)
    return errs


def _type_ok(v: Any, want: str) -> bool:
    have = _json_type(v)
    return have == want or (want == "number" and have == "integer")


def _validate(x: Any, s: dict, path: str, root: bool, errs: list[FieldError]) -> None:
    name = path or "."
    if x is None:
        if not s.get("nullable") and s.get("type"):
            errs.append(FieldError("TypeInvalid", path, "null",
                                   f'{name} in body must be of type {s["type"]}: "null"'))
        return
    want = s.get("type")
    if s.get("x-kubernetes-int-or-string"):
        if _json_type(x) not in ("integer", "string"):
            errs.append(FieldError("TypeInvalid", path, x, f'{name} in body must be of type '
                                   f'integer,string: "{_json_type(x)}"'))
            return
    elif want and not _type_ok(x, want):
        errs.append(FieldError("TypeInvalid", path, x,
                               f'{name} in body must be of type {want}: "{_json_type(x)}"'))
        return
    if "enum" in s and x not in s["enum"]:
        allowed = [v if isinstance(v, str) else fe.go_value(v) for v in s["enum"]]
        errs.append(fe.not_supported(path, x, allowed))
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        _numbers(x, s, name, path, errs)
    if isinstance(x, str):
        if "maxLength" in s and len(x) > s["maxLength"]:
            errs.append(fe.too_long(path, s["maxLength"]))
        if "minLength" in s and len(x) < s["minLength"]:
            errs.append(fe.invalid(path, x, f"{name} in body should be at least {s['minLength']} chars long"))
        if "pattern" in s and not _pattern(s["pattern"]).search(x):
            errs.append(fe.invalid(path, x, f"{name} in body should match '{s['pattern']}'"))
    if isinstance(x, list):
        _array(x, s, name, path, errs)
    if isinstance(x, dict):
        _object(x, s, name, path, root, errs)
    for sub in s.get("allOf") or ():
        _validate(x, {**sub, "type": sub.get("type")}, path, False, errs)
    if s.get("anyOf"):
        if not any(not validate(x, sub, path, False) for sub in s["anyOf"]):
            errs.append(fe.invalid(path, x, f"{name} in body must validate at least one schema (anyOf)"))
    if s.get("oneOf"):
        good = sum(1 for sub in s["oneOf"] if not validate(x, sub, path, False))
        if good != 1:
            errs.append(fe.invalid(path, x, f"{name} in body must validate one and only one schema (oneOf)"))
    if isinstance(s.get("not"), dict) and not validate(x, s["not"], path, False):
        errs.append(fe.invalid(path, x, f"{name} in body should not validate the schema (not)"))


def _numbers(x: float, s: dict, name: str, path: str, errs: list[FieldError]) -> None:
    if "maximum" in s:
        if s.get("exclusiveMaximum") and x >= s["maximum"]:
            errs.append(fe.invalid(path, x, f"{name} in body should be less than {_num(s['maximum'])}"))
        elif x > s["maximum"]:
            errs.append(fe.invalid(path, x, f"{name} in body should be less than or equal to {_num(s['maximum'])}"))
    if "minimum" in s:
        if s.get("exclusiveMinimum") and x <= s["minimum"]:
            errs.append(fe.invalid(path, x, f"{name} in body should be greater than {_num(s['minimum'])}"))
        elif x < s["minimum"]:
            errs.append(fe.invalid(path, x, f"{name} in body should be greater than or equal to {_num(s['minimum'])}"))
    if s.get("multipleOf") and (x / s["multipleOf"]) % 1 != 0:
        errs.append(fe.invalid(path, x, f"{name} in body should be a multiple of {_num(s['multipleOf'])}"))


def _array(x: list, s: dict, name: str, path: str, errs: list[FieldError]) -> None:
    if "maxItems" in s and len(x) > s["maxItems"]:
        errs.append(fe.too_many(path, len(x), s["maxItems"]))
    if "minItems" in s and len(x) < s["minItems"]:
        errs.append(fe.invalid(path, len(x), f"{name} in body should have at least {s['minItems']} items"))
    if s.get("uniqueItems") and len({_freeze(v) for v in x}) != len(x):
        errs.append(fe.invalid(path, x, f"{name} in body shouldn't contain duplicates"))
    items = s.get("items")
    if isinstance(items, dict):
        for i, v in enumerate(x):
            _validate(v, items, f"{path}[{i}]", False, errs)
    list_type = s.get("x-kubernetes-list-type")
    if list_type == "set":
        seen: set = set()
        for i, v in enumerate(x):
            f = _freeze(v)
            if f in seen:
                errs.append(fe.duplicate(f"{path}[{i}]", v))
            seen.add(f)
    elif list_type == "map":
        keys = s.get("x-kubernetes-list-map-keys") or []
        seen_keys: set = set()
        for i, v in enumerate(x):
            if not isinstance(v, dict):
                continue
            k = tuple(_freeze(v.get(key)) for key in keys)
            if k in seen_keys:
                dup = {key: v.get(key) for key in keys if key in v}
                errs.append(fe.duplicate(f"{path}[{i}]", dup))
            seen_keys.add(k)


def _object(x: dict, s: dict, name: str, path: str, root: bool, errs: list[FieldError]) -> None:
    for req in s.get("required") or ():
        if req not in x:
            errs.append(fe.required(_join(path, req)))
    if "maxProperties" in s and len(x) > s["maxProperties"]:
        errs.append(fe.too_many(path, len(x), s["maxProperties"]))
    if "minProperties" in s and len(x) < s["minProperties"]:
        errs.append(fe.invalid(path, len(x), f"{name} in body should have at least {s['minProperties']} properties"))
    props = s.get("properties") or {}
    extra = s.get("additionalProperties")
    for k, v in x.items():
        if (root or s.get("x-kubernetes-embedded-resource")) and k in _META_FIELDS:
            continue
        if k in props:
            _validate(v, props[k], _join(path, k), False, errs)
        elif isinstance(extra, dict):
            _validate(v, extra, _join(path, k), False, errs)


def _freeze(v: Any):
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return (type(v).__name__ if isinstance(v, bool) else "v", v)
