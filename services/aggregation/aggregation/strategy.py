"""What kube-apiserver does to a custom resource between the request and the store: pruning,
defaulting, the fields the server owns (uid, creationTimestamp, generation, status on the main
resource), metadata validation, schema and CEL validation (with ratcheting on update: a value
that did not change is not refused again), and the hooks' validate/mutate functions."""
from __future__ import annotations

import copy
import datetime as dt
import json
import re
import secrets
import uuid
from typing import Any

from . import cel, schema, status
from . import fielderrors as fe
from .fielderrors import FieldError
from .names import DNS1123_SUBDOMAIN, LABEL_VALUE, LABEL_VALUE_MSG, SUBDOMAIN_MSG, qualified_name_errors
from .registry import Served

_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_name(prefix: str) -> str:
    """kube-apiserver's SimpleNameGenerator: the prefix (cut to 58) and 5 random characters."""
    return prefix[:58] + "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))


def decode_body(body: Any, served: Served) -> dict:
    """The request's object: a JSON object of this resource's apiVersion and kind."""
    if not isinstance(body, dict):
        raise status.bad_request("the object provided is unrecognized (must be a JSON object)")
    kind = body.get("kind")
    if not kind:
        raise status.bad_request(f"Object 'Kind' is missing in '{json.dumps(body, separators=(',', ':'))[:200]}'")
    api_version = body.get("apiVersion", "")
    if api_version != served.api_version:
        raise status.bad_request(f"the API version in the data ({api_version}) does not match "
                                 f"the expected API version ({served.api_version})")
    if kind != served.resource.kind:
        raise status.bad_request(f"the kind in the data ({kind}) does not match the expected "
                                 f"kind ({served.resource.kind})")
    meta = body.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise status.bad_request("metadata must be an object")
    return body


def prune_and_default(obj: dict, served: Served) -> list[str]:
    """Unknown fields dropped (returned, for fieldValidation), defaults set."""
    unknown = schema.prune(obj, served.version.schema)
    schema.default(obj, served.version.schema)
    return unknown


def default_read(obj: dict, served: Served) -> dict:
    """Defaults apply to stored objects too (a CRD may gain one later)."""
    schema.default(obj, served.version.schema)
    return obj


def check_namespace(obj: dict, namespace: str, served: Served) -> None:
    meta = obj.setdefault("metadata", {})
    if served.resource.namespaced:
        have = meta.get("namespace")
        if have and have != namespace:
            raise status.bad_request("the namespace of the provided object does not match the "
                                     "namespace sent on the request")
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)


def prepare_create(obj: dict, served: Served) -> None:
    meta = obj["metadata"]
    if served.version.status:
        obj.pop("status", None)
    meta["generation"] = 1
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = now()
    for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
        meta.pop(k, None)
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = generate_name(meta["generateName"])


def _non_metadata(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k != "metadata"}


def prepare_update(new: dict, old: dict, served: Served, subresource: str) -> dict:
    """The object to store: `new` with what the endpoint may not change taken from `old`."""
    if subresource == "status":
        out = copy.deepcopy(old)
        out["metadata"]["managedFields"] = new["metadata"].get("managedFields")
        if out["metadata"]["managedFields"] is None:
            out["metadata"].pop("managedFields")
        if "status" in new:
            out["status"] = new["status"]
        else:
            out.pop("status", None)
        return out
    out = copy.deepcopy(new)
    meta, old_meta = out["metadata"], old["metadata"]
    meta["generation"] = old_meta.get("generation", 0)
    if served.version.status:
        if "status" in old:
            out["status"] = copy.deepcopy(old["status"])
        else:
            out.pop("status", None)
    if _non_metadata(out) != _non_metadata(old):
        meta["generation"] = old_meta.get("generation", 0) + 1
    if not meta.get("uid"):
        meta["uid"] = old_meta.get("uid")
    if old_meta.get("creationTimestamp"):
        meta["creationTimestamp"] = old_meta["creationTimestamp"]
    if old_meta.get("deletionTimestamp"):
        meta["deletionTimestamp"] = old_meta["deletionTimestamp"]
    if old_meta.get("deletionGracePeriodSeconds") is not None and meta.get("deletionGracePeriodSeconds") is None:
        meta["deletionGracePeriodSeconds"] = old_meta["deletionGracePeriodSeconds"]
    meta.pop("selfLink", None)
    return out


# ---- validation ----

def validate_metadata(obj: dict, served: Served, old: dict | None) -> list[FieldError]:
    meta = obj.get("metadata") or {}
    errs: list[FieldError] = []
    name = meta.get("name", "")
    if not name:
        if not meta.get("generateName"):
            errs.append(fe.required("metadata.name", "name or generateName is required"))
    else:
        if len(name) > 253:
            errs.append(fe.invalid("metadata.name", name, "must be no more than 253 characters"))
        if not DNS1123_SUBDOMAIN.match(name):
            errs.append(fe.invalid("metadata.name", name, SUBDOMAIN_MSG))
    if served.resource.namespaced and not meta.get("namespace"):
        errs.append(fe.required("metadata.namespace", ""))
    for key, value in (meta.get("labels") or {}).items():
        for msg in qualified_name_errors(key):
            errs.append(fe.invalid("metadata.labels", key, msg))
        if not isinstance(value, str):
            errs.append(fe.invalid("metadata.labels", value, "must be a string"))
        elif len(value) > 63:
            errs.append(fe.invalid("metadata.labels", value, "must be no more than 63 characters"))
        elif not LABEL_VALUE.match(value):
            errs.append(fe.invalid("metadata.labels", value, LABEL_VALUE_MSG))
    for key in (meta.get("annotations") or {}):
        for msg in qualified_name_errors(key.lower()):
            errs.append(fe.invalid("metadata.annotations", key, msg))
    finalizers = meta.get("finalizers") or []
    for i, f in enumerate(finalizers):
        for msg in qualified_name_errors(f):
            errs.append(fe.invalid(f"metadata.finalizers[{i}]", f, msg))
    if old is not None:
        # kube-apiserver checks metadata updates twice (generic and strategy validation): each
        # of these errors is listed twice among the causes, once in the message
        before = len(errs)
        _metadata_update_errors(meta, finalizers, old, served, errs)
        errs += errs[before:]
    return errs


def _metadata_update_errors(meta: dict, finalizers: list, old: dict, served: Served,
                            errs: list[FieldError]) -> None:
    if True:
        old_meta = old.get("metadata") or {}
        for key in ("name", "namespace", "uid"):
            if meta.get(key) != old_meta.get(key) and not (key == "namespace" and not served.resource.namespaced):
                errs.append(fe.invalid(f"metadata.{key}", meta.get(key, ""), "field is immutable"))
        if old_meta.get("deletionTimestamp"):
            added = [f for f in finalizers if f not in (old_meta.get("finalizers") or [])]
            if added:
                errs.append(fe.forbidden("metadata.finalizers", "no new finalizers can be added if "
                                         f"the object is being deleted, found new finalizers "
                                         f"[]string{{{', '.join(json.dumps(f) for f in added)}}}"))


_BLOCKING = ("NotSupported", "Required", "TooLong", "TooMany", "TypeInvalid")


def validate(obj: dict, served: Served, old: dict | None, extra: list[FieldError] = ()) -> None:
    """422 Invalid with every problem, or nothing. Order and rules as kube-apiserver's custom
    resource strategy: metadata, schema, scale paths, then CEL rules unless an error above
    already makes the object unfit for them."""
    errs = list(extra) + validate_metadata(obj, served, old)
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    schema_errs = schema.validate(body, served.version.schema) + _scale_errors(obj, served)
    if old is not None:
        schema_errs = _ratchet(schema_errs, obj, old)
    errs += schema_errs
    if any(e.kind in _BLOCKING for e in errs):
        errs.append(FieldError("Invalid", "<nil>", None, "some validation rules were not "
                               "checked because the object was invalid; correct the existing "
                               "errors to complete validation"))
    elif _has_rules(served.version.schema):
        old_body = None if old is None else {k: v for k, v in old.items() if k not in ("apiVersion", "kind", "metadata")}
        cel_errs = cel.validate(body, old_body if old is not None else cel._MISSING, served.version.schema)
        if old is not None:
            cel_errs = _ratchet(cel_errs, obj, old)
        errs += cel_errs
    if errs:
        meta = obj.get("metadata") or {}
        raise fe.to_status(served.resource.group, served.resource.kind, meta.get("name", ""), errs)


def _has_rules(s: Any) -> bool:
    if isinstance(s, dict):
        return "x-kubernetes-validations" in s or any(_has_rules(v) for v in s.values())
    if isinstance(s, list):
        return any(_has_rules(v) for v in s)
    return False


def _scale_errors(obj: dict, served: Served) -> list[FieldError]:
    """The scale subresource's replicas paths hold non-negative int32s (kube-apiserver checks
    them on every write of a resource that has one)."""
    scale = served.version.scale
    if scale is None:
        return []
    errs = []
    for key in ("specReplicasPath", "statusReplicasPath"):
        text = scale.get(key)
        if not text:
            continue
        cur: Any = obj
        for part in text.lstrip(".").split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        if cur is None:
            continue
        if isinstance(cur, bool) or not isinstance(cur, int):
            errs.append(fe.invalid(text, 0, f"{text.lstrip('.')} accessor error: {fe.go_value(cur)} "
                                   f"is of the type {_go_type(cur)}, expected int64"))
        elif cur < 0:
            errs.append(fe.invalid(text, cur, "should be a non-negative integer"))
        elif cur > 2 ** 31 - 1:
            errs.append(fe.invalid(text, cur, f"should be less than or equal to {2 ** 31 - 1}"))
    return errs


def _go_type(v: Any) -> str:
    return {bool: "bool", str: "string", float: "float64", list: "[]interface {}",
            dict: "map[string]interface {}"}.get(type(v), type(v).__name__)


_INDEX = re.compile(r"\[(\d+)\]")


def _at(obj: Any, path: str) -> tuple[bool, Any]:
    cur = obj
    for part in re.split(r"\.(?![^\[]*\])", path) if path else []:
        name, _, rest = part.partition("[")
        if name:
            if not isinstance(cur, dict) or name not in cur:
                return False, None
            cur = cur[name]
        for idx in _INDEX.findall("[" + rest if rest else ""):
            if not isinstance(cur, list) or int(idx) >= len(cur):
                return False, None
            cur = cur[int(idx)]
    return True, cur


def _ratchet(errs: list[FieldError], new: dict, old: dict) -> list[FieldError]:
    """Drop errors about values the update did not change (CRD validation ratcheting)."""
    kept = []
    for e in errs:
        found_new, v_new = _at(new, e.field)
        found_old, v_old = _at(old, e.field)
        if found_new and found_old and v_new == v_old and e.kind != "Required":
            continue
        kept.append(e)
    return kept
