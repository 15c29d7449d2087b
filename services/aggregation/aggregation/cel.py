"""x-kubernetes-validations: CEL rules of a CRD schema, evaluated with cel-python (celpy) at
every schema node that declares them, `self` bound to the value there and `oldSelf` to the
previous value on updates (transition rules are skipped where there is no previous value, as
in kube-apiserver). Kubernetes' string and list library functions that CRDs use most are added.

Failures read as kube-apiserver's: `spec: Invalid value: "object": <message>`."""
from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import celpy
from celpy import celtypes

from . import fielderrors as fe
from .fielderrors import FieldError

log = logging.getLogger("kubefabric.aggregation.cel")

_REASONS = {"FieldValueInvalid": "Invalid", "FieldValueForbidden": "Forbidden",
            "FieldValueRequired": "Required", "FieldValueDuplicate": "Duplicate"}


def _functions() -> dict:
    def lower(s):
        return celtypes.StringType(str(s).lower())

    def upper(s):
        return celtypes.StringType(str(s).upper())

    def trim(s):
        return celtypes.StringType(str(s).strip())

    def split(s, sep, n=None):
        parts = str(s).split(str(sep)) if n is None else str(s).split(str(sep), int(n) - 1)
        return celtypes.ListType([celtypes.StringType(p) for p in parts])

    def join(items, sep=""):
        return celtypes.StringType(str(sep).join(str(i) for i in items))

    def replace(s, old, new, n=None):
        return celtypes.StringType(str(s).replace(str(old), str(new), -1 if n is None else int(n)))

    def index_of(s, sub):
        if isinstance(s, list):
            return celtypes.IntType(list(s).index(sub) if sub in s else -1)
        return celtypes.IntType(str(s).find(str(sub)))

    def last_index_of(s, sub):
        if isinstance(s, list):
            return celtypes.IntType(len(s) - 1 - list(reversed(s)).index(sub) if sub in s else -1)
        return celtypes.IntType(str(s).rfind(str(sub)))

    def substring(s, start, end=None):
        return celtypes.StringType(str(s)[int(start):None if end is None else int(end)])

    def is_sorted(items):
        return celtypes.BoolType(all(a <= b for a, b in zip(items, items[1:])))

    def total(items):
        out = items[0] if items else celtypes.IntType(0)
        for i in items[1:]:
            out = out + i
        return out

    return {"lowerAscii": lower, "upperAscii": upper, "trim": trim, "split": split,
            "join": join, "replace": replace, "indexOf": index_of, "lastIndexOf": last_index_of,
            "substring": substring, "isSorted": is_sorted, "sum": total,
            "min": lambda items: min(items), "max": lambda items: max(items)}


_ENV = celpy.Environment()
_FUNCTIONS = _functions()


class RuleError(Exception):
    pass


@lru_cache(maxsize=1024)
def _program(rule: str):
    try:
        return _ENV.program(_ENV.compile(rule), functions=_FUNCTIONS)
    except Exception as err:  # celpy's parse errors have no common base
        raise RuleError(f"compilation failed: {err}") from None


def _type_name(schema: dict) -> str:
    return schema.get("type") or ("object" if "properties" in schema else "")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def validate(obj: Any, old: Any, schema: dict, path: str = "") -> list[FieldError]:
    errs: list[FieldError] = []
    _walk(obj, old, schema, path, errs, old is not _MISSING)
    return errs


_MISSING = object()


def _walk(x: Any, old: Any, s: dict, path: str, errs: list[FieldError], has_old: bool) -> None:
    if x is None:
        return
    for rule in s.get("x-kubernetes-validations") or ():
        err = _check(rule, x, old if has_old else _MISSING, s, path)
        if err:
            errs.append(err)
    if isinstance(x, dict):
        props = s.get("properties") or {}
        extra = s.get("additionalProperties")
        for k, v in x.items():
            sub = props.get(k) if k in props else (extra if isinstance(extra, dict) else None)
            if sub is None:
                continue
            o = old.get(k, _MISSING) if has_old and isinstance(old, dict) else _MISSING
            _walk(v, o, sub, _join(path, k), errs, o is not _MISSING)
    elif isinstance(x, list) and isinstance(s.get("items"), dict):
        correlate = s.get("x-kubernetes-list-type") == "map"
        keys = s.get("x-kubernetes-list-map-keys") or []
        olds = {}
        if correlate and has_old and isinstance(old, list):
            olds = {tuple(str(o.get(k)) for k in keys): o for o in old if isinstance(o, dict)}
        for i, v in enumerate(x):
            o = _MISSING
            if correlate and isinstance(v, dict):
                o = olds.get(tuple(str(v.get(k)) for k in keys), _MISSING)
            _walk(v, o, s["items"], f"{path}[{i}]", errs, o is not _MISSING)


def _check(rule: dict, value: Any, old: Any, s: dict, path: str) -> FieldError | None:
    text = rule.get("rule", "")
    transition = "oldSelf" in text
    if transition and old is _MISSING and not rule.get("optionalOldSelf"):
        return None
    try:
        program = _program(text)
    except RuleError as err:
        return fe.invalid(path, _type_name(s), f"rule compile error: {err}")
    activation = {"self": celpy.json_to_cel(value)}
    if transition:
        activation["oldSelf"] = celpy.json_to_cel(None if old is _MISSING else old)
    try:
        result = program.evaluate(activation)
    except Exception as err:  # an evaluation error fails the rule, as in kube-apiserver
        result = err
    if isinstance(result, Exception):
        return fe.invalid(path, _type_name(s), f"{_eval_error(result)} evaluating rule: {text}")
    if isinstance(result, celtypes.BoolType) and bool(result):
        return None
    field_path = path
    if rule.get("fieldPath"):
        field_path = path + rule["fieldPath"] if rule["fieldPath"].startswith("[") else \
            _join(path, rule["fieldPath"].lstrip("."))
    kind = _REASONS.get(rule.get("reason", ""), "Invalid")
    # kube-apiserver leaves the value out of CEL failures
    return fe.FieldError(kind, field_path, detail=_message(rule))


def _message(rule: dict) -> str:
    if rule.get("message"):
        return rule["message"]
    text = rule.get("rule", "")
    return f"failed rule: {' '.join(text.split())}"


def _eval_error(err: Exception) -> str:
    args = getattr(err, "args", ())
    return str(args[0]) if args else str(err)
