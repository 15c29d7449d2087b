"""Kubernetes protobuf storage: b"k8s\\x00" + runtime.Unknown{typeMeta, raw, contentEncoding,
contentType}, raw being the typed object's protobuf encoding (k8s.io/apimachinery
pkg/runtime/serializer/protobuf). Objects render through kubefabric.k8s.gojson."""
from __future__ import annotations

from functools import cache

from google.protobuf.message import DecodeError as ProtobufError

from . import convert, gojson
from .errors import DecodeError
from .summary import Summary, field_value, scalar_string

MAGIC_LEN = 4
UNKNOWN = "k8s.io.apimachinery.pkg.runtime.Unknown"


def _message(key: bytes | str, value: bytes):
    """(apiVersion, kind, parsed typed message) of a stored value."""
    envelope = gojson.message_class(UNKNOWN)()
    try:
        envelope.ParseFromString(memoryview(value)[MAGIC_LEN:])
    except ProtobufError:
        raise DecodeError(key, "corrupt Kubernetes protobuf envelope (runtime.Unknown)") from None
    api_version, kind = envelope.typeMeta.apiVersion, envelope.typeMeta.kind
    if envelope.contentEncoding:
        raise DecodeError(key, f"unsupported content encoding {envelope.contentEncoding!r}")
    name = gojson.kind_message(api_version, kind)
    if name is None:
        raise DecodeError(key, f"unknown kind {kind!r} of {api_version!r} (Kubernetes v1.37 built-ins)")
    msg = gojson.message_class(name)()
    try:
        msg.ParseFromString(envelope.raw)
    except ProtobufError:
        raise DecodeError(key, f"corrupt protobuf {api_version} {kind}") from None
    return api_version, kind, name, msg


def decode(key: bytes | str, value: bytes) -> dict:
    return _render(key, *_message(key, value))


def _render(key: bytes | str, api_version: str, kind: str, name: str, msg) -> dict:
    obj = {"kind": kind, "apiVersion": api_version}
    try:
        obj.update(gojson.renderer().renderer(name)(msg))
    except gojson.RenderError as e:
        raise DecodeError(key, f"{api_version} {kind}: {e}") from None
    if not isinstance(obj.get("metadata"), dict):
        raise DecodeError(key, f"{api_version} {kind} has no metadata")
    return obj


def summarize(key: bytes | str, value: bytes, fields: tuple[str, ...]):
    api_version, kind, name, msg = _message(key, value)
    if (api_version, kind) in convert.DEFAULTS:    # what defaulting on read adds counts too
        obj = convert.to_served(_render(key, api_version, kind, name, msg))
        meta = obj["metadata"]
        return Summary(meta.get("namespace", ""), meta.get("name", ""), meta.get("labels") or {},
                       {path: field_value(obj, path) for path in fields})
    meta = msg.metadata
    return Summary(meta.namespace, meta.name, dict(meta.labels),
                   {path: scalar_string(_accessor(name, path)(msg)) for path in fields})


@cache
def _accessor(name: str, path: str):
    """A function message -> the JSON value at a dotted path of messages of type `name`, None
    when absent (as in decode()'s output); it renders only what the path ends on."""
    r = gojson.renderer()
    steps = []                               # (protobuf attribute, Go pointer?) per part
    type_ = name
    for part in path.split("."):
        info = r.types.get(type_.lstrip("*"), {})
        f = next((f for f in info.get("fields", []) if f.get("json") == part), None)
        if f is None or not f["proto"] or info.get("marshaler"):
            return lambda m: None
        fd = gojson.message_class(type_.lstrip("*")).DESCRIPTOR.fields_by_number[f["proto"]]
        if fd.is_repeated:                   # lists and maps are no field selector's
            return lambda m: None
        steps.append((fd.name, f["type"].startswith("*") or fd.message_type is not None, f))
        type_ = f["type"]
    leaf = type_.lstrip("*")
    last = steps[-1][2]
    if leaf in r.types:
        render = r.renderer(leaf)
    elif leaf in gojson.SCALARS:
        omit_zero = (last.get("omitempty") or last.get("omitzero")) and not type_.startswith("*")
        render = (lambda v: v or None) if omit_zero else (lambda v: v)
    else:
        return lambda m: None

    def get(m):
        for attr, check, _ in steps:
            if check and not m.HasField(attr):
                return None
            m = getattr(m, attr)
        return render(m)
    return get
