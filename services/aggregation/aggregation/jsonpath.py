"""The part of Kubernetes' JSONPath that printer columns and selectable fields use:
`.a.b`, `['a.b']`, `[0]`, `[-1]`, `[*]`, `..name` and filters `[?(@.type=="Ready")]` (==, !=,
<, <=, >, >= against a string or number, or `[?(@.x)]` for presence). Missing keys give no
result, as with AllowMissingKeys."""
from __future__ import annotations

import json
import re
from typing import Any

_TOKEN = re.compile(r"""
    \.\.(?P<recurse>[A-Za-z0-9_\-/]+|\*)           # ..name
  | \.(?P<field>[A-Za-z0-9_\-/]+|\*)                # .name, .*
  | \[\s*'(?P<quoted>[^']*)'\s*\]                   # ['name']
  | \[\s*"(?P<dquoted>[^"]*)"\s*\]                  # ["name"]
  | \[\s*(?P<index>-?\d+)\s*\]                      # [0]
  | \[\s*\*\s*\]                                    # [*]
  | \[\?\(\s*@(?P<fpath>(?:\.[A-Za-z0-9_\-/]+)+)\s*(?:(?P<fop>==|!=|<=|>=|<|>)\s*(?P<fval>'[^']*'|"[^"]*"|-?\d+(?:\.\d+)?|true|false))?\s*\)\]
""", re.VERBOSE)


class JSONPathError(ValueError):
    pass


def compile_path(expr: str) -> list[tuple]:
    """Steps of a path like `.status.conditions[?(@.type=="Ready")].status` (braces optional)."""
    text = expr.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text.startswith("$"):
        text = text[1:]
    steps: list[tuple] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise JSONPathError(f"unrecognized JSONPath {expr!r} at {text[pos:]!r}")
        pos = m.end()
        if m["recurse"]:
            steps.append(("recurse", m["recurse"]))
        elif m["field"]:
            steps.append(("all",) if m["field"] == "*" else ("field", m["field"]))
        elif m["quoted"] is not None or m["dquoted"] is not None:
            steps.append(("field", m["quoted"] if m["quoted"] is not None else m["dquoted"]))
        elif m["index"] is not None:
            steps.append(("index", int(m["index"])))
        elif m["fpath"]:
            value = m["fval"]
            if value is not None:
                value = value[1:-1] if value[0] in "'\"" else json.loads(value)
            steps.append(("filter", m["fpath"][1:].split("."), m["fop"], value))
        else:
            steps.append(("all",))
    return steps


def _children(value: Any) -> list:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return list(value)
    return []


def _walk(value: Any, name: str) -> list:
    out = []
    if isinstance(value, dict):
        if name == "*":
            out.extend(value.values())
        elif name in value:
            out.append(value[name])
    for child in _children(value):
        out.extend(_walk(child, name))
    return out


def _lookup(value: Any, path: list[str]) -> tuple[bool, Any]:
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _compare(have: Any, op: str, want: Any) -> bool:
    if op in ("==", "!="):
        equal = have == want and type(have) is not bool or have is want
        return equal if op == "==" else not equal
    if isinstance(have, bool) or not isinstance(have, (int, float)) or not isinstance(want, (int, float)):
        return False
    return {"<": have < want, "<=": have <= want, ">": have > want, ">=": have >= want}[op]


def find(steps: list[tuple], obj: Any) -> list:
    current = [obj]
    for step in steps:
        nxt: list = []
        for value in current:
            kind = step[0]
            if kind == "field":
                if isinstance(value, dict) and step[1] in value:
                    nxt.append(value[step[1]])
            elif kind == "index":
                if isinstance(value, list) and -len(value) <= step[1] < len(value):
                    nxt.append(value[step[1]])
            elif kind == "all":
                nxt.extend(_children(value))
            elif kind == "recurse":
                nxt.extend(_walk(value, step[1]))
            elif kind == "filter":
                for item in _children(value):
                    found, have = _lookup(item, step[1])
                    if found and (step[2] is None or _compare(have, step[2], step[3])):
                        nxt.append(item)
        current = nxt
    return current


def print_value(value: Any) -> str:
    """A value as kubectl's JSONPath printer writes it: JSON for maps and lists, Go's fmt.Print
    for scalars."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_float(value)
    return str(value)


def format_float(value: float) -> str:
    """Go's %v for a float64: the shortest repr, exponent form from 1e21 on."""
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mant, exp = text.split("e")
        sign = exp[0] if exp[0] in "+-" else "+"
        digits = exp.lstrip("+-").rjust(2, "0")
        return f"{mant}e{sign}{digits}"
    return text
