"""Label and field selectors: Kubernetes' grammar and error wording, parsed to structured
requirements (what kv-router's query API takes) and matched in Python (watch events are filtered
here; the index answers lists).

Label selectors: `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k>1`, `k<1`,
comma-separated, every term must hold. Field selectors: `f=v`, `f==v`, `f!=v`, with `\\,`, `\\=` and
`\\\\` escapes in values; a custom resource selects on metadata.name, metadata.namespace (when
namespaced) and its version's selectableFields.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from .names import LABEL_VALUE, LABEL_VALUE_MSG, qualified_name_errors

EQUALS, NOT_EQUALS, IN, NOT_IN = "Equals", "NotEquals", "In", "NotIn"
EXISTS, DOES_NOT_EXIST, GREATER_THAN, LESS_THAN = "Exists", "DoesNotExist", "GreaterThan", "LessThan"


class SelectorError(ValueError):
    """A selector that does not parse; str() is kube-apiserver's message for it."""


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector (op: Equals, NotEquals, In, NotIn, Exists, DoesNotExist,
    GreaterThan, LessThan) or of a field selector (op: Equals, NotEquals; one value)."""
    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        if self.op == EXISTS:
            return has
        if self.op == DOES_NOT_EXIST:
            return not has
        if self.op in (EQUALS, IN):
            return has and labels[self.key] in self.values
        if self.op in (NOT_EQUALS, NOT_IN):
            return not has or labels[self.key] not in self.values
        if not has:
            return False
        try:
            have, want = int(labels[self.key]), int(self.values[0])
        except ValueError:
            return False
        return have > want if self.op == GREATER_THAN else have < want


def matches_all(requirements: Iterable[Requirement], values: dict[str, str]) -> bool:
    return all(r.matches(values) for r in requirements)


# ---- label selectors (the lexer and parser of k8s.io/apimachinery/pkg/labels) ----

_SPECIAL = set("=!(),><")
_SYMBOLS = {")": ")", ",": ",", "!": "!", "==": "==", "=": "=", ">": ">", "<": "<", "!=": "!=",
            "(": "("}
_KEYWORDS = {"in", "notin"}
_OPS = {"in": IN, "=": EQUALS, "==": EQUALS, ">": GREATER_THAN, "<": LESS_THAN,
        "notin": NOT_IN, "!=": NOT_EQUALS}
_IDENT, _END, _ERROR = "ident", "end", "error"


def _lex(s: str) -> list[tuple[str, str]]:
    """(token, literal) pairs; token is a symbol, 'in'/'notin', ident, error or end."""
    out, i, n = [], 0, len(s)
    while True:
        while i < n and s[i] in " \t\r\n":
            i += 1
        if i >= n:
            out.append((_END, ""))
            return out
        if s[i] in _SPECIAL:
            buf, last = "", None
            while i < n and s[i] in _SPECIAL:
                buf += s[i]
                if buf in _SYMBOLS:
                    last = buf
                    i += 1
                elif last is not None:
                    break
                else:
                    i += 1
            if last is None:
                out.append((_ERROR, f"error expected: keyword found '{buf}'"))
            else:
                out.append((last, last))
            continue
        j = i
        while j < n and s[j] not in _SPECIAL and s[j] not in " \t\r\n":
            j += 1
        word = s[i:j]
        out.append((word if word in _KEYWORDS else _IDENT, word))
        i = j


class _LabelParser:
    def __init__(self, text: str):
        self.items = _lex(text)
        self.pos = 0

    def peek(self, values: bool = True) -> tuple[str, str]:
        tok, lit = self.items[self.pos]
        return (_IDENT if values and tok in _KEYWORDS else tok), lit

    def take(self, values: bool = True) -> tuple[str, str]:
        out = self.peek(values)
        self.pos += 1
        return out

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.peek()
            if tok == _END:
                return reqs
            if tok not in (_IDENT, "!"):
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                reqs.append(self.requirement())
            except SelectorError as err:
                raise SelectorError(f"unable to parse requirement: {err}") from None
            tok, lit = self.take()
            if tok == _END:
                return reqs
            if tok != ",":
                raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            tok, lit = self.peek()
            if tok not in (_IDENT, "!"):
                raise SelectorError(f"found '{lit}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        tok, lit = self.take()
        negated = tok == "!"
        if negated:
            tok, lit = self.take()
        if tok != _IDENT:
            raise SelectorError(f"found '{lit}', expected: identifier")
        key = lit
        _check_key(key, "key")
        if self.peek()[0] in (_END, ","):
            return Requirement(key, DOES_NOT_EXIST if negated else EXISTS)
        if negated:
            return Requirement(key, DOES_NOT_EXIST)
        tok, lit = self.take(values=False)
        if tok not in _OPS:
            raise SelectorError(f"found '{lit}', expected: in, notin, =, ==, !=, gt, lt")
        op = _OPS[tok]
        values = self.set_values() if op in (IN, NOT_IN) else self.exact_value()
        if op in (GREATER_THAN, LESS_THAN):
            for i, v in enumerate(values):
                if not re.fullmatch(r"[+-]?\d+", v):
                    raise SelectorError(f'values[{i}]: Invalid value: "{v}": for \'Gt\', \'Lt\' '
                                        "operators, the value must be an integer")
        for i, v in enumerate(values):
            _check_value(v, f"values[{i}][{key}]")
        return Requirement(key, op, tuple(values))

    def exact_value(self) -> list[str]:
        tok, _ = self.peek()
        if tok in (_END, ","):
            return [""]
        tok, lit = self.take()
        if tok == _IDENT:
            return [lit]
        raise SelectorError(f"found '{lit}', expected: identifier")

    def set_values(self) -> list[str]:
        tok, lit = self.take()
        if tok != "(":
            raise SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.peek()
        if tok == ")":
            self.take()
            return [""]
        if tok not in (_IDENT, ","):
            raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")
        values: set[str] = set()
        while True:
            tok, lit = self.take()
            if tok == _IDENT:
                values.add(lit)
                nxt, lit2 = self.peek()
                if nxt == ",":
                    continue
                if nxt == ")":
                    break
                raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            elif tok == ",":
                if not values:
                    values.add("")
                nxt, _ = self.peek()
                if nxt == ")":
                    values.add("")
                    break
                if nxt == ",":
                    values.add("")
            else:
                raise SelectorError(f"found '{lit}', expected: ',', or identifier")
        self.take()  # ")"
        if not values:
            raise SelectorError("values: Invalid value: []: for 'in', 'notin' operators, values "
                                "set can't be empty")
        return sorted(values)


def _check_key(key: str, path: str) -> None:
    if errs := qualified_name_errors(key):
        raise SelectorError(f'{path}: Invalid value: "{key}": {"; ".join(errs)}')


def _check_value(value: str, path: str) -> None:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not LABEL_VALUE.match(value):
        errs.append(LABEL_VALUE_MSG)
    if errs:
        raise SelectorError(f'{path}: Invalid value: "{value}": {"; ".join(errs)}')


def parse_labels(text: str) -> tuple[Requirement, ...]:
    """The requirements of a labelSelector, sorted by key as Kubernetes sorts them."""
    reqs = _LabelParser(text).parse()
    return tuple(sorted(reqs, key=lambda r: r.key))


# ---- field selectors (k8s.io/apimachinery/pkg/fields) ----

def _split_terms(text: str) -> list[str]:
    terms, start, escaped = [], 0, False
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _unescape(value: str) -> str:
    out, escaped = [], False
    for c in value:
        if escaped:
            if c not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c in ",=":
            raise SelectorError(f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if escaped:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def parse_fields(text: str, allowed: Iterable[str] | None = None) -> tuple[Requirement, ...]:
    """The requirements of a fieldSelector; `allowed` names the selectable fields (others are
    refused with kube-apiserver's `field label not supported: <field>`)."""
    if not text:
        return ()
    reqs = []
    for term in sorted(_split_terms(text)):
        if not term:
            continue
        for i in range(len(term)):
            op = next((o for o in ("!=", "==", "=") if term.startswith(o, i)), None)
            if op:
                field, raw = term[:i], term[i + len(op):]
                break
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        reqs.append(Requirement(field, NOT_EQUALS if op == "!=" else EQUALS, (_unescape(raw),)))
    if allowed is not None:
        allowed = set(allowed)
        for r in reqs:
            if r.key not in allowed:
                raise SelectorError(f"field label not supported: {r.key}")
    return tuple(reqs)


def selectable_fields(obj: dict[str, Any], namespaced: bool, paths: Iterable[str]) -> dict[str, str]:
    """An object's field set: metadata.name, metadata.namespace when namespaced, and each
    selectable field's value as Go's fmt.Sprint prints it ("" when absent)."""
    meta = obj.get("metadata") or {}
    out = {"metadata.name": meta.get("name", "")}
    if namespaced:
        out["metadata.namespace"] = meta.get("namespace", "")
    for path in paths:
        cur: Any = obj
        for part in path.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        out[path] = _go_print(cur)
    return out


def _go_print(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)
