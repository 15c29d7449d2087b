"""metadata.managedFields: who owns which fields, kept on every write as kube-apiserver keeps it,
and server-side apply (merge, prune of fields an applier stopped sending, conflicts).

Managers are identified as kube-apiserver identifies them: (manager, operation, apiVersion,
subresource) for Update, (manager, Apply, subresource) for Apply. An update gives its manager
the fields it changed and takes them from everyone else; an apply gives its manager exactly the
fields of its configuration, refusing (409) to take fields others own with different values
unless forced.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from . import fieldsets as fs
from . import status
from .fieldsets import Path


@dataclass
class Entry:
    manager: str
    operation: str           # Apply or Update
    api_version: str
    subresource: str = ""
    time: str | None = None
    fields: set[Path] = field(default_factory=set)

    @property
    def ident(self) -> tuple:
        if self.operation == "Apply":
            return (self.manager, "Apply", "", self.subresource)
        return (self.manager, "Update", self.api_version, self.subresource)

    def identifier_json(self) -> str:
        """The identifier as kube-apiserver encodes it (conflict messages sort on it)."""
        d: dict[str, Any] = {"manager": self.manager, "operation": self.operation}
        if self.operation != "Apply":
            d["apiVersion"] = self.api_version
        if self.subresource:
            d["subresource"] = self.subresource
        return json.dumps(d, separators=(",", ":"))

    def describe(self) -> str:
        text = f'"{self.manager}"'
        if self.subresource:
            text += f' with subresource "{self.subresource}"'
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def decode(obj: dict | None) -> dict[tuple, Entry]:
    out: dict[tuple, Entry] = {}
    for e in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
        if not isinstance(e, dict):
            continue
        entry = Entry(e.get("manager", ""), e.get("operation", "Update"), e.get("apiVersion", ""),
                      e.get("subresource", ""), e.get("time"),
                      fs.from_fields_v1(e.get("fieldsV1") or {}))
        out[entry.ident] = entry
    return out


def encode(entries: dict[tuple, Entry]) -> list[dict]:
    items = []
    for e in entries.values():
        if not e.fields:
            continue
        d: dict[str, Any] = {"manager": e.manager, "operation": e.operation,
                             "apiVersion": e.api_version}
        if e.time:
            d["time"] = e.time
        d["fieldsType"] = "FieldsV1"
        d["fieldsV1"] = fs.to_fields_v1(e.fields)
        if e.subresource:
            d["subresource"] = e.subresource
        items.append(d)

    def order(d):
        seconds = d.get("time") or ""
        return (d["operation"], seconds, d["manager"], d["apiVersion"], d.get("subresource", ""))
    return sorted(items, key=order)


def _strip(obj: dict) -> dict:
    out = copy.deepcopy(obj)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return out


class FieldManager:
    """One served version's field manager. `ignored` are the reset fields of the endpoint
    (status on the main resource when the status subresource exists; metadata and spec on
    /status): never owned through it."""

    def __init__(self, schema: dict, api_version: str):
        self.schema = fs.root_schema(schema)
        self.api_version = api_version

    def _paths(self, obj: dict | None) -> dict[Path, Any]:
        return fs.paths(_strip(obj), self.schema) if obj else {}

    def update(self, live: dict | None, new: dict, manager: str, subresource: str = "",
               ignored: tuple[Path, ...] = ()) -> dict:
        """`new` with managedFields after `manager` changed `live` into it (live None: create)."""
        entries = decode(live) if live is not None else {}
        old_paths, new_paths = self._paths(live), self._paths(new)
        added, removed, modified = fs.compare(old_paths, new_paths)
        changed = fs.exclude(added | modified, ignored)
        removed = fs.exclude(removed, ignored)
        for e in entries.values():
            e.fields -= changed
            e.fields -= removed
        if changed:
            me = Entry(manager, "Update", self.api_version, subresource)
            prev = entries.get(me.ident)
            me.fields = changed | (prev.fields if prev else set())
            me.time = now()
            entries[me.ident] = me
        out = copy.deepcopy(new)
        out.setdefault("metadata", {})["managedFields"] = encode(entries)
        if not out["metadata"]["managedFields"]:
            del out["metadata"]["managedFields"]
        return out

    def apply(self, live: dict | None, config: dict, manager: str, force: bool,
              subresource: str = "", ignored: tuple[Path, ...] = ()) -> dict:
        """The object after applying `config` as `manager` (live None: create); 409 on
        conflicts unless forced."""
        entries = decode(live) if live is not None else {}
        me = Entry(manager, "Apply", self.api_version, subresource)
        last = entries.get(me.ident)
        config = _strip(config)
        config_paths = self._paths(config)
        applied = fs.exclude(set(config_paths) - fs.STRIPPED, ignored)
        base = _strip(live) if live is not None else {}
        merged = merge(base, config, self.schema)
        if last is not None:
            others = set().union(*(e.fields for k, e in entries.items() if k != me.ident)) \
                if len(entries) > 1 else set()
            drop = last.fields - applied - others
            merged = remove_paths(merged, drop, self.schema)
        old_paths, new_paths = self._paths(base), self._paths(merged)
        added, removed, modified = fs.compare(old_paths, new_paths)
        changed = fs.exclude(added | modified, ignored)
        conflicts = []
        for k, e in sorted(entries.items(), key=lambda kv: kv[1].identifier_json()):
            if k == me.ident:
                continue
            clash = e.fields & changed
            if clash:
                conflicts.append((e, sorted(clash)))
        if conflicts and not force:
            raise conflict_error(conflicts)
        for k, e in entries.items():
            if k != me.ident:
                e.fields -= changed
                e.fields -= removed
        me.fields = applied
        noop = merged == base
        me.time = (last.time if last is not None and noop else now())
        entries[me.ident] = me
        out = merged
        out.setdefault("metadata", {})["managedFields"] = encode(entries)
        return out


def conflict_error(conflicts: list[tuple[Entry, list[Path]]]) -> status.ApiError:
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {e.describe()}",
               "field": fs.describe(p)} for e, paths in conflicts for p in paths]
    total = len(causes)
    if total == 1:
        e, paths = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {e.describe()}: {fs.describe(paths[0])}"
    else:
        lines = []
        for e, paths in conflicts:
            lines.append(f"conflicts with {e.describe()}:")
            lines.extend(f"- {fs.describe(p)}" for p in paths)
        message = f"Apply failed with {total} conflicts: " + "\n".join(lines)
    return status.ApiError(409, "Conflict", message, {"causes": causes})


# ---- merging and removing by path, over the schema ----

def merge(live: Any, config: Any, s: dict | None) -> Any:
    """config merged into live: maps and structs field by field, list-type maps item by key,
    list-type sets by value, everything atomic replaced."""
    if isinstance(live, dict) and isinstance(config, dict) and not fs._atomic(s, config):
        out = copy.deepcopy(live)
        for k, v in config.items():
            out[k] = merge(live.get(k), v, fs._child_schema(s, k)) if k in live else copy.deepcopy(v)
        return out
    if isinstance(live, list) and isinstance(config, list) and s is not None:
        kind = s.get("x-kubernetes-list-type", "atomic")
        if kind == "set":
            return copy.deepcopy(live) + [copy.deepcopy(v) for v in config if v not in live]
        if kind == "map":
            keys = s.get("x-kubernetes-list-map-keys") or []
            items = s.get("items")
            out = copy.deepcopy(live)
            index = {fs.key_element(i, keys): n for n, i in enumerate(out) if isinstance(i, dict)}
            for item in config:
                if not isinstance(item, dict):
                    continue
                k = fs.key_element(item, keys)
                if k in index:
                    out[index[k]] = merge(out[index[k]], item, items)
                else:
                    out.append(copy.deepcopy(item))
            return out
    return copy.deepcopy(config)


def remove_paths(obj: Any, paths: set[Path], s: dict | None) -> Any:
    """obj without the given paths (and what is below them)."""
    out = copy.deepcopy(obj)
    for p in sorted(paths, key=len, reverse=True):
        _remove(out, p, s)
    return out


def _remove(node: Any, path: Path, s: dict | None) -> None:
    for i, el in enumerate(path):
        last = i == len(path) - 1
        kind, _, rest = el.partition(":")
        if kind == "f" and isinstance(node, dict):
            if rest not in node:
                return
            if last:
                del node[rest]
                return
            node, s = node[rest], fs._child_schema(s, rest)
        elif kind in ("k", "v") and isinstance(node, list):
            keys = (s or {}).get("x-kubernetes-list-map-keys") or []
            match = None
            for n, item in enumerate(node):
                if (kind == "k" and isinstance(item, dict) and fs.key_element(item, keys) == el) or \
                        (kind == "v" and "v:" + fs._json(item) == el):
                    match = n
                    break
            if match is None:
                return
            if last:
                del node[match]
                return
            node, s = node[match], (s or {}).get("items")
        else:
            return
