"""Response transforms kubectl and controllers ask for through Accept: meta.k8s.io Table (the
CRD's printer columns, as `kubectl get` prints them) and PartialObjectMetadata(List)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from . import status
from .crd import Version
from .jsonpath import compile_path, find, print_value

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name automatically. "
    "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
    "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
CREATED_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. "
    "It is not guaranteed to be set in happens-before order across separate operations. Clients "
    "may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the "
    "system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/"
    "devel/sig-architecture/api-conventions.md#metadata")
_DEFAULT_COLUMNS = ({"name": "Age", "type": "date", "description": CREATED_DESCRIPTION,
                     "jsonPath": ".metadata.creationTimestamp"},)
_META_KEYS = ("name", "generateName", "namespace", "selfLink", "uid", "resourceVersion",
              "generation", "creationTimestamp", "deletionTimestamp",
              "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences",
              "finalizers", "managedFields")


# Each step: a unit, its size in the unit before, that unit's letter, and up to which count
# the duration shows as "<count><unit><rest><unit before>" (rest 0: "<count><unit>"), then as
# "<count><unit>" only (None: from there on).
_DURATION_STEPS = (("m", 60, "s", 10, 180), ("h", 60, "m", 8, 48), ("d", 24, "h", 8, 365 * 2),
                   ("y", 365, "d", 8, None))


def human_duration(seconds: float) -> str:
    """Kubernetes' duration.HumanDuration (what `kubectl get` shows as AGE)."""
    n = int(seconds)
    if n < -1:
        return "<invalid>"
    if n < 0:
        return "0s"
    if n < 120:
        return f"{n}s"
    for unit, size, smaller, with_rest, whole in _DURATION_STEPS:
        n, rest = divmod(n, size)
        if n < with_rest:
            return f"{n}{unit}" if rest == 0 else f"{n}{unit}{rest}{smaller}"
        if whole is None or n < whole:
            return f"{n}{unit}"
    raise AssertionError("unreachable: the last step has no bound")


def parse_time(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


class TableConvertor:
    """One served version's columns: Name, then its additionalPrinterColumns (Age when it
    declares none)."""

    def __init__(self, version: Version):
        columns = version.columns or _DEFAULT_COLUMNS
        self.headers = [{"name": "Name", "type": "string", "format": "name",
                         "description": NAME_DESCRIPTION, "priority": 0}]
        self.paths = []
        for c in columns:
            self.paths.append(compile_path(c["jsonPath"]))
            self.headers.append({
                "name": c["name"], "type": c["type"], "format": c.get("format", ""),
                "description": c.get("description") or
                f"Custom resource definition column (in JSONPath format): {c['jsonPath']}",
                "priority": c.get("priority", 0)})

    def cells(self, obj: dict, now: dt.datetime) -> list:
        out: list[Any] = [(obj.get("metadata") or {}).get("name", "")]
        for header, path in zip(self.headers[1:], self.paths):
            found = find(path, obj)
            if not found:
                out.append(None)
                continue
            out.append(_cell(header["type"], found[0], now))
        return out

    def table(self, objects: list[dict], list_meta: dict, include: str, no_headers: bool,
              api_group_version: str = "meta.k8s.io/v1") -> dict:
        if include not in ("", "None", "Metadata", "Object"):
            raise status.bad_request(f'unrecognized includeObject value: "{include}"')
        now = dt.datetime.now(dt.timezone.utc)
        rows = []
        for obj in objects:
            row: dict[str, Any] = {"cells": self.cells(obj, now)}
            if include == "Object":
                row["object"] = obj
            elif include in ("", "Metadata"):
                row["object"] = partial_metadata(obj, api_group_version)
            else:
                row["object"] = None
            rows.append(row)
        out: dict[str, Any] = {"kind": "Table", "apiVersion": api_group_version,
                               "metadata": list_meta}
        out["columnDefinitions"] = None if no_headers else self.headers
        out["rows"] = rows
        return out


def _cell(kind: str, value: Any, now: dt.datetime) -> Any:
    if value is None:
        return None
    if kind == "string":
        return print_value(value)
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return int(value)
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if kind == "date":
        if not isinstance(value, str):
            return None
        when = parse_time(value)
        if when is None:
            return "<invalid>"
        return human_duration((now - when).total_seconds())
    return None


def partial_metadata(obj: dict, api_group_version: str = "meta.k8s.io/v1") -> dict:
    meta = obj.get("metadata") or {}
    return {"kind": "PartialObjectMetadata", "apiVersion": api_group_version,
            "metadata": {k: meta[k] for k in _META_KEYS if k in meta}}


def partial_metadata_list(objects: list[dict], list_meta: dict,
                          api_group_version: str = "meta.k8s.io/v1") -> dict:
    return {"kind": "PartialObjectMetadataList", "apiVersion": api_group_version,
            "metadata": list_meta,
            "items": [partial_metadata(o, api_group_version) for o in objects]}
