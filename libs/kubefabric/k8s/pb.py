"""Kubernetes protobuf storage: b"k8s\\x00" + runtime.Unknown{typeMeta, raw, contentEncoding,
contentType}, raw being the typed object's protobuf encoding (k8s.io/apimachinery
pkg/runtime/serializer/protobuf). Objects render through kubefabric.k8s.gojson."""
from __future__ import annotations

from google.protobuf.message import DecodeError as ProtobufError

from kubefabric.proto.k8s.apimachinery.pkg.runtime.generated_pb2 import Unknown

from . import gojson
from .errors import DecodeError

MAGIC_LEN = 4


def _message(key: bytes | str, value: bytes):
    """(apiVersion, kind, parsed typed message) of a stored value."""
    envelope = Unknown()
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
    api_version, kind, name, msg = _message(key, value)
    obj = {"kind": kind, "apiVersion": api_version}
    try:
        obj.update(gojson.renderer().renderer(name)(msg))
    except gojson.RenderError as e:
        raise DecodeError(key, f"{api_version} {kind}: {e}") from None
    if not isinstance(obj.get("metadata"), dict):
        raise DecodeError(key, f"{api_version} {kind} has no metadata")
    return obj


def summarize(key: bytes | str, value: bytes, fields: tuple[str, ...]):
    from .decode import Summary, scalar_string
    api_version, kind, name, msg = _message(key, value)
    meta = msg.metadata
    return Summary(meta.namespace, meta.name, dict(meta.labels),
                   {path: scalar_string(_field(name, msg, path)) for path in fields})


def _field(name: str, msg, path: str):
    """The JSON value at a dotted path of a message, rendering only the leaf."""
    r = gojson.renderer()
    types = r.types
    type_ = name
    for part in path.split("."):
        info = types.get(type_.lstrip("*"))
        if info is None or "fields" not in info or info.get("marshaler"):
            return None
        f = _json_field(info, part)
        if f is None or not f["proto"]:
            return None
        attr = msg.DESCRIPTOR.fields_by_number[f["proto"]].name
        if f["type"].startswith("*") and not msg.HasField(attr):
            return None
        msg, type_, omitempty = getattr(msg, attr), f["type"], f.get("omitempty")
    if type_.lstrip("*") in types:
        return r.renderer(type_.lstrip("*"))(msg)
    if type_.lstrip("*") not in gojson.SCALARS or (omitempty and type_[0] != "*" and not msg):
        return None                          # absent from the JSON
    return msg


def _json_field(info: dict, key: str) -> dict | None:
    for f in info["fields"]:
        if f.get("json") == key:
            return f
    return None
