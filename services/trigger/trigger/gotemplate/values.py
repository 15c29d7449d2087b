"""Go's view of template data: types, truth, fmt's %v, strconv.Quote and encoding/json.

Data is what JSON decoding gives Kubernetes' unstructured objects: dict (map[string]interface
{}), list ([]interface {}), str, int (int64), float (float64), bool, None (a nil interface).
MISSING is Go's invalid reflect.Value (a map key that is not there). GoInt is a template's own
integer constant (Go's `int`). StrList is a []string some functions return.
"""
from __future__ import annotations

import base64
import math
from collections.abc import Callable
from decimal import Decimal

from .parse import GoInt


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING = _Missing()


class StrList(list):
    """A Go []string."""


# Python type -> (fmt's %T, reflect.Kind's name), tried in this order (bool before the ints,
# StrList before list: the first isinstance match wins)
_GO_TYPES = ((bool, "bool", "bool"), (GoInt, "int", "int"), (int, "int64", "int64"),
             (float, "float64", "float64"), (str, "string", "string"),
             (StrList, "[]string", "slice"), (list, "[]interface {}", "slice"),
             (dict, "map[string]interface {}", "map"), (bytes, "[]uint8", "slice"))


def _go_type_row(v) -> tuple | None:
    """v's row of _GO_TYPES (its Go type and kind), None for a value Go has no type for here."""
    return next((row for row in _GO_TYPES if isinstance(v, row[0])), None)


def go_type(v) -> str:
    """fmt's %T."""
    if v is MISSING or v is None:
        return "<nil>"
    row = _go_type_row(v)
    return row[1] if row else type(v).__name__


def go_kind(v) -> str:
    """reflect.Kind's name."""
    if v is MISSING or v is None:
        return "invalid"
    row = _go_type_row(v)
    return row[2] if row else "struct"


def truth(v) -> bool:
    """text/template's isTrue: empty values are false."""
    if v is MISSING or v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v != 0
    if isinstance(v, (str, list, dict, bytes)):
        return len(v) > 0
    return True


def basic_kind(v) -> str:
    """text/template's basicKind: bool, int, uint, float, string or invalid."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int) and v is not MISSING:
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "invalid"


# ---- fmt ----

def _digits(f: float) -> tuple[str, int]:
    """Shortest decimal digits of |f| and the position of the decimal point (strconv's dp)."""
    sign, digits, exp = Decimal(repr(abs(f))).as_tuple()
    d = "".join(map(str, digits)).lstrip("0") or "0"
    # value = int(digits) * 10**exp; strip trailing zeros into the exponent
    stripped = d.rstrip("0")
    exp += len(d) - len(stripped)
    d = stripped or "0"
    return d, len(d) + exp


def format_float(f: float, verb: str = "g", prec: int = -1) -> str:
    """strconv.FormatFloat(f, verb, prec, 64) for verb g/e/f with prec -1 (shortest), and f/e
    with a precision."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    neg = "-" if math.copysign(1.0, f) < 0 else ""
    if prec >= 0:
        if verb == "f":
            return neg + f"{abs(f):.{prec}f}"
        if verb == "e":
            s = f"{abs(f):.{prec}e}"
            mant, ex = s.split("e")
            return neg + mant + "e" + ex[0] + ex[1:].lstrip("0").rjust(2, "0")
    if f == 0:
        return neg + ("0e+00" if verb == "e" else "0")
    d, dp = _digits(f)
    if verb == "g":
        exp = dp - 1
        verb = "e" if exp < -4 or exp >= 6 else "f"  # shortest: strconv decides with precision 6
    if verb == "e":
        exp = dp - 1
        mant = d[0] + ("." + d[1:] if len(d) > 1 else "")
        return f"{neg}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    # 'f'
    if dp <= 0:
        return neg + "0." + "0" * (-dp) + d
    if dp >= len(d):
        return neg + d + "0" * (dp - len(d))
    return neg + d[:dp] + "." + d[dp:]


def format_float_v(f: float) -> str:
    """fmt's %v of a float64: %g with the shortest digits."""
    return format_float(f, "g")


def _scalar(v, floats: Callable[[float], str], strings: Callable[[str], str],
            byte_strings: Callable[[bytes], str]) -> str | None:
    """The text of a bool or int as fmt and encoding/json both write it, of a float, string or
    []byte by the encoding's own functions; None for any other value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        return floats(v)
    if isinstance(v, str):
        return strings(v)
    if isinstance(v, bytes):
        return byte_strings(v)
    return None


def _fmt_bytes(b: bytes) -> str:
    return "[" + " ".join(str(x) for x in b) + "]"


def fmt_v(v, top: bool = True) -> str:
    """fmt.Sprint of one value (%v)."""
    if v is MISSING:
        return "<no value>" if top else "<nil>"
    if v is None:
        return "<nil>"
    if (text := _scalar(v, format_float_v, str, _fmt_bytes)) is not None:
        return text
    if isinstance(v, list):
        return "[" + " ".join(fmt_v(x, False) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{fmt_v(v[k], False)}" for k in sorted(v)) + "]"
    return str(v)


_QUOTE_ESCAPES = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n",
                  "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(s: str) -> str:
    """strconv.Quote."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif o < 0x80 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif o <= 0xFFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


# ---- encoding/json ----

def _json_float(f: float) -> str:
    if math.isnan(f) or math.isinf(f):
        raise ValueError(f"json: unsupported value: {format_float(f)}")
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        s = format_float(f, "e")
        mant, ex = s.split("e")
        sign, num = ex[0], ex[1:].lstrip("0") or "0"
        return f"{mant}e{sign}{num}"
    return format_float(f, "f")


def _json_str(s: str, html: bool) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif o < 0x20:
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b",
                        "\f": "\\f"}.get(ch) or f"\\u{o:04x}")
        elif html and ch in "<>&":
            out.append(f"\\u{o:04x}")
        elif o in (0x2028, 0x2029):
            out.append(f"\\u{o:04x}")
        elif 0xD800 <= o <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _json_bytes(b: bytes) -> str:
    return '"' + base64.b64encode(b).decode() + '"'


def go_json(v, html: bool = True, indent: str = "", _level: int = 0) -> str:
    """encoding/json.Marshal (html=True escapes <, >, &), or MarshalIndent with `indent`."""
    if v is None or v is MISSING:
        return "null"
    if (text := _scalar(v, _json_float, lambda s: _json_str(s, html), _json_bytes)) is not None:
        return text
    nl = ("\n" + indent * (_level + 1)) if indent else ""
    end = ("\n" + indent * _level) if indent else ""
    sep = ": " if indent else ":"
    if isinstance(v, list):
        if not v:
            return "[]"
        return "[" + ",".join(nl + go_json(x, html, indent, _level + 1) for x in v) + end + "]"
    if isinstance(v, dict):
        if not v:
            return "{}"
        return "{" + ",".join(nl + _json_str(str(k), html) + sep + go_json(v[k], html, indent, _level + 1)
                              for k in sorted(v)) + end + "}"
    raise ValueError(f"json: unsupported type: {go_type(v)}")
