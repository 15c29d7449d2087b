"""text/template's predefined functions (and, or, not, len, index, slice, print, printf,
println, html, js, urlquery, eq, ne, lt, le, gt, ge) and fmt's Sprintf for printf."""
from __future__ import annotations

import re
import urllib.parse

from .execute import FuncError, GoFunc
from .parse import GoInt
from .values import MISSING, basic_kind, fmt_v, format_float, go_quote, go_type, truth


def _unwrap(v):
    return MISSING if v is None else v


def _not(v):
    return not truth(v)


def _len(v):
    v = _unwrap(v)
    if isinstance(v, (str, list, dict, bytes)):
        return GoInt(len(v.encode()) if isinstance(v, str) else len(v))
    if v is MISSING:
        raise FuncError("len of nil pointer")
    raise FuncError(f"len of type {go_type(v)}")


def _given(value, nil: str):
    """`value` unwrapped; FuncError(nil) for an untyped nil (no value at all)."""
    value = _unwrap(value)
    if value is MISSING:
        raise FuncError(nil)
    return value


def _index_arg(i, n: int) -> int:
    i = _given(i, "cannot index slice/array with nil")
    if isinstance(i, bool) or not isinstance(i, int):
        raise FuncError(f"cannot index slice/array with type {go_type(i)}")
    if i < 0 or i >= n:
        raise FuncError(f"index out of range: {i}")
    return i


def _index(item, *indexes):
    item = _given(item, "index of untyped nil")
    for ix in indexes:
        if item is None or item is MISSING:
            raise FuncError("index of nil pointer")
        if isinstance(item, str):
            b = item.encode()
            item = GoInt(b[_index_arg(ix, len(b))])   # a byte (uint8), printed as a number
        elif isinstance(item, (list, bytes)):
            item = item[_index_arg(ix, len(item))]
        elif isinstance(item, dict):
            ix = _given(ix, "value is nil; should be of type string")
            if not isinstance(ix, str):
                raise FuncError(f"value has type {go_type(ix)}; should be string")
            item = item.get(ix)            # a missing key: the element type's zero value (nil)
        else:
            raise FuncError(f"can't index item of type {go_type(item)}")
    return item


def _slice(item, *indexes):
    item = _given(item, "slice of untyped nil")
    if len(indexes) > 3:
        raise FuncError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise FuncError("cannot 3-index slice a string")
        seq, n = item.encode(), len(item.encode())
    elif isinstance(item, list):
        seq, n = item, len(item)
    else:
        raise FuncError(f"can't slice item of type {go_type(item)}")
    idx = [0, n]
    for i, x in enumerate(indexes):
        x = _unwrap(x)
        if isinstance(x, bool) or not isinstance(x, int):
            raise FuncError(f"cannot index slice/array with type {go_type(x)}")
        if x < 0 or x > n:
            raise FuncError(f"index out of range: {x}")
        if i < 2:
            idx[i] = x
    if idx[0] > idx[1]:
        raise FuncError(f"invalid slice index: {idx[0]} > {idx[1]}")
    out = seq[idx[0]:idx[1]]
    return out.decode(errors="replace") if isinstance(out, bytes) else out


# ---- comparisons (Go 1.18+ semantics) ----

def _eq(a, *bs):
    a = _unwrap(a)
    if not bs:
        raise FuncError("missing argument for comparison")
    ka = basic_kind(a)
    for b in bs:
        b = _unwrap(b)
        kb = basic_kind(b)
        if ka != kb:
            if a is not MISSING and b is not MISSING:
                raise FuncError("incompatible types for comparison")
            continue
        if ka == "invalid":
            if a is MISSING and b is MISSING:
                return True
            if a is MISSING or b is MISSING:
                continue
            if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
                raise FuncError(f"non-comparable type {fmt_v(b)}: {go_type(b)}")
            if a == b:
                return True
            continue
        if a == b:
            return True
    return False


def _ne(a, b):
    return not _eq(a, b)


def _lt(a, b):
    a, b = _unwrap(a), _unwrap(b)
    ka, kb = basic_kind(a), basic_kind(b)
    if ka == "invalid" or kb == "invalid":
        raise FuncError("invalid type for comparison")
    if ka != kb:
        raise FuncError("incompatible types for comparison")
    if ka == "bool":
        raise FuncError("invalid type for comparison")
    return a < b


def _le(a, b):
    return _lt(a, b) or _eq(a, b)


def _gt(a, b):
    return not _le(a, b)


def _ge(a, b):
    return not _lt(a, b)


# ---- printing ----

def _sprint(*args) -> str:
    """fmt.Sprint: a space between operands when neither is a string."""
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(fmt_v(a, top=False))
    return "".join(out)


def _sprintln(*args) -> str:
    return " ".join(fmt_v(a, top=False) for a in args) + "\n"


_VERB = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d+)?)?([a-zA-Z%])")


def sprintf(fmt: str, *args) -> str:
    """fmt.Sprintf for the verbs templates use: %v %s %d %q %t %f %e %g %x %X %o %b %c %T %%,
    with flags, width and precision."""
    out, pos, ai = [], 0, 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width, prec, verb = m[1], m[2], m[3], m[4]
        if verb == "%":
            out.append("%")
            continue
        if width == "*":
            width, ai = (str(args[ai]) if ai < len(args) else None), ai + 1
        if prec == "*":
            prec, ai = (str(args[ai]) if ai < len(args) else None), ai + 1
        if ai >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        a = args[ai]
        ai += 1
        s = _format_one(a, verb, flags, None if prec is None else int(prec or 0),
                        m[3] is not None or "." in m[0])
        w = int(width) if width and width.isdigit() else 0
        if len(s) < w:
            if "-" in flags:
                s = s.ljust(w)
            elif "0" in flags and verb in "dfegxXob" and not isinstance(a, str):
                sign = s[0] if s[:1] in "+-" else ""
                s = sign + s[len(sign):].rjust(w - len(sign), "0")
            else:
                s = s.rjust(w)
        out.append(s)
    out.append(fmt[pos:])
    if ai < len(args):
        extra = ", ".join(f"{go_type(a)}={fmt_v(a, top=False)}" for a in args[ai:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _bad(verb, a) -> str:
    if a is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({go_type(a)}={fmt_v(a, top=False)})"


def _format_one(a, verb, flags, prec, has_prec) -> str:
    if verb == "T":
        return go_type(a)
    if verb == "v":
        if isinstance(a, float) and prec is not None:
            return format_float(a, "g", prec) if False else _g(a, prec)
        s = fmt_v(a, top=False)
        return ("+" + s) if "+" in flags and isinstance(a, (int, float)) and not isinstance(a, bool) \
            and not s.startswith("-") else s
    if verb == "s":
        if isinstance(a, (str, list, dict)):
            s = fmt_v(a, top=False) if not isinstance(a, str) else a
            return s[:prec] if prec is not None else s
        return _bad(verb, a)
    if verb == "q":
        if isinstance(a, str):
            return go_quote(a)
        if isinstance(a, int) and not isinstance(a, bool):
            return "'" + chr(a) + "'"
        return _bad(verb, a)
    if verb == "t":
        return ("true" if a else "false") if isinstance(a, bool) else _bad(verb, a)
    if verb in "dxXobc":
        if isinstance(a, bool) or not isinstance(a, int):
            if verb in "xX" and isinstance(a, str):
                h = a.encode().hex()
                return h.upper() if verb == "X" else h
            return _bad(verb, a)
        if verb == "c":
            return chr(a)
        base = {"d": "d", "x": "x", "X": "X", "o": "o", "b": "b"}[verb]
        s = format(abs(a), base)
        if "#" in flags and verb in "xX":
            s = ("0x" if verb == "x" else "0X") + s
        sign = "-" if a < 0 else ("+" if "+" in flags else (" " if " " in flags else ""))
        return sign + s
    if verb in "feEgG":
        if isinstance(a, bool) or not isinstance(a, (int, float)) or isinstance(a, int):
            return _bad(verb, a)
        if verb == "f":
            s = format_float(a, "f", 6 if prec is None else prec)
        elif verb in "eE":
            s = format_float(a, "e", 6 if prec is None else prec)
            s = s.upper() if verb == "E" else s
        else:
            s = _g(a, prec)
        return ("+" + s) if "+" in flags and not s.startswith("-") else s
    return f"%!{verb}({go_type(a)}={fmt_v(a, top=False)})"


def _g(a: float, prec) -> str:
    if prec is None:
        return fmt_v(a)
    s = f"{a:.{max(prec, 1)}g}"
    if "e" in s:
        mant, ex = s.split("e")
        s = mant + "e" + ex[0] + ex[1:].lstrip("0").rjust(2, "0")
    return s


# ---- escapers ----

def _eval_args(args) -> str:
    """text/template's evalArgs: nil operands print as <no value>."""
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return _sprint(*(MISSING if a is None else a for a in args)).replace("<nil>", "<no value>") \
        if any(a is None for a in args) else _sprint(*args)


def _html(*args) -> str:
    s = _eval_args(args)
    return (s.replace("&", "&amp;").replace("'", "&#39;").replace("<", "&lt;")
            .replace(">", "&gt;").replace('"', "&#34;").replace("\0", "\ufffd"))


# text/template's JSEscape: these by name, other control and unprintable characters as \\uXXXX
_JS_ESCAPES = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026",
               "=": "\\u003D"}


def _js(*args) -> str:
    out = []
    for ch in _eval_args(args):
        if ch in _JS_ESCAPES:
            out.append(_JS_ESCAPES[ch])
        elif ord(ch) < 0x20 or not ch.isprintable():
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def _urlquery(*args) -> str:
    return urllib.parse.quote_plus(_eval_args(args), safe="-_.~")


BUILTINS: dict[str, GoFunc] = {
    "and": GoFunc(None, ("value",), "value", lazy=True),
    "or": GoFunc(None, ("value",), "value", lazy=True),
    "not": GoFunc(_not, ("value",)),
    "len": GoFunc(_len, ("value",)),
    "index": GoFunc(_index, ("value",), "value"),
    "slice": GoFunc(_slice, ("value",), "value"),
    "print": GoFunc(_sprint, (), "any"),
    "println": GoFunc(_sprintln, (), "any"),
    "printf": GoFunc(sprintf, ("string",), "any"),
    "html": GoFunc(_html, (), "any"),
    "js": GoFunc(_js, (), "any"),
    "urlquery": GoFunc(_urlquery, (), "any"),
    "eq": GoFunc(_eq, ("value",), "value"),
    "ne": GoFunc(_ne, ("value", "value")),
    "lt": GoFunc(_lt, ("value", "value")),
    "le": GoFunc(_le, ("value", "value")),
    "gt": GoFunc(_gt, ("value", "value")),
    "ge": GoFunc(_ge, ("value", "value")),
}
