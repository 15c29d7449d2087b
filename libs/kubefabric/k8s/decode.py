"""Stored value -> the object as `kubectl get -o json` shows it, and the index's cheap path.

What kube-apiserver stores (one value per key, DESIGN §8):
- JSON: custom resources (always), and built-ins when kube-apiserver runs with
  --storage-media-type=application/json. The stored object lacks only metadata.resourceVersion,
  which kube-apiserver sets from the key's mod_revision on every read.
- b"k8s\\x00" + runtime.Unknown: built-in kinds (the default protobuf storage; kubefabric.k8s.pb,
  rendered by kubefabric.k8s.gojson).
- b"k8s:enc:...": encrypted at rest (--encryption-provider-config): not readable here.
- CBOR (self-described, 0xd9d9f7): custom resources under the alpha CBORServingAndStorage
  feature gate: not readable here.
"""
from __future__ import annotations

import json

from . import pb
from .convert import to_served
from .errors import DecodeError
from .summary import Summary, field_value

PROTOBUF_MAGIC = b"k8s\x00"
ENCRYPTED_MAGIC = b"k8s:enc:"
CBOR_MAGIC = b"\xd9\xd9\xf7"


def decode(key: bytes | str, value: bytes, mod_revision: int) -> dict:
    """The object stored at `key` as kube-apiserver serves it by default (its stored version, or
    the served one where the stored version is not served: convert.py), with
    metadata.resourceVersion = str(mod_revision); DecodeError when it does not decode."""
    obj = to_served(_object(key, value))
    obj["metadata"]["resourceVersion"] = str(mod_revision)
    return obj


def summarize(key: bytes | str, value: bytes, fields: tuple[str, ...] = ()) -> Summary:
    """Namespace, name, labels and the given field paths of the object stored at `key`, without
    rendering the whole object where that is cheaper; DecodeError as decode()."""
    if value[:4] == PROTOBUF_MAGIC:
        return pb.summarize(key, value, fields)
    obj = _object(key, value)
    meta = obj["metadata"]
    return Summary(meta.get("namespace", ""), meta.get("name", ""), meta.get("labels") or {},
                   {path: field_value(obj, path) for path in fields})


def _object(key: bytes | str, value: bytes) -> dict:
    if not value:
        raise DecodeError(key, "empty value")
    if value[:4] == PROTOBUF_MAGIC:
        return pb.decode(key, value)
    if value[:8] == ENCRYPTED_MAGIC:
        provider = value[8:].split(b":", 2)[:2]
        raise DecodeError(key, f"encrypted at rest ({b':'.join(provider).decode(errors='replace')}); "
                               "only kube-apiserver holds the key")
    if value[:3] == CBOR_MAGIC:
        raise DecodeError(key, "CBOR (kube-apiserver's CBORServingAndStorage feature) is not supported")
    try:
        obj = json.loads(value)
    except (ValueError, UnicodeDecodeError) as e:
        raise DecodeError(key, f"neither Kubernetes protobuf nor JSON ({e})") from None
    if not isinstance(obj, dict):
        raise DecodeError(key, f"JSON {type(obj).__name__}, not an object")
    if not isinstance(obj.get("metadata"), dict):
        raise DecodeError(key, "JSON object without metadata")
    if not isinstance(obj.get("apiVersion"), str) or not isinstance(obj.get("kind"), str):
        raise DecodeError(key, "JSON object without apiVersion and kind")
    return obj
