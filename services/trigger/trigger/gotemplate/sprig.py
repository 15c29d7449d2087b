"""The sprig (github.com/Masterminds/sprig/v3, TxtFuncMap) functions KubeFabric supports, with
sprig's Go behaviour (checked by tests/trigger/test_gotemplate_differential.py against Go).

Deliberately absent: functions whose output changes from one call to the next (now, date*,
rand*, uuidv4, shuffle), environment and network access (env, expandenv, getHostByName),
crypto key generation; a template using one fails to parse with `function "x" not defined`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import re

from .execute import FuncError, GoFunc
from .parse import GoInt
from .values import MISSING, StrList, fmt_v, go_json, go_kind, go_quote, go_type


def strval(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    return fmt_v(v, top=False)


def _to_int64(v) -> int:
    """spf13/cast ToInt64 (errors give 0)."""
    if v is None or v is MISSING:
        return 0
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return -(1 << 63)
        return int(v)
    if isinstance(v, str):
        s = v.strip()
        if re.fullmatch(r"[+-]?\d+\.0*", s):
            s = s.split(".")[0]
        try:
            return int(s, 0) if not re.fullmatch(r"[+-]?0\d+", s) else int(s, 8)
        except ValueError:
            return 0
    return 0


def _to_float64(v) -> float:
    if v is None or v is MISSING:
        return 0.0
    if isinstance(v, (bool, int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return 0.0
    return 0.0


def _empty(v) -> bool:
    if v is None or v is MISSING:
        return True
    if isinstance(v, bool):
        return not v
    if isinstance(v, (int, float)):
        return v == 0
    if isinstance(v, (str, list, dict, bytes)):
        return len(v) == 0
    return False


def _default(d, *given):
    if not given or _empty(given[0]):
        return d
    return given[0]


def _coalesce(*vs):
    for v in vs:
        if not _empty(v):
            return v
    return None


def _ternary(vt, vf, cond):
    return vt if cond else vf


def _to_json(v) -> str:
    try:
        return go_json(v)
    except ValueError:
        return ""


def _to_pretty_json(v) -> str:
    try:
        return go_json(v, indent="  ")
    except ValueError:
        return ""


def _to_raw_json(v) -> str:
    try:
        return go_json(v, html=False)
    except ValueError as err:
        raise FuncError(str(err)) from None


def _from_json(s: str):
    try:
        return json.loads(s, parse_int=float, parse_constant=lambda c: None)
    except ValueError:
        return None


def _strslice(v) -> list[str]:
    if v is None or v is MISSING:
        return []
    if isinstance(v, list):
        return [strval(x) for x in v if x is not None]
    return [strval(v)]


def _quote(*vs) -> str:
    return " ".join(go_quote(strval(v)) for v in vs if v is not None)


def _squote(*vs) -> str:
    return " ".join(f"'{strval(v)}'" for v in vs if v is not None)


def _cat(*vs) -> str:
    return " ".join(fmt_v(v, top=False) for v in vs if v is not None)


def _title(s: str) -> str:
    out, prev = [], " "
    for ch in s:
        out.append(ch.upper() if not (prev.isalnum() or prev == "_" or prev == "'") else ch)
        prev = ch
    return "".join(out)


def _substr(start: int, end: int, s: str) -> str:
    b = s.encode()
    if start < 0:
        return b[:end].decode(errors="replace")
    if end < 0 or end > len(b):
        return b[start:].decode(errors="replace")
    if start > end:
        raise FuncError(f"slice bounds out of range [{start}:{end}]")
    return b[start:end].decode(errors="replace")


def _trunc(c: int, s: str) -> str:
    b = s.encode()
    if c < 0 and len(b) + c > 0:
        return b[len(b) + c:].decode(errors="replace")
    if c >= 0 and len(b) > c:
        return b[:c].decode(errors="replace")
    return s


def _indent(n: int, s: str) -> str:
    pad = " " * n
    return pad + s.replace("\n", "\n" + pad)


def _list_of(name: str, v) -> list:
    if isinstance(v, list):
        return v
    raise FuncError(f"Cannot find {name} on type {go_kind(v) if v is not None else 'invalid'}")


def _first(v):
    lst = _list_of("first", v)
    return lst[0] if lst else None


def _last(v):
    lst = _list_of("last", v)
    return lst[-1] if lst else None


def _rest(v):
    lst = _list_of("rest", v)
    return list(lst[1:]) if lst else None


def _initial(v):
    lst = _list_of("initial", v)
    return list(lst[:-1]) if lst else None


def _has(needle, haystack) -> bool:
    if haystack is None:
        return False
    if not isinstance(haystack, list):
        raise FuncError(f"Cannot find has on type {go_kind(haystack)}")
    return any(_deep_equal(needle, x) for x in haystack)


def _deep_equal(a, b) -> bool:
    return go_type(a) == go_type(b) and a == b


def _uniq(v):
    lst = _list_of("uniq", v)
    out = []
    for x in lst:
        if not any(_deep_equal(x, y) for y in out):
            out.append(x)
    return out


def _compact(v):
    return [x for x in _list_of("compact", v) if not _empty(x)]


def _append(lst, v):
    if lst is None:
        raise FuncError("Cannot push on type invalid")
    return [*_list_of("push", lst), v]


def _prepend(lst, v):
    if lst is None:
        raise FuncError("Cannot prepend on type invalid")
    return [v, *_list_of("prepend", lst)]


def _concat(*lists):
    out = []
    for lst in lists:
        if isinstance(lst, list):
            out.extend(lst)
        else:
            raise FuncError(f"Cannot concat type {go_kind(lst)} as list")
    return out


def _dict(*kv):
    out = {}
    for i in range(0, len(kv), 2):
        out[strval(kv[i])] = kv[i + 1] if i + 1 < len(kv) else ""
    return out


def _get(d, key):
    if d is None:
        return ""
    return d[key] if key in d else ""


def _set(d, key, value):
    d[key] = value
    return d


def _unset(d, key):
    d.pop(key, None)
    return d


def _pick(d, *keys):
    return {k: d[k] for k in keys if d and k in d}


def _omit(d, *keys):
    return {k: v for k, v in (d or {}).items() if k not in keys}


def _keys(*dicts):
    out = StrList()
    for d in dicts:
        out.extend(sorted(d or {}))
    return out


def _sort_alpha(v):
    if isinstance(v, list):
        return StrList(sorted(strval(x) for x in v))
    return StrList([strval(v)])


def _pluck(name, *dicts):
    return [d[name] for d in dicts if d and name in d]


def _split(sep: str, s: str):
    return {f"_{i}": part for i, part in enumerate(s.split(sep))} if sep else \
        {f"_{i}": ch for i, ch in enumerate(s)}


def _split_list(sep: str, s: str):
    return StrList(s.split(sep) if sep else list(s))


def _max(a, *rest):
    return max([_to_int64(a), *(_to_int64(x) for x in rest)])


def _min(a, *rest):
    return min([_to_int64(a), *(_to_int64(x) for x in rest)])


def _div(a, b):
    a, b = _to_int64(a), _to_int64(b)
    if b == 0:
        raise FuncError("runtime error: integer divide by zero")
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _mod(a, b):
    a, b = _to_int64(a), _to_int64(b)
    if b == 0:
        raise FuncError("runtime error: integer divide by zero")
    return a - b * _div(a, b)


def _mul(a, *vs):
    out = _to_int64(a)
    for v in vs:
        out *= _to_int64(v)
    return out


_B64 = re.compile(r"[^A-Za-z0-9+/=]")


def _b64dec(s: str) -> str:
    try:
        return base64.b64decode(s, validate=True).decode(errors="replace")
    except ValueError:
        bad = _B64.search(s)
        pos = bad.start() if bad else (s.find("=") if "=" in s.rstrip("=") else len(s) - len(s) % 4)
        return f"illegal base64 data at input byte {pos}"


def _sprig_slice(lst, *indexes):
    if not isinstance(lst, list):
        raise FuncError(f"list should be type of slice or array but {go_kind(lst) if lst is not None else 'invalid'}")
    ix = [_to_int64(i) for i in indexes]
    if not ix:
        return list(lst)
    if len(ix) == 1:
        if ix[0] < 0 or ix[0] > len(lst):
            raise FuncError(f"slice bounds out of range [{ix[0]}:{len(lst)}]")
        return list(lst[ix[0]:])
    if not 0 <= ix[0] <= ix[1] <= len(lst):
        raise FuncError(f"slice bounds out of range [{ix[0]}:{ix[1]}]")
    return list(lst[ix[0]:ix[1]])


def _go_regex(pattern: str):
    try:
        return re.compile(pattern)
    except re.error as err:
        raise FuncError(f"error parsing regexp: {err}") from None


def _regex_match(pattern: str, s: str) -> bool:
    try:
        return re.search(pattern, s) is not None
    except re.error:
        return False


def _regex_find(pattern: str, s: str) -> str:
    m = _go_regex(pattern).search(s)
    return m[0] if m else ""


def _regex_find_all(pattern: str, s: str, n: int):
    found = [m[0] for m in _go_regex(pattern).finditer(s)]
    return StrList(found if n < 0 else found[:n])


def _expand(repl: str, m: re.Match) -> str:
    """Go's Regexp.Expand: $1, ${1}, $name, ${name}, $$."""
    out, i = [], 0
    while i < len(repl):
        c = repl[i]
        if c != "$" or i + 1 >= len(repl):
            out.append(c)
            i += 1
            continue
        if repl[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        if repl[i + 1] == "{":
            j = repl.find("}", i + 2)
            name = repl[i + 2:j] if j > 0 else None
            nxt = j + 1
        else:
            mm = re.match(r"[A-Za-z0-9_]+", repl[i + 1:])
            name = mm[0] if mm else None
            nxt = i + 1 + (len(name) if name else 0)
        if not name or not re.fullmatch(r"[A-Za-z0-9_]+", name):
            out.append("$")
            i += 1
            continue
        try:
            g = m.group(int(name)) if name.isdigit() else m.group(name)
        except (IndexError, error_types()):
            g = ""
        out.append(g or "")
        i = nxt
    return "".join(out)


def error_types():
    return re.error


def _regex_replace_all(pattern: str, s: str, repl: str) -> str:
    return _go_regex(pattern).sub(lambda m: _expand(repl, m), s)


def _regex_replace_all_literal(pattern: str, s: str, repl: str) -> str:
    return _go_regex(pattern).sub(lambda m: repl, s)


def _regex_split(pattern: str, s: str, n: int):
    parts = _go_regex(pattern).split(s, maxsplit=0 if n < 0 else max(n - 1, 0))
    return StrList(parts if n != 0 else [])


def _kind_is(target: str, v) -> bool:
    return go_kind(v) == target


def _fail(msg: str):
    raise FuncError(msg)


def _until(n: int):
    return [GoInt(i) for i in range(n)] if n >= 0 else [GoInt(i) for i in range(0, n, -1)]


def _abbrev(width: int, s: str) -> str:
    if width < 4:
        return s
    return s if len(s) <= width else s[:width - 3] + "..."


def _nospace(s: str) -> str:
    return "".join(ch for ch in s if not ch.isspace())


SPRIG: dict[str, GoFunc] = {
    # defaults and flow
    "default": GoFunc(_default, ("any",), "any"),
    "empty": GoFunc(_empty, ("any",)),
    "coalesce": GoFunc(_coalesce, (), "any"),
    "ternary": GoFunc(_ternary, ("any", "any", "bool")),
    "fail": GoFunc(_fail, ("string",)),
    # JSON
    "toJson": GoFunc(_to_json, ("any",)),
    "toPrettyJson": GoFunc(_to_pretty_json, ("any",)),
    "toRawJson": GoFunc(_to_raw_json, ("any",)),
    "fromJson": GoFunc(_from_json, ("string",)),
    # strings
    "toString": GoFunc(strval, ("any",)),
    "quote": GoFunc(_quote, (), "any"),
    "squote": GoFunc(_squote, (), "any"),
    "cat": GoFunc(_cat, (), "any"),
    "upper": GoFunc(str.upper, ("string",)),
    "lower": GoFunc(str.lower, ("string",)),
    "title": GoFunc(_title, ("string",)),
    "trim": GoFunc(str.strip, ("string",)),
    "trimAll": GoFunc(lambda cut, s: s.strip(cut), ("string", "string")),
    "trimPrefix": GoFunc(lambda p, s: s.removeprefix(p), ("string", "string")),
    "trimSuffix": GoFunc(lambda p, s: s.removesuffix(p), ("string", "string")),
    "contains": GoFunc(lambda sub, s: sub in s, ("string", "string")),
    "hasPrefix": GoFunc(lambda p, s: s.startswith(p), ("string", "string")),
    "hasSuffix": GoFunc(lambda p, s: s.endswith(p), ("string", "string")),
    "replace": GoFunc(lambda old, new, s: s.replace(old, new), ("string", "string", "string")),
    "repeat": GoFunc(lambda n, s: s * n if n >= 0 else _fail("strings: negative Repeat count"),
                     ("int", "string")),
    "substr": GoFunc(_substr, ("int", "int", "string")),
    "trunc": GoFunc(_trunc, ("int", "string")),
    "abbrev": GoFunc(_abbrev, ("int", "string")),
    "indent": GoFunc(_indent, ("int", "string")),
    "nindent": GoFunc(lambda n, s: "\n" + _indent(n, s), ("int", "string")),
    "nospace": GoFunc(_nospace, ("string",)),
    "split": GoFunc(_split, ("string", "string")),
    "splitList": GoFunc(_split_list, ("string", "string")),
    "join": GoFunc(lambda sep, v: sep.join(_strslice(v)), ("string", "any")),
    "sortAlpha": GoFunc(_sort_alpha, ("any",)),
    # encodings
    "b64enc": GoFunc(lambda s: base64.b64encode(s.encode()).decode(), ("string",)),
    "b64dec": GoFunc(_b64dec, ("string",)),
    "sha1sum": GoFunc(lambda s: hashlib.sha1(s.encode()).hexdigest(), ("string",)),
    "sha256sum": GoFunc(lambda s: hashlib.sha256(s.encode()).hexdigest(), ("string",)),
    # lists
    "list": GoFunc(lambda *v: list(v), (), "any"),
    "slice": GoFunc(_sprig_slice, ("any",), "any"),
    "first": GoFunc(_first, ("any",)),
    "last": GoFunc(_last, ("any",)),
    "rest": GoFunc(_rest, ("any",)),
    "initial": GoFunc(_initial, ("any",)),
    "has": GoFunc(_has, ("any", "any")),
    "uniq": GoFunc(_uniq, ("any",)),
    "compact": GoFunc(_compact, ("any",)),
    "append": GoFunc(_append, ("any", "any")),
    "push": GoFunc(_append, ("any", "any")),
    "prepend": GoFunc(_prepend, ("any", "any")),
    "concat": GoFunc(_concat, (), "any"),
    "until": GoFunc(_until, ("int",)),
    # dicts
    "dict": GoFunc(_dict, (), "any"),
    "get": GoFunc(_get, ("map", "string")),
    "set": GoFunc(_set, ("map", "string", "any")),
    "unset": GoFunc(_unset, ("map", "string")),
    "hasKey": GoFunc(lambda d, k: d is not None and k in d, ("map", "string")),
    "keys": GoFunc(_keys, (), "map"),
    "pick": GoFunc(_pick, ("map",), "string"),
    "omit": GoFunc(_omit, ("map",), "string"),
    "pluck": GoFunc(_pluck, ("string",), "map"),
    # numbers
    "add": GoFunc(lambda *v: sum(_to_int64(x) for x in v), (), "any"),
    "add1": GoFunc(lambda v: _to_int64(v) + 1, ("any",)),
    "sub": GoFunc(lambda a, b: _to_int64(a) - _to_int64(b), ("any", "any")),
    "mul": GoFunc(_mul, ("any",), "any"),
    "div": GoFunc(_div, ("any", "any")),
    "mod": GoFunc(_mod, ("any", "any")),
    "max": GoFunc(_max, ("any",), "any"),
    "min": GoFunc(_min, ("any",), "any"),
    "int": GoFunc(lambda v: GoInt(_to_int64(v)), ("any",)),
    "int64": GoFunc(_to_int64, ("any",)),
    "float64": GoFunc(_to_float64, ("any",)),
    "atoi": GoFunc(lambda s: GoInt(_to_int64(s) if re.fullmatch(r"[+-]?\d+", s.strip() or "x") else 0),
                   ("string",)),
    # regular expressions (Python's re: RE2's common syntax)
    "regexMatch": GoFunc(_regex_match, ("string", "string")),
    "regexFind": GoFunc(_regex_find, ("string", "string")),
    "regexFindAll": GoFunc(_regex_find_all, ("string", "string", "int")),
    "regexReplaceAll": GoFunc(_regex_replace_all, ("string", "string", "string")),
    "regexReplaceAllLiteral": GoFunc(_regex_replace_all_literal, ("string", "string", "string")),
    "regexSplit": GoFunc(_regex_split, ("string", "string", "int")),
    # types
    "kindOf": GoFunc(go_kind, ("any",)),
    "kindIs": GoFunc(_kind_is, ("string", "any")),
    "typeOf": GoFunc(go_type, ("any",)),
    "typeIs": GoFunc(lambda t, v: go_type(v) == t, ("string", "any")),
    "deepEqual": GoFunc(_deep_equal, ("any", "any")),
}
