"""Kubernetes object keys: /registry/... <-> (group, resource, namespace, name).

Layout (kube-apiserver v1.37 with the default --etcd-prefix=/registry):

    /registry/<path>/<namespace>/<name>             namespaced built-in resources
    /registry/<path>/<name>                         cluster-scoped built-in resources
    /registry/<group>/<plural>/<namespace>/<name>   namespaced custom resources
    /registry/<group>/<plural>/<name>               cluster-scoped custom resources (and CRDs,
                                                    APIServices: their groups keep the segment)

<path> is the plural of a built-in resource, whatever its group, except kube-apiserver's special
prefixes (services/specs, services/endpoints, minions, controllers, ingress, ranges: see
resources.py). A first segment with a dot is an API group (CRD groups must contain one; no
built-in storage path does). Names never contain "/", so the scope of a resource this module
does not know follows from the number of segments.
"""
from __future__ import annotations

from dataclasses import dataclass

from .resources import BUILTIN_GROUPS, BY_PATH, BY_PLURAL, BY_RESOURCE, COHABITING, TWO_SEGMENT_PATHS

PREFIX = "/registry"
_TWO_SEGMENT_FIRST = frozenset(p.split("/")[0] for p in TWO_SEGMENT_PATHS)   # "services"


@dataclass(frozen=True, slots=True)
class ObjectKey:
    """Where one object lives. group "" is the core group; namespace "" means cluster-scoped."""
    group: str
    resource: str
    namespace: str
    name: str

    @property
    def key(self) -> bytes:
        return object_key(self.group, self.resource, self.namespace, self.name)


def storage_path(group: str, resource: str) -> str:
    """The path under /registry/ of a resource's objects: `services/specs`, `deployments`,
    `example.com/widgets`."""
    if group in BUILTIN_GROUPS:
        group = "" if group == "core" else group
        group, resource = COHABITING.get((group, resource), (group, resource))
        # a plural named with another built-in group (or none) is still that built-in's
        known = BY_RESOURCE.get((group, resource)) or BY_PLURAL.get(resource)
        return known.path if known else resource
    return f"{group}/{resource}"


def resource_prefix(group: str, resource: str, namespace: str | None = None,
                    prefix: str = PREFIX) -> bytes:
    """The key prefix of every object of a resource (ending in "/"), or of those in one
    namespace when `namespace` is given: resource_prefix("", "services", "kube-system") ==
    b"/registry/services/specs/kube-system/"."""
    path = f"{prefix}/{storage_path(group, resource)}/"
    if namespace:
        path += f"{namespace}/"
    return path.encode()


def object_key(group: str, resource: str, namespace: str, name: str, prefix: str = PREFIX) -> bytes:
    """The key of one object (namespace "" for a cluster-scoped one)."""
    return resource_prefix(group, resource, namespace or None, prefix) + name.encode()


def parse_key(key: bytes | str, prefix: str = PREFIX) -> ObjectKey | None:
    """The object a key names, or None when it names none (a key outside `prefix`, a prefix
    itself, an empty segment, too many segments, kube-apiserver's compact_rev_key, KubeFabric's
    own /kubefabric/ records)."""
    if isinstance(key, bytes):
        try:
            key = key.decode()
        except UnicodeDecodeError:
            return None
    if not key.startswith(prefix + "/"):
        return None
    parts = key[len(prefix) + 1:].split("/")
    if parts[0] in _TWO_SEGMENT_FIRST:
        known = BY_PATH.get("/".join(parts[:2]))
        if known is None:
            return None
        group, resource, rest = known.group, known.resource, parts[2:]
        namespaced: bool | None = known.namespaced
    elif "." in parts[0]:
        if len(parts) < 3:
            return None
        group, resource, rest, namespaced = parts[0], parts[1], parts[2:], None
    else:
        known = BY_PATH.get(parts[0])
        group, resource = (known.group, known.resource) if known else ("", parts[0])
        rest, namespaced = parts[1:], known.namespaced if known else None
    if not resource or not all(rest) or not 1 <= len(rest) <= 2:
        return None
    if namespaced is not None and namespaced != (len(rest) == 2):
        return None
    if len(rest) == 2:
        return ObjectKey(group, resource, rest[0], rest[1])
    return ObjectKey(group, resource, "", rest[0])
