"""watch: a stream of {"type": ..., "object": ...} lines from the watch-hub's feed of the
resource's key range, with kube-apiserver's semantics:

- resourceVersion unset or "0" (and no sendInitialEvents=false): ADDED for every object that
  exists, then the changes after that state;
- resourceVersion=N: the changes after N (410 Expired as an ERROR event when N is compacted);
- sendInitialEvents=true (resourceVersionMatch=NotOlderThan): the state as ADDED events, then a
  BOOKMARK annotated k8s.io/initial-events-end, then the changes;
- allowWatchBookmarks: a BOOKMARK about every minute carrying the revision every event up to
  which has been sent;
- selectors: an object that starts matching arrives as ADDED, one that stops as DELETED (its
  previous state at the event's revision), as kube-apiserver's watch cache does.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import time

from aiohttp import web

from . import fielderrors as fe
from . import metrics, objects, status
from .negotiate import Target
from .reads import Selection, _read, list_options_error, parse_rv, range_end, selection
from .registry import Served
from .store import KV, Compacted, Store
from .table import TableConvertor, partial_metadata

log = logging.getLogger("kubefabric.aggregation.watch")

INITIAL_EVENTS_END = "k8s.io/initial-events-end"
_TRUE = ("1", "true")


def _flag(query, name: str) -> bool | None:
    if name not in query:
        return None
    return query.get(name, "").lower() in _TRUE


def check_options(query) -> None:
    errors = []
    send_initial = _flag(query, "sendInitialEvents")
    match = query.get("resourceVersionMatch", "")
    if send_initial is not None and match != "NotOlderThan":
        errors.append(fe.forbidden("resourceVersionMatch", "sendInitialEvents requires setting "
                                   "resourceVersionMatch to NotOlderThan"))
    if match:
        if send_initial is None:
            errors.append(fe.forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden "
                                       "for watch unless sendInitialEvents is provided"))
        if match != "NotOlderThan":
            errors.append(fe.not_supported("resourceVersionMatch", match, ["NotOlderThan"]))
        if query.get("continue"):
            errors.append(fe.forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden "
                                       "when continue is provided"))
    if errors:
        raise list_options_error(errors)


class WatchSettings:
    def __init__(self, bookmark_interval: float = 60.0, min_request_timeout: float = 1800.0):
        self.bookmark_interval = bookmark_interval
        self.min_request_timeout = min_request_timeout


class _Encoder:
    """Event lines in the negotiated form (objects, Tables of one row, or metadata only)."""

    def __init__(self, served: Served, target: Target, query):
        self.served, self.target = served, target
        self.table = TableConvertor(served.version) if target.transform == "Table" else None
        self.include = query.get("includeObject", "")
        self.headers_sent = False

    def line(self, kind: str, obj: dict) -> bytes:
        if kind == "BOOKMARK" or kind == "ERROR":
            body = obj
        elif self.table is not None:
            meta = {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion", "")}
            body = self.table.table([obj], meta, self.include, self.headers_sent,
                                    self.target.meta_api_version)
            self.headers_sent = True
        elif self.target.transform == "PartialObjectMetadata":
            body = partial_metadata(obj, self.target.meta_api_version)
        else:
            body = obj
        return json.dumps({"type": kind, "object": body}, separators=(",", ":")).encode() + b"\n"


def _bookmark(served: Served, revision: int, initial_end: bool = False) -> dict:
    meta: dict = {"resourceVersion": str(revision)}
    if initial_end:
        meta["annotations"] = {INITIAL_EVENTS_END: "true"}
    return {"kind": served.resource.kind, "apiVersion": served.api_version, "metadata": meta}


def _with_rv(kv: KV, served: Served, revision: int) -> dict:
    obj = objects.decode(kv, served)
    obj["metadata"]["resourceVersion"] = str(revision)
    return obj


async def serve(request: web.Request, store: Store, served: Served, namespace: str, query,
                target: Target, settings: WatchSettings) -> web.StreamResponse:
    check_options(query)
    if target.transform not in ("", "Table", "PartialObjectMetadata"):
        raise status.not_acceptable(request.headers.get("Accept", ""))
    sel = selection(query, served)
    send_initial = _flag(query, "sendInitialEvents")
    bookmarks = bool(_flag(query, "allowWatchBookmarks"))
    rv_text = query.get("resourceVersion", "")
    rv = parse_rv(rv_text)
    prefix = served.resource.prefix(namespace if served.resource.namespaced else None)
    end = range_end(prefix)
    timeout = query.get("timeoutSeconds", "")
    try:
        seconds = float(timeout) if timeout else settings.min_request_timeout * (1 + random.random())
    except ValueError:
        raise status.bad_request(f'strconv.ParseInt: parsing "{timeout}": invalid syntax') from None
    deadline = time.monotonic() + seconds

    initial: list[dict] = []
    start_after = rv
    if send_initial or (send_initial is None and rv == 0):
        items, revision, _, _ = await _read(store, served, prefix, end, 0, 0, sel)
        if send_initial and rv and revision < rv:
            raise status.too_large_rv(rv, revision)
        initial, start_after = items, revision
    elif rv == 0:
        _, start_after = await store.get(prefix)  # sendInitialEvents=false: from now on

    response = web.StreamResponse(status=200, headers={
        "Content-Type": "application/json", "Cache-Control": "no-cache, private"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    encoder = _Encoder(served, target, query)
    group, resource = served.resource.group, served.resource.plural
    metrics.watches.labels(group, resource).inc()
    try:
        for obj in initial:
            await response.write(encoder.line("ADDED", obj))
        if send_initial and bookmarks:
            await response.write(encoder.line("BOOKMARK", _bookmark(served, start_after, True)))
        await _follow(response, encoder, store, served, sel, prefix, end, start_after, rv_text,
                      bookmarks, deadline, settings)
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    finally:
        metrics.watches.labels(group, resource).dec()
    return response


async def _follow(response, encoder: _Encoder, store: Store, served: Served, sel: Selection,
                  prefix: str, end: str, after: int, rv_text: str, bookmarks: bool,
                  deadline: float, settings: WatchSettings) -> None:
    """Relay the feed from revision `after` + 1 until the deadline, the client leaving or the
    feed failing. A reader task fills a queue so that waiting for the next batch can time out
    (for bookmarks) without cancelling a read on the gRPC stream."""
    stream = store.watch(prefix, end, after + 1)
    queue: asyncio.Queue = asyncio.Queue(maxsize=64)

    async def read() -> None:
        try:
            async for batch in stream:
                await queue.put(batch)
        except Exception as err:  # handed to the writer: Compacted, Unavailable, ...
            await queue.put(err)
            return
        await queue.put(StopAsyncIteration())

    reader = asyncio.create_task(read())
    next_bookmark = time.monotonic() + settings.bookmark_interval
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                return
            wait = min(deadline, next_bookmark) - now if bookmarks else deadline - now
            try:
                item = await asyncio.wait_for(queue.get(), timeout=max(wait, 0.01))
            except asyncio.TimeoutError:
                if bookmarks and time.monotonic() >= next_bookmark:
                    await stream.request_progress()
                    next_bookmark = time.monotonic() + settings.bookmark_interval
                continue
            if isinstance(item, StopAsyncIteration):
                return
            if isinstance(item, Compacted):
                expired = status.expired(f"too old resource version: {rv_text or after} "
                                         f"({item.compact_revision})")
                await response.write(encoder.line("ERROR", expired.status()))
                return
            if isinstance(item, BaseException):
                log.warning("watch of %s ended: %s", prefix, item)
                return
            if not item.events:
                if bookmarks:
                    await response.write(encoder.line("BOOKMARK", _bookmark(served, item.revision)))
                continue
            for event in item.events:
                line = _event_line(encoder, served, sel, event)
                if line:
                    await response.write(line)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await stream.aclose()


def _event_line(encoder: _Encoder, served: Served, sel: Selection, event) -> bytes | None:
    revision = event.kv.mod_revision
    cur = None if event.kind == "DELETE" else objects.decode(event.kv, served)
    prev = _with_rv(event.prev, served, revision) if event.prev is not None else None
    cur_passes = cur is not None and (sel.empty or sel.matches(cur, served))
    prev_passes = prev is not None and (sel.empty or sel.matches(prev, served))
    if cur_passes and not prev_passes:
        return encoder.line("ADDED", cur)
    if cur_passes and prev_passes:
        return encoder.line("MODIFIED", cur)
    if prev_passes:
        return encoder.line("DELETED", prev)
    return None

