"""Where kube-apiserver v1.37 stores each built-in resource (the facts behind kubefabric.k8s.keys).

Source: k8s.io/kubernetes v1.37.2, test/integration/etcd/data.go (every stored resource with its
etcd path and storage version) and pkg/kubeapiserver/default_storage_factory_builder.go
(SpecialDefaultResourcePrefixes, cohabitating resources). Built-in resources of every group are
stored under /registry/<path>/ without their group; <path> is the plural except for the
special prefixes below. Two groups served by kube-apiserver keep their group in the key, like
custom resources: apiextensions.k8s.io (CRDs) and apiregistration.k8s.io (APIServices).
"""
from __future__ import annotations

from typing import NamedTuple


class Builtin(NamedTuple):
    group: str        # the group the objects are stored as ("" = core)
    resource: str     # plural
    path: str         # storage path under /registry/ ("services/specs")
    namespaced: bool


# The stored resources of each group (by the group they are stored as; "" = core), namespaced
# and cluster-scoped: plurals, "plural=path" where the storage path is not the plural.
# rangeallocations (the service IP and node port allocators' RangeAllocation objects),
# masterleases and peerserverleases (kube-apiserver's endpoint leases) are internal records, no
# API resources (pkg/registry/core/rest/storage_core.go, pkg/controlplane).
# Resources two groups serve from one storage (events and events.k8s.io, ingresses of
# extensions and networking.k8s.io) are listed once, under the group they are stored as.
_NAMESPACED: dict[str, str] = {
    "": "configmaps endpoints=services/endpoints events limitranges persistentvolumeclaims pods "
        "podtemplates replicationcontrollers=controllers resourcequotas secrets serviceaccounts "
        "services=services/specs",
    "apps": "controllerrevisions daemonsets deployments replicasets statefulsets",
    "autoscaling": "horizontalpodautoscalers",
    "batch": "cronjobs jobs",
    "certificates.k8s.io": "podcertificaterequests",
    "coordination.k8s.io": "leasecandidates leases",
    "discovery.k8s.io": "endpointslices",
    "lifecycle.k8s.io": "evictionrequests evictions",
    "networking.k8s.io": "ingresses=ingress networkpolicies",
    "policy": "poddisruptionbudgets",
    "rbac.authorization.k8s.io": "rolebindings roles",
    "resource.k8s.io": "resourceclaims resourceclaimtemplates",
    "scheduling.k8s.io": "compositepodgroups podgroups workloads",
    "storage.k8s.io": "csistoragecapacities",
}
_CLUSTER: dict[str, str] = {
    "": "namespaces nodes=minions persistentvolumes rangeallocations=ranges masterleases "
        "peerserverleases",
    "admissionregistration.k8s.io": "mutatingadmissionpolicies mutatingadmissionpolicybindings "
                                    "mutatingwebhookconfigurations validatingadmissionpolicies "
                                    "validatingadmissionpolicybindings "
                                    "validatingwebhookconfigurations",
    "certificates.k8s.io": "certificatesigningrequests clustertrustbundles",
    "flowcontrol.apiserver.k8s.io": "flowschemas prioritylevelconfigurations",
    "internal.apiserver.k8s.io": "storageversions",
    "networking.k8s.io": "ingressclasses ipaddresses servicecidrs",
    "node.k8s.io": "runtimeclasses",
    "rbac.authorization.k8s.io": "clusterrolebindings clusterroles",
    "resource.k8s.io": "deviceclasses devicetaintrules resourcepoolstatusrequests resourceslices",
    "scheduling.k8s.io": "priorityclasses",
    "storage.k8s.io": "csidrivers csinodes storageclasses volumeattachments "
                      "volumeattributesclasses",
    "storagemigration.k8s.io": "storageversionmigrations",
}


def _load() -> tuple[Builtin, ...]:
    out = []
    for namespaced, by_group in ((True, _NAMESPACED), (False, _CLUSTER)):
        for group, resources in by_group.items():
            for entry in resources.split():
                plural, _, path = entry.partition("=")
                out.append(Builtin(group, plural, path or plural, namespaced))
    return tuple(out)


BUILTINS: tuple[Builtin, ...] = _load()
BY_PATH: dict[str, Builtin] = {b.path: b for b in BUILTINS}
BY_RESOURCE: dict[tuple[str, str], Builtin] = {(b.group, b.resource): b for b in BUILTINS}
BY_PLURAL: dict[str, Builtin] = {b.resource: b for b in BUILTINS}   # built-in plurals are unique

# Groups served by kube-apiserver whose objects are stored without the group segment. "core"
# is accepted as a name of the core group; extensions and events.k8s.io share the storage of
# ingresses and events (kube-apiserver's cohabitating resources); the authentication and
# authorization groups store nothing but are built in.
BUILTIN_GROUPS = frozenset({b.group for b in BUILTINS} | {
    "core", "extensions", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io"})
COHABITING = {("events.k8s.io", "events"): ("", "events"),
              ("extensions", "ingresses"): ("networking.k8s.io", "ingresses"),
              ("extensions", "deployments"): ("apps", "deployments"),
              ("extensions", "daemonsets"): ("apps", "daemonsets"),
              ("extensions", "replicasets"): ("apps", "replicasets"),
              ("extensions", "networkpolicies"): ("networking.k8s.io", "networkpolicies"),
              ("extensions", "replicationcontrollers"): ("", "replicationcontrollers")}

# Resource plural -> storage path, for every built-in stored under another name than its plural
# (kube-apiserver's SpecialDefaultResourcePrefixes, plus its allocator ranges).
SPECIAL_PATHS = {b.resource: b.path for b in BUILTINS if b.path != b.resource}
# Storage paths two segments deep (the first segment alone is no resource).
TWO_SEGMENT_PATHS = frozenset(p for p in BY_PATH if "/" in p)
