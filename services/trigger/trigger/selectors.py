"""Kubernetes label and field selectors (labelSelectors / fieldSelectors of an HTTPTrigger),
matched against decoded objects. Every entry of the list must match (they are ANDed, as
HariKube joins them with ',').

Label selector syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`.
Field selector syntax: `path=value`, `path==value`, `path!=value`, where path is a dotted field
(metadata.name, metadata.namespace, status.phase, spec.nodeName ...); a missing field is "".
"""
from __future__ import annotations

import re
from dataclasses import dataclass


class SelectorError(ValueError):
    pass


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str          # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict) -> bool:
        present = self.key in labels
        v = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op == "=":
            return present and v == self.values[0]
        if self.op == "!=":
            return not present or v != self.values[0]
        if self.op == "in":
            return present and v in self.values
        return not present or v not in self.values


_LABEL_KEY = r"(?:[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?"
_SET = re.compile(rf"^\s*({_LABEL_KEY})\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ = re.compile(rf"^\s*({_LABEL_KEY})\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)\s*$")
_EXISTS = re.compile(rf"^\s*(!?)\s*({_LABEL_KEY})\s*$")


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [p for p in out if p.strip()]


def parse_labels(selectors: tuple[str, ...] | list[str]) -> list[Requirement]:
    reqs = []
    for sel in selectors:
        for part in _split_top(sel):
            if m := _SET.match(part):
                values = tuple(v.strip() for v in m[4].split(",") if v.strip())
                reqs.append(Requirement(m[1], m[3], values))
            elif m := _EQ.match(part):
                reqs.append(Requirement(m[1], "!=" if m[4] == "!=" else "=", (m[5],)))
            elif m := _EXISTS.match(part):
                reqs.append(Requirement(m[2], "!" if m[1] else "exists"))
            else:
                raise SelectorError(f"invalid label selector {part.strip()!r}")
    return reqs


@dataclass(frozen=True)
class FieldRequirement:
    path: tuple[str, ...]
    negate: bool
    value: str

    def matches(self, obj: dict) -> bool:
        v = obj
        for p in self.path:
            v = v.get(p) if isinstance(v, dict) else None
        s = "" if v is None else ("true" if v is True else "false" if v is False else str(v))
        return (s != self.value) if self.negate else (s == self.value)


_FIELD = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$")


def parse_fields(selectors: tuple[str, ...] | list[str]) -> list[FieldRequirement]:
    reqs = []
    for sel in selectors:
        for part in _split_top(sel):
            m = _FIELD.match(part)
            if not m:
                raise SelectorError(f"invalid field selector {part.strip()!r}")
            reqs.append(FieldRequirement(tuple(m[1].split(".")), m[2] == "!=", m[3]))
    return reqs


class Selector:
    def __init__(self, labels: tuple[str, ...] = (), fields: tuple[str, ...] = ()):
        self.labels = parse_labels(labels)
        self.fields = parse_fields(fields)

    def matches(self, obj: dict) -> bool:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        return all(r.matches(labels) for r in self.labels) and all(f.matches(obj) for f in self.fields)
