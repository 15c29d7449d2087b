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


# group, plural, storage path when not the plural, scope (N: namespaced, C: cluster).
# rangeallocations (the service IP and node port allocators' RangeAllocation objects),
# masterleases and peerserverleases (kube-apiserver's endpoint leases) are internal records, no
# API resources (pkg/registry/core/rest/storage_core.go, pkg/controlplane).
# Resources two groups serve from one storage (events and events.k8s.io, ingresses of
# extensions and networking.k8s.io) are listed once, under the group they are stored as.
_TABLE = """
'' configmaps - N
'' endpoints services/endpoints N
'' events - N
'' limitranges - N
'' namespaces - C
'' nodes minions C
'' persistentvolumeclaims - N
'' persistentvolumes - C
'' pods - N
'' podtemplates - N
'' replicationcontrollers controllers N
'' resourcequotas - N
'' secrets - N
'' serviceaccounts - N
'' services services/specs N
'' rangeallocations ranges C
'' masterleases - C
'' peerserverleases - C
admissionregistration.k8s.io mutatingadmissionpolicies - C
admissionregistration.k8s.io mutatingadmissionpolicybindings - C
admissionregistration.k8s.io mutatingwebhookconfigurations - C
admissionregistration.k8s.io validatingadmissionpolicies - C
admissionregistration.k8s.io validatingadmissionpolicybindings - C
admissionregistration.k8s.io validatingwebhookconfigurations - C
apps controllerrevisions - N
apps daemonsets - N
apps deployments - N
apps replicasets - N
apps statefulsets - N
autoscaling horizontalpodautoscalers - N
batch cronjobs - N
batch jobs - N
certificates.k8s.io certificatesigningrequests - C
certificates.k8s.io clustertrustbundles - C
certificates.k8s.io podcertificaterequests - N
coordination.k8s.io leasecandidates - N
coordination.k8s.io leases - N
discovery.k8s.io endpointslices - N
flowcontrol.apiserver.k8s.io flowschemas - C
flowcontrol.apiserver.k8s.io prioritylevelconfigurations - C
internal.apiserver.k8s.io storageversions - C
lifecycle.k8s.io evictionrequests - N
lifecycle.k8s.io evictions - N
networking.k8s.io ingressclasses - C
networking.k8s.io ingresses ingress N
networking.k8s.io ipaddresses - C
networking.k8s.io networkpolicies - N
networking.k8s.io servicecidrs - C
node.k8s.io runtimeclasses - C
policy poddisruptionbudgets - N
rbac.authorization.k8s.io clusterrolebindings - C
rbac.authorization.k8s.io clusterroles - C
rbac.authorization.k8s.io rolebindings - N
rbac.authorization.k8s.io roles - N
resource.k8s.io deviceclasses - C
resource.k8s.io devicetaintrules - C
resource.k8s.io resourceclaims - N
resource.k8s.io resourceclaimtemplates - N
resource.k8s.io resourcepoolstatusrequests - C
resource.k8s.io resourceslices - C
scheduling.k8s.io compositepodgroups - N
scheduling.k8s.io podgroups - N
scheduling.k8s.io priorityclasses - C
scheduling.k8s.io workloads - N
storage.k8s.io csidrivers - C
storage.k8s.io csinodes - C
storage.k8s.io csistoragecapacities - N
storage.k8s.io storageclasses - C
storage.k8s.io volumeattachments - C
storage.k8s.io volumeattributesclasses - C
storagemigration.k8s.io storageversionmigrations - C
"""


def _load() -> tuple[Builtin, ...]:
    out = []
    for line in _TABLE.strip().splitlines():
        group, plural, path, scope = line.split()
        out.append(Builtin("" if group == "''" else group, plural,
                           plural if path == "-" else path, scope == "N"))
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
