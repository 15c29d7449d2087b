"""The HTTP server: authentication and authorization in front of every request, discovery,
OpenAPI, health, and the resource endpoints (rest.py). Every failure leaves as a metav1.Status."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web

from . import discovery, metrics, openapi, requestinfo, status
from .auth import Authenticator, Authorizer
from .negotiate import JSON, negotiate, render
from .registry import Registry

log = logging.getLogger("kubefabric.aggregation")

# the Kubernetes version this server reports as its own (/version)
VERSION_INFO = {"major": "1", "minor": "37", "emulationMajor": "1", "emulationMinor": "37",
                "minCompatibilityMajor": "1", "minCompatibilityMinor": "36",
                "gitVersion": "v1.37.2-kubefabric", "gitCommit": "", "gitTreeState": "clean",
                "buildDate": "1970-01-01T00:00:00Z", "goVersion": "", "compiler": "python",
                "platform": "linux/amd64"}


@dataclass
class Health:
    """readyz fails while a named check is failing (e.g. the data layer is unreachable)."""
    checks: dict[str, Callable[[], Awaitable[str | None]]] = field(default_factory=dict)
    shutting_down: bool = False


def respond(request: web.Request, code: int, obj: Any, media: str | None = None) -> web.Response:
    media = media or JSON
    body = render(media, obj)
    return web.Response(status=code, body=body, content_type=media,
                        headers={"Cache-Control": "no-cache, private"})


def error_response(request: web.Request, err: status.ApiError) -> web.Response:
    media = JSON
    try:
        media = negotiate(request.headers.get("Accept")).media
    except status.ApiError:
        pass
    return respond(request, err.code, err.status(), media)


def _peer_certificate(request: web.Request) -> bytes | None:
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport else None
    if ssl_object is None:
        return None
    try:
        return ssl_object.getpeercert(binary_form=True)
    except ValueError:  # handshake not finished
        return None


class Server:
    def __init__(self, registry: Registry, authenticator: Authenticator, authorizer: Authorizer,
                 resources, health: Health | None = None):
        self.registry = registry
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.resources = resources  # rest.Resources: serves every /apis/<g>/<v>/... resource path
        self.health = health or Health()
        self._docs: dict[str, tuple[bytes, str]] = {}

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=3 * 1024 * 1024)
        r = app.router
        for path in ("/healthz", "/livez"):
            r.add_get(path, self._live)
        r.add_get("/readyz", self._ready)
        r.add_get("/version", self._version)
        r.add_get("/apis", self._apis)
        r.add_get("/apis/", self._apis)
        r.add_get("/openapi/v2", self._openapi_v2)
        r.add_get("/openapi/v3", self._openapi_v3_index)
        r.add_get("/openapi/v3/apis/{group}/{version}", self._openapi_v3)
        r.add_get("/apis/{group}", self._group)
        r.add_get("/apis/{group}/", self._group)
        r.add_get("/apis/{group}/{version}", self._version_resources)
        r.add_get("/apis/{group}/{version}/", self._version_resources)
        r.add_route("*", "/apis/{group}/{version}/{tail:.+}", self._resource)
        r.add_route("*", "/{tail:.*}", self._not_found)
        return app

    # ---- every request ----

    @web.middleware
    async def _middleware(self, request: web.Request, handler) -> web.StreamResponse:
        started = time.monotonic()
        info = requestinfo.parse(request.method, request.path, request.query)
        code = 500
        try:
            user = await self.authenticator.authenticate(_peer_certificate(request), request.headers)
            if user is None:
                raise status.unauthorized()
            attrs = info.attributes()
            allowed, reason = await self.authorizer.authorize(user, attrs)
            if not allowed:
                raise attrs.forbidden(user, reason)
            request["user"] = user
            request["info"] = info
            response = await handler(request)
            code = response.status
            return response
        except status.ApiError as err:
            code = err.code
            return error_response(request, err)
        except web.HTTPException as exc:
            code = exc.status
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path_qs)
            code = 500
            return error_response(request, status.internal("an unexpected error occurred"))
        finally:
            metrics.observe(request.method, info, code, time.monotonic() - started)

    # ---- health and version ----

    async def _live(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _ready(self, request: web.Request) -> web.Response:
        failing = []
        if self.health.shutting_down:
            failing.append("shutdown: the server is shutting down")
        for name, check in self.health.checks.items():
            problem = await check()
            if problem:
                failing.append(f"{name}: {problem}")
        if failing:
            return web.Response(status=500, text="\n".join(failing) + "\nreadyz check failed\n")
        return web.Response(text="ok")

    async def _version(self, request: web.Request) -> web.Response:
        return respond(request, 200, VERSION_INFO)

    # ---- discovery ----

    def _cached(self, name: str, build: Callable[[], dict]) -> tuple[bytes, str]:
        if name not in self._docs:
            self._docs[name] = openapi.encode(build())
        return self._docs[name]

    def _etagged(self, request: web.Request, name: str, build, content_type: str) -> web.Response:
        body, digest = self._cached(name, build)
        etag = f'"{digest}"'
        headers = {"ETag": etag, "Vary": "Accept", "Cache-Control": "no-cache, private"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers={**headers, "Content-Type": content_type})

    async def _apis(self, request: web.Request) -> web.Response:
        if discovery.wants_aggregated(request.headers.get("Accept", "")):
            return self._etagged(request, "aggregated",
                                 lambda: discovery.aggregated(self.registry), discovery.AGGREGATED_V2)
        return respond(request, 200, discovery.api_group_list(self.registry),
                       negotiate(request.headers.get("Accept")).media)

    async def _group(self, request: web.Request) -> web.Response:
        doc = discovery.api_group(self.registry, request.match_info["group"])
        if doc is None:
            return await self._not_found(request)
        return respond(request, 200, doc, negotiate(request.headers.get("Accept")).media)

    async def _version_resources(self, request: web.Request) -> web.Response:
        doc = discovery.api_resource_list(self.registry, request.match_info["group"],
                                          request.match_info["version"])
        if doc is None:
            return await self._not_found(request)
        return respond(request, 200, doc, negotiate(request.headers.get("Accept")).media)

    # ---- OpenAPI ----

    async def _openapi_v2(self, request: web.Request) -> web.Response:
        return self._etagged(request, "v2", lambda: openapi.v2_document(self.registry),
                             "application/json")

    async def _openapi_v3_index(self, request: web.Request) -> web.Response:
        return respond(request, 200, openapi.v3_index(self.registry))

    async def _openapi_v3(self, request: web.Request) -> web.Response:
        g, v = request.match_info["group"], request.match_info["version"]
        if openapi.v3_document(self.registry, g, v) is None:
            return await self._not_found(request)
        response = self._etagged(request, f"v3/{g}/{v}",
                                 lambda: openapi.v3_document(self.registry, g, v),
                                 "application/json")
        if request.query.get("hash"):
            response.headers["Cache-Control"] = "public, immutable"
            response.headers["Expires"] = "Thu, 01 Jan 2099 00:00:00 GMT"
        return response

    # ---- resources ----

    async def _resource(self, request: web.Request) -> web.StreamResponse:
        info: requestinfo.RequestInfo = request["info"]
        served = self.registry.lookup(info.group, info.version, info.resource)
        if served is None or not info.resource_request:
            return await self._not_found(request)
        return await self.resources.handle(request, info, served)

    async def _not_found(self, request: web.Request) -> web.Response:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "the server could not find the requested resource",
                "reason": "NotFound", "details": {}, "code": 404}
        return web.Response(status=404, body=json.dumps(body).encode(),
                            content_type="application/json")
