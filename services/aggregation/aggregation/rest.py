"""Resource endpoints: one handler per verb, dispatched on kube-apiserver's request info.

    /apis/<g>/<v>/namespaces/<ns>/<plural>            list watch create deletecollection
    /apis/<g>/<v>/namespaces/<ns>/<plural>/<name>     get update patch delete (watch: legacy)
    /apis/<g>/<v>/namespaces/<ns>/<plural>/<name>/status    get update patch
    /apis/<g>/<v>/namespaces/<ns>/<plural>/<name>/<hook>    a hooks module's subresource
    /apis/<g>/<v>/<plural>[/<name>...]                cluster-scoped, or every namespace
"""
from __future__ import annotations

from aiohttp import web

from . import reads, status, watch
from .app import respond
from .hooks import HookContext
from .negotiate import Target, negotiate
from .registry import Registry, Served
from .requestinfo import RequestInfo
from .scale import to_scale
from .store import Store, Unavailable
from .table import TableConvertor, partial_metadata, partial_metadata_list


class Resources:
    def __init__(self, store: Store, watch_settings: watch.WatchSettings | None = None,
                 writes=None):
        self.store = store
        self.watch_settings = watch_settings or watch.WatchSettings()
        self.writes = writes  # writes.Writes: create, update, patch, delete, deletecollection
        self.registry: Registry | None = None   # every resource served: hooks list other resources
        self._tables: dict[tuple[str, str], TableConvertor] = {}

    async def handle(self, request: web.Request, info: RequestInfo, served: Served) -> web.StreamResponse:
        r = served.resource
        if r.namespaced and not info.namespace and info.name:
            raise _no_such_path()
        if not r.namespaced and info.namespace:
            raise _no_such_path()
        target = negotiate(request.headers.get("Accept"))
        try:
            return await self._dispatch(request, info, served, target)
        except Unavailable as err:
            raise status.service_unavailable(f"the data layer is unavailable: {err}") from None

    async def _dispatch(self, request, info: RequestInfo, served: Served, target: Target):
        verb, sub, query = info.verb, info.subresource, request.query
        hooks = served.resource.hooks
        if info.name == "-" or (sub and sub not in ("status", "scale")):
            return await self._hook_endpoint(request, info, served)
        if sub == "status" and not served.version.status:
            raise _no_such_path()
        if sub == "scale" and served.version.scale is None:
            raise _no_such_path()
        if verb == "get":
            obj = await reads.get(self.store, served, info.namespace, info.name, query)
            if sub == "scale":
                obj = to_scale(obj, served)
                return respond(request, 200, obj, target.media)
            return self.render_object(request, served, target, obj)
        if verb == "list":
            if sub:
                raise _no_such_path()
            if (info.name == "" and info.resource == "namespaces"):
                raise _no_such_path()
            result = await reads.list_objects(self.store, served, info.namespace, query)
            return self.render_list(request, served, target, result.items, result.meta())
        if verb == "watch":
            if sub:
                raise _no_such_path()
            q = query
            if info.name and "fieldSelector" not in query:
                q = {**query, "fieldSelector": f"metadata.name={info.name}"}
            return await watch.serve(request, self.store, served, info.namespace, q, target,
                                     self.watch_settings)
        if self.writes is None:
            raise status.method_not_allowed(request.method, "")
        return await self.writes.handle(request, info, served, target)

    async def _hook_endpoint(self, request, info: RequestInfo, served: Served):
        """A hooks module's collection endpoint (<plural>/-/<name>) or subresource."""
        hooks, sub = served.resource.hooks, info.subresource
        ctx = HookContext(request, served, info.namespace, info.name, request.method.upper(),
                          request.get("user"), None, self)
        if hooks is not None and info.name == "-" and sub in hooks.collections:
            ctx.name = ""
            return await hooks.serve(hooks.collections[sub], ctx)
        if hooks is None or info.name == "-" or sub not in hooks.subresources:
            raise _no_such_path()
        ctx.object = await reads.get(self.store, served, info.namespace, info.name, {})
        return await hooks.serve(hooks.subresources[sub], ctx)

    def table_for(self, served: Served) -> TableConvertor:
        key = (served.resource.name, served.version.name)
        if key not in self._tables:
            self._tables[key] = TableConvertor(served.version)
        return self._tables[key]

    def render_object(self, request, served: Served, target: Target, obj: dict, code: int = 200):
        if target.transform == "Table":
            meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            body = self.table_for(served).table([obj], meta, request.query.get("includeObject", ""),
                                                _no_headers(request), target.meta_api_version)
        elif target.transform == "PartialObjectMetadata":
            body = partial_metadata(obj, target.meta_api_version)
        elif target.transform == "PartialObjectMetadataList":
            raise status.not_acceptable_message(
                "you requested PartialObjectMetadataList, but the requested object is not a list "
                f"(*unstructured.Unstructured)")
        else:
            body = obj
        return respond(request, code, body, target.media)

    def render_list(self, request, served: Served, target: Target, items: list[dict], meta: dict):
        if target.transform and not meta.get("continue"):
            meta = {k: v for k, v in meta.items() if k != "continue"}  # typed ListMeta: omitempty
        if target.transform == "Table":
            body = self.table_for(served).table(items, meta, request.query.get("includeObject", ""),
                                                _no_headers(request), target.meta_api_version)
        elif target.transform == "PartialObjectMetadataList":
            body = partial_metadata_list(items, meta, target.meta_api_version)
        elif target.transform == "PartialObjectMetadata":
            raise status.not_acceptable_message(
                "you requested PartialObjectMetadata, but the requested object is a list "
                "(*unstructured.UnstructuredList)")
        else:
            body = {"apiVersion": served.api_version, "items": items,
                    "kind": served.resource.list_kind, "metadata": meta}
        return respond(request, 200, body, target.media)


def _no_headers(request) -> bool:
    return request.query.get("noHeaders", "").lower() in ("1", "true")


def _no_such_path() -> status.ApiError:
    return status.ApiError(404, "NotFound", "the server could not find the requested resource", {})
