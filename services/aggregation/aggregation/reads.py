"""get and list: resourceVersion semantics, selectors pushed down to the Query API, pages
pinned to one revision by continue tokens, and kube-apiserver's errors for each."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from . import fielderrors as fe
from . import objects, status
from .fielderrors import FieldError
from .registry import Served
from .selectors import (GREATER_THAN, LESS_THAN, EXISTS, Requirement, SelectorError,
                        matches_all, parse_fields, parse_labels, selectable_fields)
from .store import Compacted, Refused, Store

log = logging.getLogger("kubefabric.aggregation.reads")

EXPIRED = "The resourceVersion for the provided list is too old."
INCONSISTENT_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list.")


def range_end(prefix: str) -> str:
    """The end of a prefix range (etcd's prefix+1 on the last byte; keys here are ASCII)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def parse_rv(text: str, field: str = "resourceVersion") -> int:
    """A resourceVersion parameter: "" and "0" are 0."""
    if text in ("", "0"):
        return 0
    if not text.isdigit():
        raise status.bad_request(
            f'invalid resource version: {field}: Invalid value: "{text}": strconv.ParseUint: '
            f'parsing "{text}": invalid syntax')
    return int(text)


def list_options_error(errors: list[FieldError]) -> status.ApiError:
    return fe.options_invalid("ListOptions", errors)


# (resource, field) pairs the topology does not index: selected here, not by the Query API
_UNDECLARED: set[tuple[str, str]] = set()
_META_FIELDS = ("metadata.name", "metadata.namespace")


@dataclass(frozen=True)
class Selection:
    """A list's or watch's selectors: pushed down to the index, and checked again here for
    what the Query API cannot answer (Gt/Lt label requirements are sent as Exists; fields the
    topology does not index are not sent)."""
    labels: tuple[Requirement, ...] = ()
    fields: tuple[Requirement, ...] = ()
    resource: str = ""

    @property
    def empty(self) -> bool:
        return not self.labels and not self.fields

    def pushdown_labels(self) -> tuple[Requirement, ...]:
        return tuple(Requirement(r.key, EXISTS) if r.op in (GREATER_THAN, LESS_THAN) else r
                     for r in self.labels)

    def pushdown_fields(self) -> tuple[Requirement, ...]:
        return tuple(r for r in self.fields if (self.resource, r.key) not in _UNDECLARED)

    @property
    def needs_filter(self) -> bool:
        return (any(r.op in (GREATER_THAN, LESS_THAN) for r in self.labels)
                or len(self.pushdown_fields()) != len(self.fields))

    def undeclared(self) -> None:
        """The data layer refused our field requirements: select the custom fields here."""
        for r in self.fields:
            if r.key not in _META_FIELDS:
                _UNDECLARED.add((self.resource, r.key))

    def matches(self, obj: dict, served: Served) -> bool:
        meta = obj.get("metadata") or {}
        if not matches_all(self.labels, meta.get("labels") or {}):
            return False
        if self.fields:
            values = selectable_fields(obj, served.resource.namespaced,
                                       served.version.selectable_fields)
            return matches_all(self.fields, values)
        return True


def selection(query, served: Served) -> Selection:
    try:
        labels = parse_labels(query.get("labelSelector", ""))
    except SelectorError as err:
        raise status.bad_request(str(err)) from None
    allowed = ["metadata.name", *(["metadata.namespace"] if served.resource.namespaced else []),
               *served.version.selectable_fields]
    try:
        fields = parse_fields(query.get("fieldSelector", ""), allowed)
    except SelectorError as err:
        raise status.bad_request(str(err)) from None
    return Selection(labels, fields, served.resource.name)


async def get(store: Store, served: Served, namespace: str, name: str, query) -> dict:
    rv = parse_rv(query.get("resourceVersion", ""))
    kv, revision = await store.get(served.resource.key(namespace, name))
    if rv and revision < rv:
        raise status.too_large_rv(rv, revision)
    if kv is None:
        raise status.not_found(served.resource.group, served.resource.plural, name)
    return objects.decode(kv, served)


@dataclass
class ListResult:
    items: list[dict]
    revision: int
    continue_token: str = ""
    remaining: int | None = None

    def meta(self) -> dict:
        # kube-apiserver's watch cache always sets continue, "" on the last page
        out: dict = {"continue": self.continue_token, "resourceVersion": str(self.revision)}
        if self.remaining is not None:
            out["remainingItemCount"] = self.remaining
        return out


def _limit(query) -> int:
    text = query.get("limit", "")
    if not text:
        return 0
    try:
        return max(int(text), 0)
    except ValueError:
        raise status.bad_request(f'strconv.ParseInt: parsing "{text}": invalid syntax') from None


async def list_objects(store: Store, served: Served, namespace: str, query) -> ListResult:
    rv_text, match = query.get("resourceVersion", ""), query.get("resourceVersionMatch", "")
    token = query.get("continue", "")
    errors: list[FieldError] = []
    if match:
        if not rv_text:
            errors.append(fe.forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden "
                                       "unless resourceVersion is provided"))
        if token:
            errors.append(fe.forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden "
                                       "when continue is provided"))
        if match not in ("Exact", "NotOlderThan"):
            errors.append(fe.not_supported("resourceVersionMatch", match, ["Exact", "NotOlderThan", ""]))
        if match == "Exact" and rv_text == "0":
            errors.append(fe.forbidden("resourceVersionMatch", 'resourceVersionMatch "exact" is '
                                       'forbidden for resourceVersion "0"'))
    if "sendInitialEvents" in query:
        errors.append(fe.forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list"))
    if errors:
        raise list_options_error(errors)
    sel = selection(query, served)
    limit = _limit(query)
    prefix = served.resource.prefix(namespace if served.resource.namespaced else None)
    start, revision, min_rv = prefix, 0, 0
    if token:
        start, token_rv = objects.decode_continue(token, prefix)
        if rv_text not in ("", "0"):
            raise status.bad_request("specifying resource version is not allowed when using continue")
        revision = max(token_rv, 0)
    else:
        rv = parse_rv(rv_text)
        if match == "Exact" or (not match and limit > 0 and rv > 0):
            revision = rv
        else:
            min_rv = rv
    try:
        page = await _read(store, served, start, range_end(prefix), revision, limit, sel)
    except Compacted:
        if token:
            new_token = objects.encode_continue(start, prefix, -1)
            raise status.expired(INCONSISTENT_CONTINUE, {"continue": new_token}) from None
        raise status.expired(EXPIRED) from None
    items, read_revision, more, next_key = page
    if min_rv and read_revision < min_rv:
        raise status.too_large_rv(min_rv, read_revision)
    result = ListResult(items, read_revision)
    if more:
        result.continue_token = objects.encode_continue(next_key, prefix, read_revision)
        if sel.empty:
            try:
                result.remaining = await store.count(next_key, range_end(prefix), read_revision)
            except Compacted:
                pass
    return result


async def _read(store: Store, served: Served, start: str, end: str, revision: int, limit: int,
                sel: Selection):
    """Up to `limit` matching objects from `start`: (items, revision, more, next_key). Pages of
    the Query API are read at one revision (the first page's) until the limit is met."""
    items: list[dict] = []
    pushed_labels = sel.pushdown_labels()
    while True:
        want = limit - len(items) if limit else 0
        try:
            page = await store.query(start, end, revision, want, pushed_labels, sel.pushdown_fields())
        except Refused as err:
            if "not declared" not in str(err) or not sel.pushdown_fields() or \
                    all(r.key in _META_FIELDS for r in sel.pushdown_fields()):
                raise status.bad_request(str(err)) from None
            log.info("%s: %s; selecting those fields here", sel.resource, err)
            sel.undeclared()
            continue
        revision = page.revision
        for kv in page.kvs:
            obj = objects.decode(kv, served)
            if not sel.needs_filter or sel.matches(obj, served):
                items.append(obj)
        if not page.more:
            return items, revision, False, ""
        if limit and len(items) >= limit:
            return items, revision, True, page.next_key
        start = page.next_key
