"""Trigger events: what a watch event of the data layer means for a trigger (Kubernetes' watch
types from the object's history), and how an event is presented to a function (Knative's
ApiServerSource CloudEvents).

Invariants:
- An event's id is `<key>@<mod_revision>` (DESIGN §9): the same change always has the same id,
  on every replica and every redelivery, so receivers can deduplicate.
- Type: a put that created the key is ADDED, a later put MODIFIED, a delete DELETED. With a
  label/field selector, a change that makes an object start matching is ADDED and one that
  makes it stop matching is DELETED (kube-apiserver's watch semantics with selectors).
"""
from __future__ import annotations

from dataclasses import dataclass

from .objects import ObjectRef

CE_TYPES = {"ADDED": "dev.knative.apiserver.resource.add",
            "MODIFIED": "dev.knative.apiserver.resource.update",
            "DELETED": "dev.knative.apiserver.resource.delete"}


@dataclass
class Event:
    type: str              # ADDED, MODIFIED, DELETED
    key: bytes
    revision: int          # the change's mod_revision (a delete: the delete's revision)
    object: dict           # the new state (DELETED: the last state)
    old: dict | None       # the previous state (None for ADDED, or when compacted away)
    ref: ObjectRef
    initial: bool = False  # from sendInitialEvents or a re-list, not from the watch
    count_at: int = 0      # the revision its pending count is held at (the watermark)
    enqueued: float = 0.0  # monotonic time it was read from the feed
    trace: dict | None = None  # W3C trace context of the write that made it (tracing on)

    @property
    def id(self) -> str:
        return f"{self.key.decode(errors='replace')}@{self.revision}"


def classify(created: bool, deleted: bool, new_matches: bool, old_matches: bool) -> str | None:
    """The watch type of a change for a selector, or None when the trigger does not see it.
    created: the put created the key; deleted: it is a delete; *_matches: whether the new and
    previous states pass the selector (False when there is no such state)."""
    if deleted:
        return "DELETED" if old_matches else None
    if created or not old_matches:
        return "ADDED" if new_matches else None
    return "MODIFIED" if new_matches else "DELETED"


def subject(obj: dict, plural: str) -> str:
    """Knative's ApiServerSource subject: /apis/<apiVersion>/namespaces/<ns>/<plural>/<name>."""
    meta = obj.get("metadata") or {}
    api = obj.get("apiVersion") or "v1"
    ns = meta.get("namespace")
    where = f"/namespaces/{ns}" if ns else ""
    return f"/apis/{api}{where}/{plural}/{meta.get('name', '')}"
