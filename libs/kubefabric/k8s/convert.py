"""Stored versions kube-apiserver does not serve, converted to the version it serves.

kube-apiserver v1.37 stores a few resources in a version it no longer serves; a reader of the
storage then sees an object no client can get. The only one a cluster always has:
CustomResourceDefinitions, stored as apiextensions.k8s.io/v1beta1 (k8s.io/kubernetes
test/integration/etcd/data.go) and served as v1 only. to_served() applies kube-apiserver's
v1beta1 -> internal -> v1 conversion of them (k8s.io/apiextensions-apiserver
pkg/apis/apiextensions/v1/conversion.go) on the decoded JSON. Every other stored version is
served as it is (the decoder returns it unchanged).
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


CONVERSIONS: dict[tuple[str, str], Callable[[dict], dict]] = {
    ("apiextensions.k8s.io/v1beta1", "CustomResourceDefinition"): _crd_v1beta1_to_v1,
}


def to_served(obj: dict) -> dict:
    """The object in the version kube-apiserver serves it in (itself when that is its stored
    version)."""
    convert = CONVERSIONS.get((obj["apiVersion"], obj["kind"]))
    return convert(obj) if convert else obj
