"""Resources declared as apiextensions.k8s.io/v1 CustomResourceDefinition manifests.

A Resource is what one CRD declares: names, scope, served versions with their schemas, printer
columns and selectable fields. Objects live under the key a CRD's objects would use in
kube-apiserver, `/registry/<group>/<plural>/[<namespace>/]<name>`, stored as JSON in the storage
version, so a resource can move between a CRD and this server without touching its data.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubefabric import k8s

_KUBE_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class CRDError(ValueError):
    """A manifest that does not declare a servable resource; the message names file and field."""


def version_priority(v: str) -> tuple:
    """Sort key putting versions in Kubernetes' discovery order: GA before beta before alpha,
    higher numbers first, then versions that are not kube-like, alphabetically."""
    m = _KUBE_VERSION.match(v)
    if not m:
        return (1, v)
    kind = {"alpha": 2, "beta": 1, None: 0}[m[2]]
    return (0, kind, -int(m[1]), -int(m[3] or 0))


@dataclass(frozen=True)
class Version:
    name: str
    served: bool
    storage: bool
    schema: dict[str, Any]
    columns: tuple[dict, ...]
    selectable_fields: tuple[str, ...]
    status: bool  # the status subresource
    scale: dict | None
    deprecated: bool = False
    deprecation_warning: str | None = None


@dataclass
class Resource:
    group: str
    plural: str
    singular: str
    kind: str
    list_kind: str
    short_names: tuple[str, ...]
    categories: tuple[str, ...]
    namespaced: bool
    versions: dict[str, Version]  # in discovery order
    manifest: dict = field(repr=False)
    source: str = ""
    hooks: Any = None  # a hooks.Hooks, set by the loader when a hooks module sits beside the CRD

    @property
    def name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def storage_version(self) -> Version:
        return next(v for v in self.versions.values() if v.storage)

    @property
    def served_versions(self) -> list[Version]:
        return [v for v in self.versions.values() if v.served]

    @property
    def preferred_version(self) -> Version:
        return self.served_versions[0]

    def prefix(self, namespace: str | None = None) -> str:
        """The key prefix of every object (namespace None) or of one namespace's objects:
        kube-apiserver's layout for a custom resource (kubefabric.k8s)."""
        return k8s.resource_prefix(self.group, self.plural, namespace or None).decode()

    def key(self, namespace: str | None, name: str) -> str:
        return self.prefix(namespace if self.namespaced else None) + name

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}"


def _get(obj: dict, path: str, where: str, kind: type = str, required: bool = True):
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            if required:
                raise CRDError(f"{where}: {path} is required")
            return None
        cur = cur[part]
    if not isinstance(cur, kind):
        raise CRDError(f"{where}: {path} must be a {kind.__name__}")
    return cur


def parse_crd(doc: dict, source: str = "") -> Resource:
    """A Resource from one CRD manifest, or a CRDError naming the first problem."""
    where = source or "manifest"
    if doc.get("apiVersion") != "apiextensions.k8s.io/v1" or doc.get("kind") != "CustomResourceDefinition":
        raise CRDError(f"{where}: expected apiVersion apiextensions.k8s.io/v1, kind "
                       f"CustomResourceDefinition (got {doc.get('apiVersion')!r}, {doc.get('kind')!r})")
    name = _get(doc, "metadata.name", where)
    where = f"{where}: CRD {name}"
    group = _get(doc, "spec.group", where)
    plural = _get(doc, "spec.names.plural", where)
    kind = _get(doc, "spec.names.kind", where)
    if name != f"{plural}.{group}":
        raise CRDError(f"{where}: metadata.name must be spec.names.plural + '.' + spec.group "
                       f"({plural}.{group})")
    if not _DNS_SUBDOMAIN.match(group) or "." not in group:
        raise CRDError(f"{where}: spec.group {group!r} must be a DNS subdomain with at least one dot")
    if not _DNS_LABEL.match(plural):
        raise CRDError(f"{where}: spec.names.plural {plural!r} must be a lowercase DNS label")
    scope = _get(doc, "spec.scope", where)
    if scope not in ("Namespaced", "Cluster"):
        raise CRDError(f"{where}: spec.scope must be Namespaced or Cluster (got {scope!r})")
    names = doc["spec"]["names"]
    singular = names.get("singular") or kind.lower()
    conversion = (doc["spec"].get("conversion") or {}).get("strategy", "None")
    if conversion != "None":
        raise CRDError(f"{where}: spec.conversion.strategy {conversion!r} is not supported "
                       "(only None: versions differ by apiVersion alone)")
    raw_versions = _get(doc, "spec.versions", where, list)
    if not raw_versions:
        raise CRDError(f"{where}: spec.versions must list at least one version")
    versions = [_parse_version(v, f"{where}: spec.versions[{i}]") for i, v in enumerate(raw_versions)]
    if len({v.name for v in versions}) != len(versions):
        raise CRDError(f"{where}: spec.versions has a version twice")
    if sum(v.storage for v in versions) != 1:
        raise CRDError(f"{where}: exactly one of spec.versions must have storage: true")
    if not any(v.served for v in versions):
        raise CRDError(f"{where}: at least one of spec.versions must have served: true")
    versions.sort(key=lambda v: version_priority(v.name))
    return Resource(
        group=group, plural=plural, singular=singular, kind=kind,
        list_kind=names.get("listKind") or f"{kind}List",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        namespaced=scope == "Namespaced",
        versions={v.name: v for v in versions}, manifest=doc, source=source)


def _parse_version(v: Any, where: str) -> Version:
    if not isinstance(v, dict) or not isinstance(v.get("name"), str):
        raise CRDError(f"{where}: name is required")
    where = f"{where} ({v['name']})"
    schema = (v.get("schema") or {}).get("openAPIV3Schema")
    if not isinstance(schema, dict):
        raise CRDError(f"{where}: schema.openAPIV3Schema is required")
    if schema.get("type") != "object":
        raise CRDError(f"{where}: schema.openAPIV3Schema.type must be object")
    columns = tuple(v.get("additionalPrinterColumns") or ())
    for c in columns:
        for req in ("name", "type", "jsonPath"):
            if not c.get(req):
                raise CRDError(f"{where}: additionalPrinterColumns[].{req} is required")
        if c["type"] not in ("integer", "number", "string", "boolean", "date"):
            raise CRDError(f"{where}: additionalPrinterColumns {c['name']!r}: type must be one "
                           "of integer, number, string, boolean, date")
    selectable = tuple(f["jsonPath"].lstrip(".") for f in v.get("selectableFields") or ())
    sub = v.get("subresources") or {}
    return Version(name=v["name"], served=bool(v.get("served")), storage=bool(v.get("storage")),
                   schema=schema, columns=columns, selectable_fields=selectable,
                   status="status" in sub, scale=sub.get("scale"),
                   deprecated=bool(v.get("deprecated")),
                   deprecation_warning=v.get("deprecationWarning"))


def _documents(path: Path) -> list[tuple[dict, str]]:
    text = path.read_text()
    if path.suffix == ".json":
        docs = [json.loads(text)]
    else:
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError as err:
            raise CRDError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    out = []
    for i, d in enumerate(docs):
        if d is None:
            continue
        if not isinstance(d, dict):
            raise CRDError(f"{path}: document {i + 1} is not a mapping")
        if d.get("kind") == "List":
            out.extend((item, f"{path}") for item in d.get("items") or [])
        else:
            out.append((d, f"{path}"))
    return out


def load_directory(directory: str | Path) -> list[Resource]:
    """Every CRD in *.yaml, *.yml and *.json files of a directory (not recursive), sorted by
    name. Two CRDs of the same name, or two resources with the same group and kind, are refused."""
    root = Path(directory)
    if not root.is_dir():
        raise CRDError(f"{root}: not a directory")
    resources: dict[str, Resource] = {}
    for path in sorted(p for p in root.iterdir() if p.suffix in (".yaml", ".yml", ".json")):
        for doc, source in _documents(path):
            r = parse_crd(doc, source)
            if r.name in resources:
                raise CRDError(f"{source}: CRD {r.name} is also declared in {resources[r.name].source}")
            resources[r.name] = r
    kinds: dict[tuple[str, str], str] = {}
    for r in resources.values():
        other = kinds.setdefault((r.group, r.kind), r.name)
        if other != r.name:
            raise CRDError(f"{r.source}: CRD {r.name} declares kind {r.kind} of group {r.group}, "
                           f"as {other} does")
    return [resources[n] for n in sorted(resources)]

