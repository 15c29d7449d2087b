"""Stored values to served objects and back.

Stored: the object as JSON in the storage version, without metadata.resourceVersion (the key's
mod_revision is the resourceVersion), bytes as kube-apiserver writes a custom resource (Go's
encoding/json: compact, keys sorted, <>& escaped, a trailing newline), so either server reads
what the other wrote. Served: the object at the requested version (conversion strategy None:
only apiVersion differs) with resourceVersion set.
"""
from __future__ import annotations

import base64
import json
from typing import Any

from kubefabric import k8s

from . import status
from .registry import Served
from .store import KV


def decode(kv: KV, served: Served) -> dict:
    """The stored object (kubefabric.k8s, the one decoder of stored objects) at the requested
    version."""
    try:
        obj = k8s.decode(kv.key, kv.value, kv.mod_revision)
    except k8s.DecodeError as err:
        raise status.internal(str(err)) from None
    obj["apiVersion"] = served.api_version
    return obj


def encode(obj: dict, served: Served) -> bytes:
    """Bytes to store: the storage version, no resourceVersion."""
    out = dict(obj)
    out["apiVersion"] = served.resource.api_version(served.resource.storage_version.name)
    meta = dict(out.get("metadata") or {})
    meta.pop("resourceVersion", None)
    out["metadata"] = meta
    text = json.dumps(out, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    text = (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return text.encode() + b"\n"


def list_object(served: Served, items: list[dict], meta: dict) -> dict:
    return {"apiVersion": served.api_version, "items": items, "kind": served.resource.list_kind,
            "metadata": meta}


# ---- continue tokens: kube-apiserver's format, so a client cannot tell the servers apart ----

def encode_continue(next_key: str, prefix: str, revision: int) -> str:
    start = next_key[len(prefix):]
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": start},
                     separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_continue(token: str, prefix: str) -> tuple[str, int]:
    """(the key to continue from, the revision; -1 means the newest). Errors worded as
    kube-apiserver's (which reports Go's base64 and JSON decoding errors)."""
    def invalid(why: str) -> status.ApiError:
        return status.bad_request(f"invalid continue token: continue key is not valid{why}")
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    bad = next((i for i, c in enumerate(token) if c not in alphabet), None)
    if bad is None and len(token) % 4 == 1:
        bad = len(token) - 1
    if bad is not None:
        raise invalid(f": illegal base64 data at input byte {bad}")
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    try:
        data: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid(f": {_json_error(raw)}") from None
    if not isinstance(data, dict):
        raise invalid(": json: cannot unmarshal into Go value of type storage.continueToken")
    if data.get("v") != "meta.k8s.io/v1":
        raise invalid(f": server does not recognize this encoded version {data.get('v', '')}")
    rv, start = data.get("rv"), data.get("start")
    if not isinstance(rv, int) or rv == 0:
        raise invalid(": incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    if not isinstance(start, str) or not start:
        raise invalid(": encoded start key empty (version meta.k8s.io/v1)")
    key = start if start.startswith("/") else "/" + start
    if _clean(key) != key:
        raise invalid(f": {start}")
    return prefix + key[1:], rv


def _json_error(raw: bytes) -> str:
    """Go's encoding/json message for bytes that are not JSON, for the usual case: a first
    character that cannot start a value."""
    text = raw.lstrip(b" \t\r\n")
    if not text:
        return "unexpected end of JSON input"
    c = text[0]
    if chr(c) in '{["-0123456789tfn':
        return "invalid JSON"
    if c == ord("'"):
        quoted = "'\\''"
    elif c == ord('"'):
        quoted = "'\"'"
    else:
        inner = json.dumps(chr(c))[1:-1] if c < 0x80 and chr(c).isprintable() else \
            (f"\\u{c:04x}" if c >= 0x7f or c < 0x20 else chr(c))
        quoted = f"'{inner}'"
    return f"invalid character {quoted} looking for beginning of value"


def _clean(path: str) -> str:
    """Go's path.Clean for an absolute path, enough to refuse '..' and '//' (a token may not
    reach outside the resource's prefix)."""
    parts: list[str] = []
    for p in path.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if parts:
                parts.pop()
            continue
        parts.append(p)
    cleaned = "/" + "/".join(parts)
    # Go keeps a trailing NUL byte segment as is; a trailing slash is dropped
    return cleaned
