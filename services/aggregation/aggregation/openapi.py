"""OpenAPI v2 and v3 documents built from the CRD schemas, with the paths, operation ids,
definition names and extensions kube-apiserver publishes for CRDs (kubectl explain, kubectl's
field-validation probe and client generators read them; the aggregator merges them into
kube-apiserver's own documents).

meta_schemas.json holds the apimachinery meta types the documents refer to (ObjectMeta, ListMeta,
Status, ...): their field names and types as Kubernetes' published OpenAPI spec gives them,
without descriptions.
"""
from __future__ import annotations

import copy
import hashlib
import json
from functools import lru_cache
from pathlib import Path

from .registry import Registry, Served

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
V3_REF = "#/components/schemas/"
V2_REF = "#/definitions/"
_VALUE_VALIDATIONS = ("format", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
                      "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems",
                      "multipleOf", "enum", "maxProperties", "minProperties", "allOf", "anyOf",
                      "oneOf", "not")
_API_VERSION = {"type": "string", "description": "APIVersion defines the versioned schema of this "
                "representation of an object. Servers should convert recognized schemas to the "
                "latest internal value, and may reject unrecognized values."}
_KIND = {"type": "string", "description": "Kind is a string value representing the REST resource "
         "this object represents. In CamelCase."}


@lru_cache(maxsize=1)
def meta_schemas() -> dict:
    return json.loads((Path(__file__).parent / "meta_schemas.json").read_text())


def model_name(group: str, version: str, kind: str) -> str:
    """Kubernetes' definition name for a CRD kind: the group reversed, e.g.
    io.kubefabric.example.v1.Widget for example.kubefabric.io/v1 Widget."""
    return ".".join(reversed(group.split("."))) + f".{version}.{kind}"


def _gvk(s: Served, kind: str) -> dict:
    return {"group": s.resource.group, "version": s.version.name, "kind": kind}


def _kind_schema(s: Served, v2: bool) -> dict:
    schema = copy.deepcopy(s.version.schema)
    if v2:
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            schema = {"type": "object"}
        else:
            schema = _to_v2(schema)
    if not (v2 and schema == {"type": "object"}):
        props = schema.setdefault("properties", {})
        ref = (V2_REF if v2 else V3_REF) + META + "ObjectMeta"
        props["metadata"] = {"$ref": ref} if v2 else {"allOf": [{"$ref": ref}]}
        props["apiVersion"] = dict(_API_VERSION)
        props["kind"] = dict(_KIND)
    schema["x-kubernetes-group-version-kind"] = [_gvk(s, s.resource.kind)]
    if s.version.selectable_fields:
        schema["x-kubernetes-selectable-fields"] = [{"fieldPath": f} for f in s.version.selectable_fields]
    return schema


def _to_v2(schema: dict) -> dict:
    """What OpenAPI v2 can say of a structural schema: types, properties, items and
    extensions (kube-apiserver strips value validations and nullable for v2 too)."""
    out = {k: v for k, v in schema.items() if k not in _VALUE_VALIDATIONS and k != "nullable"}
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _to_v2(v) for k, v in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = _to_v2(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _to_v2(out["additionalProperties"])
    return out


def _list_schema(s: Served, v2: bool) -> dict:
    r, prefix = s.resource, V2_REF if v2 else V3_REF
    item = {"$ref": prefix + model_name(r.group, s.version.name, r.kind)}
    meta = {"$ref": prefix + META + "ListMeta"}
    schema = {
        "description": f"{r.list_kind} is a list of {r.kind}", "type": "object",
        "required": ["items"],
        "properties": {"apiVersion": dict(_API_VERSION), "kind": dict(_KIND),
                       "items": {"type": "array", "items": item},
                       "metadata": meta if v2 else {"allOf": [meta]}},
        "x-kubernetes-group-version-kind": [_gvk(s, r.list_kind)]}
    if s.version.selectable_fields:
        schema["x-kubernetes-selectable-fields"] = [{"fieldPath": f} for f in s.version.selectable_fields]
    return schema


def _param(name: str, where: str, v2: bool, kind: str = "string", required: bool = False) -> dict:
    p: dict = {"name": name, "in": where, "uniqueItems": True}
    if v2:
        p["type"] = kind
    else:
        p = {"name": name, "in": where, "schema": {"type": kind, "uniqueItems": True}}
    if required:
        p["required"] = True
    return p


_LIST_PARAMS = (("allowWatchBookmarks", "boolean"), ("continue", "string"),
                ("fieldSelector", "string"), ("labelSelector", "string"), ("limit", "integer"),
                ("resourceVersion", "string"), ("resourceVersionMatch", "string"),
                ("sendInitialEvents", "boolean"), ("timeoutSeconds", "integer"),
                ("watch", "boolean"))
_WRITE_PARAMS = (("dryRun", "string"), ("fieldManager", "string"), ("fieldValidation", "string"))
_DELETE_PARAMS = (("dryRun", "string"), ("gracePeriodSeconds", "integer"),
                  ("ignoreStoreReadErrorWithClusterBreakingPotential", "boolean"),
                  ("orphanDependents", "boolean"), ("propagationPolicy", "string"))


def _operation(s: Served, v2: bool, action: str, op_id: str, response: str, *,
               params=(), body: str | None = None, patch: bool = False, codes=()) -> dict:
    prefix = V2_REF if v2 else V3_REF
    media = ["application/json", "application/yaml"]
    op: dict = {"operationId": op_id, "tags": [_tag(s)], "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": _gvk(s, s.resource.kind)}
    plist = [_param(n, "query", v2, k) for n, k in params]
    consumes = (["application/json-patch+json", "application/merge-patch+json",
                 "application/apply-patch+yaml"] if patch else media)
    if v2:
        op["consumes"] = ["*/*"] if not body else consumes
        op["produces"] = media
        if body:
            plist.insert(0, {"name": "body", "in": "body", "required": action != "delete",
                             "schema": {"$ref": prefix + body}})
        op["responses"] = {str(c): {"description": d, "schema": {"$ref": prefix + response}}
                           for c, d in ((200, "OK"), *codes)}
        op["responses"]["401"] = {"description": "Unauthorized"}
        op["schemes"] = ["https"]
    else:
        if body:
            op["requestBody"] = {"content": {m: {"schema": {"$ref": prefix + body}} for m in consumes},
                                 "required": action != "delete"}
        content = {m: {"schema": {"$ref": prefix + response}} for m in media}
        op["responses"] = {str(c): {"description": d, "content": content}
                           for c, d in ((200, "OK"), *codes)}
        op["responses"]["401"] = {"description": "Unauthorized"}
    if plist:
        op["parameters"] = plist
    return op


def _tag(s: Served) -> str:
    first = s.resource.group.split(".")[0]
    return f"{first}_{s.version.name}"


def _paths(s: Served, v2: bool) -> dict:
    r, v = s.resource, s.version.name
    kind = model_name(r.group, v, r.kind)
    list_kind = model_name(r.group, v, r.list_kind)
    status, patch_body, delete_body = META + "Status", META + "Patch", META + "DeleteOptions"
    ns = "Namespaced" if r.namespaced else ""
    root = f"/apis/{r.group}/{v}/" + ("namespaces/{namespace}/" if r.namespaced else "") + r.plural
    common = [_param("pretty", "query", v2)]
    if r.namespaced:
        common.insert(0, _param("namespace", "path", v2, required=True))
    named = [_param("name", "path", v2, required=True), *common]
    paths: dict = {}
    if r.namespaced:
        paths[f"/apis/{r.group}/{v}/{r.plural}"] = {
            "get": _operation(s, v2, "list", f"list{r.kind}ForAllNamespaces", list_kind,
                              params=_LIST_PARAMS),
            "parameters": [_param("pretty", "query", v2)]}
    paths[root] = {
        "get": _operation(s, v2, "list", f"list{ns}{r.kind}", list_kind, params=_LIST_PARAMS),
        "post": _operation(s, v2, "post", f"create{ns}{r.kind}", kind, params=_WRITE_PARAMS,
                           body=kind, codes=((201, "Created"), (202, "Accepted"))),
        "delete": _operation(s, v2, "deletecollection", f"deletecollection{ns}{r.kind}", status,
                             params=_LIST_PARAMS + _DELETE_PARAMS, body=delete_body),
        "parameters": common}
    paths[root + "/{name}"] = {
        "get": _operation(s, v2, "get", f"read{ns}{r.kind}", kind, params=(("resourceVersion", "string"),)),
        "put": _operation(s, v2, "put", f"replace{ns}{r.kind}", kind, params=_WRITE_PARAMS,
                          body=kind, codes=((201, "Created"),)),
        "patch": _operation(s, v2, "patch", f"patch{ns}{r.kind}", kind,
                            params=(*_WRITE_PARAMS, ("force", "boolean")), body=patch_body,
                            patch=True),
        "delete": _operation(s, v2, "delete", f"delete{ns}{r.kind}", status,
                             params=_DELETE_PARAMS, body=delete_body, codes=((202, "Accepted"),)),
        "parameters": named}
    if s.version.status:
        paths[root + "/{name}/status"] = {
            "get": _operation(s, v2, "get", f"read{ns}{r.kind}Status", kind,
                              params=(("resourceVersion", "string"),)),
            "put": _operation(s, v2, "put", f"replace{ns}{r.kind}Status", kind,
                              params=_WRITE_PARAMS, body=kind, codes=((201, "Created"),)),
            "patch": _operation(s, v2, "patch", f"patch{ns}{r.kind}Status", kind,
                                params=(*_WRITE_PARAMS, ("force", "boolean")), body=patch_body,
                                patch=True),
            "parameters": named}
    return paths


def _definitions(served: list[Served], v2: bool) -> dict:
    defs: dict = {}
    for s in served:
        r = s.resource
        defs[model_name(r.group, s.version.name, r.kind)] = _kind_schema(s, v2)
        defs[model_name(r.group, s.version.name, r.list_kind)] = _list_schema(s, v2)
    for name, schema in meta_schemas().items():
        defs[name] = _meta_v2(schema) if v2 else schema
    return defs


def _meta_v2(schema):
    """A meta type's v3 schema in v2 form: definitions refs, `allOf: [ref]` as plain refs."""
    if isinstance(schema, list):
        return [_meta_v2(x) for x in schema]
    if not isinstance(schema, dict):
        return schema
    if list(schema) == ["allOf"] and len(schema["allOf"]) == 1 and "$ref" in schema["allOf"][0]:
        return _meta_v2(schema["allOf"][0])
    out = {k: _meta_v2(v) for k, v in schema.items()}
    if isinstance(out.get("$ref"), str):
        out["$ref"] = out["$ref"].replace(V3_REF, V2_REF)
    return out


def v3_document(registry: Registry, group: str, version: str) -> dict | None:
    served = registry.served_in(group, version)
    if not served:
        return None
    paths: dict = {}
    for s in served:
        paths.update(_paths(s, v2=False))
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "unversioned"},
            "paths": paths, "components": {"schemas": _definitions(served, v2=False)}}


def v2_document(registry: Registry) -> dict:
    paths: dict = {}
    served = [s for g in registry.groups() for v in registry.group_versions(g)
              for s in registry.served_in(g, v)]
    for s in served:
        paths.update(_paths(s, v2=True))
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "unversioned"},
            "paths": paths, "definitions": _definitions(served, v2=True)}


def encode(doc: dict) -> tuple[bytes, str]:
    """The document's bytes and its hash (uppercase hex sha512, as kube-apiserver's ETags and
    /openapi/v3 `hash` parameters are)."""
    body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return body, hashlib.sha512(body).hexdigest().upper()


def v3_index(registry: Registry) -> dict:
    paths = {}
    for g in registry.groups():
        for v in registry.group_versions(g):
            _, digest = encode(v3_document(registry, g, v))
            paths[f"apis/{g}/{v}"] = {"serverRelativeURL": f"/openapi/v3/apis/{g}/{v}?hash={digest}"}
    return {"paths": paths}
