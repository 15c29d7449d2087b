"""Protobuf messages of Kubernetes' built-in types -> what Go's encoding/json makes of the Go object.

kube-apiserver decodes a stored protobuf object into its typed Go struct and serves it through
encoding/json; this module produces the same JSON value from the Python protobuf message, driven
by kubefabric/proto/k8s/gojson.json (scripts/k8sjson: the Go field order, json names,
omitempty/omitzero, inlining and Go types, by reflection over k8s.io/api and friends):

- Go value kinds decide presence: a pointer, slice, map or []byte absent from the protobuf
  encoding is nil (omitted with omitempty, else null); a scalar or a struct always has a value (a
  struct absent from the encoding is its zero value, rendered field by field); omitempty never
  omits a struct, omitzero does when it is zero (IsZero() for metav1.Time).
- Types with a MarshalJSON of their own are rendered by SPECIAL (Time, MicroTime, Duration,
  Quantity, IntOrString, RawExtension, FieldsV1, apiextensions' JSON and JSONSchemaPropsOr*);
  a type the table marks as a marshaler that SPECIAL lacks stops the renderer from compiling.

Renderers are compiled once per message type into closures (one per field), not interpreted
per object.
"""
from __future__ import annotations

import base64
import datetime as dt
import importlib
import json
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Callable

import kubefabric.proto.k8s as k8s_proto

Render = Callable[[Any], Any]          # protobuf message -> JSON value
Step = Callable[[Any, dict], None]     # a present field's value, output object -> None

TABLE_PATH = Path(k8s_proto.__file__).parent / "gojson.json"
SCALARS = {"string": "", "bool": False, "int": 0, "uint": 0, "float": 0.0}


class RenderError(ValueError):
    """A value Go would not have rendered (invalid embedded JSON, an out-of-range time ...)."""


@cache
def table() -> dict:
    return json.loads(TABLE_PATH.read_text())


def message_class(full_name: str):
    """The generated class of a message of k8s.io's .proto files (imported on first use)."""
    package, _, name = full_name.rpartition(".")
    module = importlib.import_module(
        f"kubefabric.proto.k8s.{package.removeprefix('k8s.io.')}.generated_pb2")
    return getattr(module, name)


def kind_message(api_version: str, kind: str) -> str | None:
    return table()["kinds"].get(api_version, {}).get(kind)


# ---- Go's formatting of special types -----------------------------------------------------------

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _utc(seconds: int, micros: int = 0) -> dt.datetime:
    try:
        return _EPOCH + dt.timedelta(seconds=seconds, microseconds=micros)
    except OverflowError:
        raise RenderError(f"time {seconds}s out of range") from None


def go_duration(ns: int) -> str:
    """time.Duration.String(): 1h2m3.5s, 1m0s, 1.5ms, 0s."""
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)

    def frac(v: int, prec: int) -> str:
        whole, rest = divmod(v, 10 ** prec)
        digits = str(rest).rjust(prec, "0").rstrip("0") if prec else ""
        return f"{whole}.{digits}" if digits else str(whole)
    if u < 10 ** 9:
        unit, prec = ("ns", 0) if u < 10 ** 3 else ("µs", 3) if u < 10 ** 6 else ("ms", 6)
        return sign + frac(u, prec) + unit
    seconds, nanos = divmod(u, 10 ** 9)
    out = frac((seconds % 60) * 10 ** 9 + nanos, 9) + "s"
    minutes = seconds // 60
    if minutes:
        out = f"{minutes % 60}m" + out
        if minutes // 60:
            out = f"{minutes // 60}h" + out
    return sign + out


def _embedded_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RenderError(f"embedded value is not JSON ({bytes(raw[:16])!r}...)") from None


def _time(m) -> Any:                      # metav1.Time: seconds only, RFC 3339, UTC
    if not m.HasField("seconds"):         # the zero time is encoded as an empty message
        return None
    return _rfc3339(m.seconds)


@lru_cache(maxsize=4096)                  # an object's times are often equal (managedFields)
def _rfc3339(seconds: int) -> str:
    return _utc(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_time(m) -> Any:                # metav1.MicroTime: RFC3339Micro, UTC, truncated
    if not m.HasField("seconds"):
        return None
    return _utc(m.seconds, m.nanos // 1000).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _int_or_string(m) -> Any:
    return m.strVal if m.type == 1 else m.intVal


def _raw(field: str) -> Callable[[Any], Any]:
    def render(m) -> Any:
        raw = getattr(m, field)
        return _embedded_json(raw) if raw else None
    return render


def _or_bool(r: "Renderer", name: str) -> Render:
    schema = r.renderer(r.field_type(name, "Schema").lstrip("*"))

    def render(m) -> Any:
        return schema(m.schema) if m.HasField("schema") else m.allows
    return render


def _or_string_array(r: "Renderer", name: str) -> Render:
    schema = r.renderer(r.field_type(name, "Schema").lstrip("*"))

    def render(m) -> Any:
        if len(m.property):
            return list(m.property)
        return schema(m.schema) if m.HasField("schema") else None
    return render


def _or_array(r: "Renderer", name: str) -> Render:
    schema = r.renderer(r.field_type(name, "Schema").lstrip("*"))

    def render(m) -> Any:
        if len(m.jSONSchemas):
            return [schema(s) for s in m.jSONSchemas]
        return schema(m.schema) if m.HasField("schema") else None
    return render


# Go type -> renderer factory (Renderer, message name) -> Render. Keys are Go names, so that a
# version the table adds (another JSONSchemaPropsOrBool) is caught by the test that every
# marshaler of the table has an entry.
_APIEXT = "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/"
SPECIAL: dict[str, Callable[["Renderer", str], Render]] = {
    "k8s.io/apimachinery/pkg/apis/meta/v1.Time": lambda r, n: _time,
    "k8s.io/apimachinery/pkg/apis/meta/v1.MicroTime": lambda r, n: _micro_time,
    "k8s.io/apimachinery/pkg/apis/meta/v1.Duration": lambda r, n: lambda m: go_duration(m.duration),
    "k8s.io/apimachinery/pkg/apis/meta/v1.FieldsV1": lambda r, n: _raw("Raw"),
    "k8s.io/apimachinery/pkg/api/resource.Quantity": lambda r, n: lambda m: m.string or "0",
    "k8s.io/apimachinery/pkg/util/intstr.IntOrString": lambda r, n: _int_or_string,
    "k8s.io/apimachinery/pkg/runtime.RawExtension": lambda r, n: _raw("raw"),
    **{f"{_APIEXT}{v}.JSON": (lambda r, n: _raw("raw")) for v in ("v1", "v1beta1")},
    **{f"{_APIEXT}{v}.JSONSchemaPropsOrBool": _or_bool for v in ("v1", "v1beta1")},
    **{f"{_APIEXT}{v}.JSONSchemaPropsOrStringArray": _or_string_array for v in ("v1", "v1beta1")},
    **{f"{_APIEXT}{v}.JSONSchemaPropsOrArray": _or_array for v in ("v1", "v1beta1")},
}
# Zero tests for omitzero on types whose IsZero() is not "every field zero".
IS_ZERO = {
    "k8s.io/apimachinery/pkg/apis/meta/v1.Time": lambda m: not m.HasField("seconds"),
    "k8s.io/apimachinery/pkg/apis/meta/v1.MicroTime": lambda m: not m.HasField("seconds"),
}


# ---- the compiler ---------------------------------------------------------------------------------

class Renderer:
    """Compiles and caches one Render per message type of the table.

    A compiled Render walks only the fields present in the message (ListFields, in C), then adds
    what Go renders for the absent ones (null, "", 0, false, or a zero struct, unless omitted):
    objects set a small part of their types' fields. Keys come out in field-number order, not
    Go's declaration order (JSON objects are unordered; values are the same)."""

    def __init__(self, types: dict):
        self.types = types
        self._render: dict[str, Render] = {}

    def field_type(self, name: str, go_field: str) -> str:
        for f in self.types[name]["fields"]:
            if f.get("json", "").lower() == go_field.lower():
                return f["type"]
        raise KeyError(f"{name} has no field {go_field}")

    def renderer(self, name: str) -> Render:
        """The Render of message `name` (a late-bound proxy while it is being compiled, so that
        recursive types such as JSONSchemaProps compile)."""
        if name not in self._render:
            self._render[name] = lambda m: self._render[name](m)
            self._render[name] = self._compile(name)
        return self._render[name]

    def _compile(self, name: str) -> Render:
        info = self.types[name]
        if info.get("marshaler"):
            factory = SPECIAL.get(info["go"])
            if factory is None:
                raise NotImplementedError(f"no JSON rendering for {info['go']}, which has a MarshalJSON")
            return factory(self, name)
        if "underlying" in info:             # a named slice or map sent as {items: ...}
            items = self._value(info["underlying"])
            return lambda m: items(m.items)
        descriptor = message_class(name).DESCRIPTOR
        present: dict[int, Step] = {}        # field number -> (value, out) -> None
        absent: list[tuple[int, dict]] = []  # field number -> what Go renders when it is absent
        constant: dict = {}                  # Go fields protobuf does not carry
        for f in info.get("fields", []):
            if f.get("type", "").startswith("opaque:"):
                raise NotImplementedError(f"{name}: field {f} of a type outside Kubernetes")
            if not f["proto"]:
                constant.update(self._absent(f))
                continue
            number = f["proto"]
            if number not in descriptor.fields_by_number:
                raise NotImplementedError(f"{name}: the .proto has no field {number} ({f})")
            present[number] = self._present(f)
            if defaults := self._absent(f):
                absent.append((number, defaults))
        # keyed by descriptor: ListFields hands back the pool's descriptor objects
        by_field = {descriptor.fields_by_number[n]: step for n, step in present.items()}
        absent_fields = [(descriptor.fields_by_number[n], d) for n, d in absent]
        constant_mutable = any(isinstance(v, (dict, list)) for v in constant.values())

        def render(m) -> dict:
            out: dict = {}
            for fd, v in m.ListFields():
                step = by_field.get(fd)
                if step is not None:
                    step(v, out)
            if constant:
                out.update(_clone(constant) if constant_mutable else constant)
            return out

        if not absent_fields:
            return render

        def render_with_absent(m) -> dict:
            out: dict = {}
            seen = set()
            for fd, v in m.ListFields():
                step = by_field.get(fd)
                if step is not None:
                    seen.add(fd)
                    step(v, out)
            for fd, defaults in absent_fields:
                if fd not in seen:
                    out.update(_copy(defaults))
            if constant:
                out.update(_clone(constant) if constant_mutable else constant)
            return out
        return render_with_absent

    def zero(self, type_: str) -> Any:
        """The JSON of a Go zero value of type_ (what a field absent from protobuf renders)."""
        if type_ in SCALARS:
            return SCALARS[type_]
        if type_[0] in "*[m" or type_ in ("bytes", "any"):
            return None
        return self.renderer(type_)(message_class(type_)())

    def _value(self, type_: str) -> Render:
        """Render of one protobuf value (a field's, an element's) holding a Go value of type_."""
        if type_ in SCALARS:
            return lambda v: v
        if type_ == "bytes":
            return lambda v: base64.b64encode(v).decode()
        if type_.startswith("*"):
            return self._value(type_[1:])
        if type_.startswith("[]"):
            elem = self._value(type_[2:])
            if type_[2:] in SCALARS:
                return lambda seq: list(seq) if len(seq) else None
            return lambda seq: [elem(e) for e in seq] if len(seq) else None
        if type_.startswith("map["):
            elem = self._value(type_[type_.index("]") + 1:])
            if type_[type_.index("]") + 1:] in SCALARS:
                return lambda mp: dict(mp) if len(mp) else None
            return lambda mp: {k: elem(v) for k, v in mp.items()} if len(mp) else None
        return self.renderer(type_)

    def _is_zero(self, type_: str) -> Callable[[Any], bool]:
        info = self.types.get(type_.lstrip("*"), {})
        if info.get("go") in IS_ZERO:
            return IS_ZERO[info["go"]]
        render, zero = self._value(type_), self.zero(type_)
        return lambda v: render(v) == zero

    def _absent(self, f: dict) -> dict:
        """The keys Go renders for a field that protobuf does not carry (its zero value)."""
        type_, key = f["type"], f.get("json", "")
        omitempty, omitzero = f.get("omitempty", False), f.get("omitzero", False)
        # a zero value is always omitted by omitzero, by omitempty unless it is a struct
        nonstruct = type_[0] in "*[" or type_.startswith("map[") or type_ in SCALARS or type_ in ("bytes", "any")
        if omitzero or (omitempty and nonstruct):
            return {}
        if type_.startswith("*") and f.get("inline"):
            return {}                        # a nil embedded pointer adds no keys
        zero = self.zero(type_)
        if "underlying" in self.types.get(type_, {}):
            zero = None                      # a nil named slice or map
            if omitempty:
                return {}
        if f.get("inline"):
            return dict(zero)
        return {key: zero}

    def _present(self, f: dict) -> Step:
        """How a field present in the protobuf encoding renders (value, out) -> None."""
        type_, key = f["type"], f.get("json", "")
        omitempty, omitzero = f.get("omitempty", False), f.get("omitzero", False)
        value = self._value(type_)
        if f.get("inline"):
            return lambda v, out: out.update(value(v))
        if type_ in SCALARS and (omitempty or omitzero):
            def scalar(v, out):              # gogo writes non-pointer scalars even when zero
                if v:
                    out[key] = v
            return scalar
        if type_ == "bytes" and omitempty:   # present: non-nil, maybe empty
            def nonempty_bytes(v, out):
                if v:
                    out[key] = value(v)
            return nonempty_bytes
        if type_ not in SCALARS and type_ != "bytes" and omitzero and type_[0] != "*":
            is_zero = self._is_zero(type_)

            def nonzero(v, out):
                if not is_zero(v):
                    out[key] = value(v)
            return nonzero
        if omitempty and "underlying" in self.types.get(type_, {}):
            def nonempty(v, out):
                rendered = value(v)
                if rendered:
                    out[key] = rendered
            return nonempty

        def always(v, out):
            out[key] = value(v)
        return always


def _copy(defaults: dict) -> dict:
    """Defaults are shared: copy the mutable ones (zero structs) for each object."""
    for v in defaults.values():
        if isinstance(v, (dict, list)):
            return _clone(defaults)
    return defaults


def _clone(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _clone(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clone(x) for x in v]
    return v


@cache
def renderer() -> Renderer:
    return Renderer(table()["types"])
