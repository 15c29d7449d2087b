"""Discovery documents, shaped as kube-apiserver serves them for CRDs: legacy (/apis,
/apis/<group>, /apis/<group>/<version>) and aggregated (apidiscovery.k8s.io/v2 on /apis when the
client asks for it, as kube-apiserver's aggregator does before falling back to legacy)."""
from __future__ import annotations

import base64
import hashlib

from .registry import Registry

CRD_VERBS = ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"]
SUBRESOURCE_VERBS = ["get", "patch", "update"]
AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def storage_version_hash(group: str, version: str, kind: str) -> str:
    """Kubernetes' storageVersionHash: the first 8 bytes of sha256("group/version/kind")."""
    digest = hashlib.sha256(f"{group}/{version}/{kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def wants_aggregated(accept: str) -> bool:
    """True when the Accept header lists apidiscovery.k8s.io/v2 APIGroupDiscoveryList."""
    for part in accept.split(","):
        params = {k.strip(): v.strip() for k, _, v in
                  (p.partition("=") for p in part.split(";")[1:])}
        if (params.get("g") == "apidiscovery.k8s.io" and params.get("v") == "v2"
                and params.get("as") == "APIGroupDiscoveryList"):
            return True
    return False


def _gv(group: str, version: str) -> dict:
    return {"groupVersion": f"{group}/{version}", "version": version}


def api_group(registry: Registry, group: str) -> dict | None:
    versions = registry.group_versions(group)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group,
            "versions": [_gv(group, v) for v in versions], "preferredVersion": _gv(group, versions[0])}


def api_group_list(registry: Registry) -> dict:
    groups = [api_group(registry, g) for g in registry.groups()]
    for g in groups:
        g.pop("kind"), g.pop("apiVersion")
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_resource_list(registry: Registry, group: str, version: str) -> dict | None:
    served = registry.served_in(group, version)
    if not served:
        return None
    resources = []
    for s in served:
        r = s.resource
        entry = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                 "kind": r.kind, "verbs": CRD_VERBS}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entry["storageVersionHash"] = storage_version_hash(r.group, r.storage_version.name, r.kind)
        resources.append(entry)
        if s.version.status:
            resources.append({"name": f"{r.plural}/status", "singularName": "",
                              "namespaced": r.namespaced, "kind": r.kind,
                              "verbs": SUBRESOURCE_VERBS})
        if s.version.scale is not None:
            resources.append({"name": f"{r.plural}/scale", "singularName": "",
                              "namespaced": r.namespaced, "group": "autoscaling",
                              "version": "v1", "kind": "Scale", "verbs": SUBRESOURCE_VERBS})
        for sub in _hook_subresources(r):
            resources.append({"name": f"{r.plural}/{sub.name}", "singularName": "",
                              "namespaced": r.namespaced, "kind": sub.kind or r.kind,
                              "verbs": list(sub.verbs)})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}",
            "resources": resources}


def _hook_subresources(resource) -> list:
    hooks = resource.hooks
    return list(hooks.subresources.values()) if hooks is not None else []


def aggregated(registry: Registry) -> dict:
    items = []
    for group in registry.groups():
        versions = []
        for version in registry.group_versions(group):
            resources = []
            for s in sorted(registry.served_in(group, version), key=lambda s: s.resource.plural):
                r = s.resource
                kind = {"group": group, "version": version, "kind": r.kind}
                entry = {"resource": r.plural, "responseKind": kind,
                         "scope": "Namespaced" if r.namespaced else "Cluster",
                         "singularResource": r.singular, "verbs": CRD_VERBS}
                if r.short_names:
                    entry["shortNames"] = list(r.short_names)
                if r.categories:
                    entry["categories"] = list(r.categories)
                subs = []
                if s.version.status:
                    subs.append({"subresource": "status", "responseKind": kind,
                                 "verbs": SUBRESOURCE_VERBS})
                if s.version.scale is not None:
                    subs.append({"subresource": "scale", "responseKind": {
                        "group": "autoscaling", "version": "v1", "kind": "Scale"},
                        "verbs": SUBRESOURCE_VERBS})
                for sub in _hook_subresources(r):
                    subs.append({"subresource": sub.name, "responseKind": {
                        "group": group, "version": version, "kind": sub.kind or r.kind},
                        "verbs": list(sub.verbs)})
                if subs:
                    entry["subresources"] = subs
                resources.append(entry)
            versions.append({"version": version, "resources": resources, "freshness": "Current"})
        items.append({"metadata": {"name": group, "creationTimestamp": None}, "versions": versions})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {}, "items": items}
