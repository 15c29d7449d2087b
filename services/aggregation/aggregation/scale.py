"""The scale subresource: an autoscaling/v1 Scale read from and written to the paths the CRD's
subresources.scale names (specReplicasPath, statusReplicasPath, labelSelectorPath)."""
from __future__ import annotations

from typing import Any

from .registry import Served

_META = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")


def _path(text: str) -> list[str]:
    return [p for p in text.lstrip(".").split(".") if p]


def _get(obj: Any, path: list[str]) -> Any:
    for p in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(p)
    return obj


def to_scale(obj: dict, served: Served) -> dict:
    spec = served.version.scale or {}
    meta = obj.get("metadata") or {}
    replicas = _get(obj, _path(spec.get("specReplicasPath", ".spec.replicas")))
    status: dict = {"replicas": _get(obj, _path(spec.get("statusReplicasPath", ".status.replicas"))) or 0}
    if spec.get("labelSelectorPath"):
        selector = _get(obj, _path(spec["labelSelectorPath"]))
        if isinstance(selector, str) and selector:
            status["selector"] = selector
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in _META if k in meta},
            "spec": {"replicas": replicas} if isinstance(replicas, int) else {},
            "status": status}


def apply_scale(obj: dict, scale: dict, served: Served) -> dict:
    """obj with the Scale's spec.replicas written to specReplicasPath."""
    spec = served.version.scale or {}
    path = _path(spec.get("specReplicasPath", ".spec.replicas"))
    cur = obj
    for p in path[:-1]:
        cur = cur.setdefault(p, {})
    cur[path[-1]] = (scale.get("spec") or {}).get("replicas", 0)
    return obj
