"""The pricing function: an HTTP endpoint that receives CloudEvents (from an HTTPTrigger on
Orders) and, for each Order ADDED, writes the order's price to status.total through the
Kubernetes API.

Delivery is at least once: the same event (same id) may arrive twice, concurrently even, and an
event may arrive after its order was deleted or replaced by a new one of the same name. Pricing is
idempotent by event id: status.pricedBy.eventId records the event that priced the order, and the
status patch is conditional on the resourceVersion just read, so of two concurrent deliveries one
patches and the other, refused with 409, re-reads and finds the order already priced.

    POST /          a CloudEvent (binary or structured mode); answers 200 with what was done
    GET  /healthz   200 once serving
    GET  /stats     counters by outcome, how many times each recent event id priced an order, and
                    the W3C traceparent each recent event id was delivered with
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import os
import signal
from datetime import datetime, timezone

from aiohttp import web
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.types import PatchType
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind

from shop import model, telemetry

log = logging.getLogger("shop.function")

ADDED = "dev.knative.apiserver.resource.add"   # the trigger's types are Knative ApiServerSource's
CONFLICT_RETRIES = 10
RECENT_EVENTS = 100_000                         # event ids kept for /stats


class BadEvent(ValueError):
    """The request is not a CloudEvent about an Order: answered 400, never retried usefully."""


class Pricer:
    def __init__(self, client: AsyncClient):
        self.client = client
        self.outcomes: collections.Counter[str] = collections.Counter()
        # event id -> how many times it changed an order: exactly once is the contract
        self.priced: collections.OrderedDict[str, int] = collections.OrderedDict()
        # event id -> the W3C traceparent its last delivery carried (tracing on in the trigger)
        self.traceparents: collections.OrderedDict[str, str] = collections.OrderedDict()

    async def handle(self, event) -> dict:
        """Price the order of an ADDED event; every other event type is acknowledged and ignored."""
        if event.get_type() != ADDED:
            return self._done("ignored", event, None, f"type {event.get_type()}")
        obj = order_of(event)
        meta = obj["metadata"]
        namespace, name = meta.get("namespace"), meta.get("name")
        if not namespace or not name:
            raise BadEvent("the event's Order has no metadata.namespace or metadata.name")
        for _ in range(CONFLICT_RETRIES):
            try:
                current = await self.client.get(model.Order, name, namespace=namespace)
            except ApiError as err:
                if err.status.code == 404:
                    return self._done("gone", event, obj, "the order no longer exists")
                raise
            if meta.get("uid") and current.metadata.uid != meta["uid"]:
                return self._done("stale", event, obj, "the order was replaced by a newer one of the same name")
            status = current.get("status") or {}
            if (status.get("pricedBy") or {}).get("eventId") == event.get_id():
                return self._done("duplicate", event, obj, f"already priced: total {status.get('total')}")
            patch = {"metadata": {"resourceVersion": current.metadata.resourceVersion},
                     "status": self._status(event, current.get("spec") or {})}
            try:
                await self.client.patch(model.Order.Status, name, patch, namespace=namespace,
                                        patch_type=PatchType.MERGE, field_manager="shop-function")
            except ApiError as err:
                if err.status.code == 409:   # changed since we read it: read again
                    continue
                if err.status.code == 404:
                    return self._done("gone", event, obj, "the order was deleted meanwhile")
                raise
            self.priced[event.get_id()] = self.priced.pop(event.get_id(), 0) + 1
            while len(self.priced) > RECENT_EVENTS:
                self.priced.popitem(last=False)
            detail = (f"total {patch['status']['total']}" if "total" in patch["status"]
                      else patch["status"]["pricingError"])
            return self._done("priced", event, obj, detail)
        raise RuntimeError(f"order {namespace}/{name} kept changing: {CONFLICT_RETRIES} conflicting patches")

    @staticmethod
    def _status(event, spec: dict) -> dict:
        by = {"eventId": event.get_id(),
              "pricedAt": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        try:
            return {"total": model.price(spec), "pricingError": None, "pricedBy": by}
        except model.UnknownSku as err:
            return {"pricingError": str(err), "pricedBy": by}

    def _done(self, outcome: str, event, obj: dict | None, detail: str) -> dict:
        self.outcomes[outcome] += 1
        where = ""
        if obj:
            where = f" {obj['metadata'].get('namespace')}/{obj['metadata'].get('name')}"
        log.info("event %s%s: %s (%s)", event.get_id(), where, outcome, detail)
        return {"event": event.get_id(), "outcome": outcome, "detail": detail}

    def note_trace(self, event_id: str, traceparent: str) -> None:
        self.traceparents[event_id] = traceparent
        self.traceparents.move_to_end(event_id)
        while len(self.traceparents) > RECENT_EVENTS:
            self.traceparents.popitem(last=False)

    def stats(self) -> dict:
        return {"outcomes": dict(self.outcomes), "priced": dict(self.priced),
                "traceparents": dict(self.traceparents)}


def order_of(event) -> dict:
    data = event.get_data()
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except ValueError as err:
            raise BadEvent(f"the event's data is not JSON: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("metadata"), dict):
        raise BadEvent("the event's data is not a Kubernetes object")
    if data.get("kind") not in (None, model.KIND):
        raise BadEvent(f"the event is about a {data.get('kind')}, not an {model.KIND}")
    return data


def make_app(pricer: Pricer) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            event = from_http_event(HTTPMessage(headers=dict(request.headers), body=body))
        except Exception as err:  # noqa: BLE001 - the SDK raises several kinds for bad input
            return web.json_response({"error": f"not a CloudEvent: {err}"}, status=400)
        if traceparent := request.headers.get("traceparent"):
            pricer.note_trace(event.get_id(), traceparent)
        token = otel_context.attach(telemetry.context_of(request.headers, event))
        try:
            with telemetry.tracer().start_as_current_span(
                    "shop.function price", kind=SpanKind.SERVER,
                    attributes={"cloudevents.event_id": event.get_id(),
                                "cloudevents.event_type": event.get_type(),
                                "cloudevents.event_subject": event.get_subject() or ""}):
                result = await pricer.handle(event)
        except BadEvent as err:
            log.warning("event %s refused: %s", event.get_id(), err)
            return web.json_response({"error": str(err)}, status=400)
        except (ApiError, RuntimeError, *model.UNANSWERED) as err:
            # 5xx: the trigger retries the delivery (and pricing is idempotent)
            log.warning("event %s failed, to be retried: %r", event.get_id(), err)
            return web.json_response({"error": str(err)}, status=503)
        finally:
            otel_context.detach(token)
        return web.json_response(result)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(pricer.stats())

    app = web.Application(client_max_size=4 << 20)
    app.router.add_post("/", receive)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/stats", stats)
    return app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default=os.environ.get("SHOP_LISTEN", "127.0.0.1:8080"),
                        help="HOST:PORT to serve CloudEvents on [env SHOP_LISTEN; default 127.0.0.1:8080]")


async def serve(args: argparse.Namespace) -> int:
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        log.error("--listen %r: expected HOST:PORT", args.listen)
        return 2
    client = AsyncClient(field_manager="shop-function")
    runner = web.AppRunner(make_app(Pricer(client)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host.strip("[]"), int(port))
    await site.start()
    log.info("pricing function: CloudEvents on http://%s/", args.listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: finishing in-flight deliveries")
    await runner.cleanup()
    await client.close()
    return 0
