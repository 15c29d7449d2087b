"""What kube-apiserver does to a decoded object between its storage and a response.

1. Defaulting. The decoder of kube-apiserver's storage runs the stored version's defaulting
   functions (k8s.io/kubernetes pkg/apis/*/v1/defaults.go, on every read), and a few of them
   fill what the stored object lacks: the create strategy resets status after defaulting (PVC
   and PV phase Pending), protobuf does not carry an embedded object's apiVersion/kind (a
   StatefulSet's volumeClaimTemplates), a Job or ReplicationController takes its template's
   labels, which the strategy changed after defaulting. DEFAULTS applies exactly those; the
   others have already run before the object was stored (the tests compare every object of a
   fresh cluster and of each kind they create with what kube-apiserver serves).
2. Conversion. kube-apiserver v1.37 stores a few resources in a version it no longer serves;
   the one a cluster always has: CustomResourceDefinitions, stored as
   apiextensions.k8s.io/v1beta1 (k8s.io/kubernetes test/integration/etcd/data.go) and served
   as v1 only. CONVERSIONS applies kube-apiserver's v1beta1 -> internal -> v1 conversion
   (k8s.io/apiextensions-apiserver pkg/apis/apiextensions/v1/conversion.go). Every other stored
   version is served as it is.
"""
from __future__ import annotations

from typing import Callable

_PER_VERSION = (("validation", "schema"), ("subresources", "subresources"),
                ("additionalPrinterColumns", "additionalPrinterColumns"),
                ("selectableFields", "selectableFields"))


def _columns(columns: list[dict]) -> list[dict]:
    # the one field whose json name changed: v1beta1 JSONPath, v1 jsonPath
    return [{("jsonPath" if k == "JSONPath" else k): v for k, v in c.items()} for c in columns]


def _crd_v1beta1_to_v1(obj: dict) -> dict:
    spec = dict(obj.get("spec") or {})
    versions = [dict(v) for v in spec.get("versions") or []]
    version = spec.pop("version", "")
    if not versions and version:
        versions = [{"name": version, "served": True, "storage": True}]
    for v in versions:
        if "additionalPrinterColumns" in v:
            v["additionalPrinterColumns"] = _columns(v["additionalPrinterColumns"])
    for top, per_version in _PER_VERSION:
        if top in spec:
            value = spec.pop(top)
            if top == "additionalPrinterColumns":
                value = _columns(value)
            for v in versions:
                v[per_version] = value
    if versions:
        spec["versions"] = versions
    if not spec.get("preserveUnknownFields"):       # *bool in v1beta1, bool,omitempty in v1
        spec.pop("preserveUnknownFields", None)
    conversion = spec.get("conversion")
    if conversion is not None:
        conversion = dict(conversion)
        client = conversion.pop("webhookClientConfig", None)
        review = conversion.pop("conversionReviewVersions", None)
        if client is not None or review is not None:
            webhook: dict = {}
            if client is not None:
                webhook["clientConfig"] = client
            if review is not None:
                webhook["conversionReviewVersions"] = review
            conversion["webhook"] = webhook
        spec["conversion"] = conversion
    return {**obj, "apiVersion": "apiextensions.k8s.io/v1", "spec": spec}


def _labels_from_template(obj: dict, selector: bool = False) -> dict:
    """SetDefaults_Job, SetDefaults_ReplicationController: empty labels (and an RC's empty
    selector) take the pod template's labels."""
    spec = obj.get("spec") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    if labels is not None:
        if selector and not spec.get("selector"):
            spec["selector"] = dict(labels)
        if not obj["metadata"].get("labels"):
            obj["metadata"]["labels"] = dict(labels)
    return obj


def _phase(phase: str) -> Callable[[dict], dict]:
    def default(obj: dict) -> dict:
        status = obj.setdefault("status", {})
        if not status.get("phase"):
            status["phase"] = phase
        return obj
    return default


def _pvc(obj: dict) -> dict:
    """SetDefaults_PersistentVolumeClaim and ..._PersistentVolumeClaimSpec."""
    _phase("Pending")(obj)
    spec = obj.setdefault("spec", {})
    spec.setdefault("volumeMode", "Filesystem")
    return obj


def _namespace(obj: dict) -> dict:
    """SetDefaults_Namespace (the kubernetes.io/metadata.name label), SetDefaults_NamespaceStatus."""
    meta = obj["metadata"]
    if meta.get("name"):
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    return _phase("Active")(obj)


def _node(obj: dict) -> dict:
    """SetDefaults_NodeStatus: allocatable is capacity unless set."""
    status = obj.get("status") or {}
    if status.get("allocatable") is None and status.get("capacity") is not None:
        status["allocatable"] = dict(status["capacity"])
    return obj


def _statefulset(obj: dict) -> dict:
    """Convert_apps_StatefulSetSpec_To_v1_StatefulSetSpec sets each volume claim template's
    apiVersion/kind, which protobuf does not carry; the templates are defaulted as PVCs."""
    for template in (obj.get("spec") or {}).get("volumeClaimTemplates") or []:
        template["apiVersion"], template["kind"] = "v1", "PersistentVolumeClaim"
        _pvc(template)
    return obj


DEFAULTS: dict[tuple[str, str], Callable[[dict], dict]] = {
    ("batch/v1", "Job"): _labels_from_template,
    ("v1", "ReplicationController"): lambda obj: _labels_from_template(obj, selector=True),
    ("v1", "PersistentVolumeClaim"): _pvc,
    ("v1", "PersistentVolume"): _phase("Pending"),
    ("v1", "Namespace"): _namespace,
    ("v1", "Node"): _node,
    ("apps/v1", "StatefulSet"): _statefulset,
}

CONVERSIONS: dict[tuple[str, str], Callable[[dict], dict]] = {
    ("apiextensions.k8s.io/v1beta1", "CustomResourceDefinition"): _crd_v1beta1_to_v1,
}


def to_served(obj: dict) -> dict:
    """The object as kube-apiserver serves it: defaulted on read, in the version it serves
    (itself when that is its stored version). May change `obj` in place."""
    kind = (obj["apiVersion"], obj["kind"])
    if default := DEFAULTS.get(kind):
        obj = default(obj)
    if convert := CONVERSIONS.get(kind):
        obj = convert(obj)
    return obj
