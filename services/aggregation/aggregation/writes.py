"""The write path: create, update, patch (JSON, merge, strategic-as-merge, server-side apply),
delete and deletecollection, on the resource and its status and scale subresources.

Every write is one Txn on kv-router guarded by the key's mod_revision (create: by its absence),
as kube-apiserver's own writes to etcd are: a PUT whose resourceVersion is stale is a 409
Conflict; a patch or delete that loses a race is re-applied to the new state.
"""
from __future__ import annotations

import copy
import logging
import time

from aiohttp import web

from . import objects, patching, reads, schema, status, strategy
from .app import respond
from . import fielderrors as fe
from .fielderrors import FieldError, to_status
from .hooks import HookContext
from .managedfields import FieldManager
from .negotiate import Target, patch_type, read_body
from .registry import Served
from .requestinfo import RequestInfo
from .scale import apply_scale, to_scale
from .store import Store

log = logging.getLogger("kubefabric.aggregation.writes")

RETRIES = 8
_STATUS_RESET = (("f:metadata",), ("f:spec",))
_MAIN_RESET = (("f:status",),)


class _Options:
    """The query options of a write (CreateOptions, UpdateOptions, PatchOptions)."""

    def __init__(self, request: web.Request, kind: str, apply: bool = False):
        q = request.query
        self.dry_run = q.getall("dryRun", [])
        errs: list[FieldError] = []
        for v in self.dry_run:
            if v != "All":
                errs.append(fe.not_supported("dryRun", v, ["All"]))
        manager = q.get("fieldManager", "")
        if apply and not manager:
            errs.append(fe.required("fieldManager", "is required for apply patch"))
        if len(manager) > 128:
            errs.append(fe.too_long("fieldManager", 128))
        if not manager:
            agent = request.headers.get("User-Agent", "").split("/")[0]
            manager = "".join(c for c in agent if c.isprintable())[:128]
        self.manager = manager
        self.validation = q.get("fieldValidation", "Warn" if not apply else "Strict")
        if self.validation not in ("Ignore", "Warn", "Strict"):
            errs.append(fe.not_supported("fieldValidation", self.validation, ["Ignore", "Warn", "Strict"]))
        force = q.get("force", "")
        self.force = force.lower() in ("1", "true")
        if force and not apply:
            errs.append(fe.forbidden("force", "may not be specified for non-apply patch"))
        if errs:
            raise fe.options_invalid(kind, errs)
        self.warnings: list[str] = []

    @property
    def dry(self) -> bool:
        return bool(self.dry_run)

    def unknown_fields(self, unknown: list[str], served: Served | None = None) -> None:
        if not unknown or self.validation == "Ignore":
            return
        if self.validation == "Strict":
            prefix = ""
            if served is not None:
                kind = served.resource.kind
                prefix = f'{kind} in version "{served.version.name}" cannot be handled as a {kind}: '
            raise status.bad_request(prefix + "strict decoding error: " +
                                     ", ".join(f'unknown field "{u}"' for u in unknown))
        self.warnings += [f'unknown field "{u}"' for u in unknown]


class Writes:
    def __init__(self, store: Store, resources, namespaces=None):
        self.store = store
        self.resources = resources  # rest.Resources: renders objects as negotiated
        self.namespaces = namespaces  # Namespaces (kube-apiserver's), None: not checked
        self._managers: dict[tuple[str, str], FieldManager] = {}

    def manager_for(self, served: Served) -> FieldManager:
        key = (served.resource.name, served.version.name)
        if key not in self._managers:
            self._managers[key] = FieldManager(served.version.schema, served.api_version)
        return self._managers[key]

    async def handle(self, request: web.Request, info: RequestInfo, served: Served, target: Target):
        verb = info.verb
        if verb == "create" and not info.name:
            return await self.create(request, info, served, target)
        if verb == "update" and info.name:
            return await self.update(request, info, served, target)
        if verb == "patch" and info.name:
            return await self.patch(request, info, served, target)
        if verb == "delete" and info.name and not info.subresource:
            return await self.delete(request, info, served, target)
        if verb == "deletecollection" and not info.subresource:
            return await self.delete_collection(request, info, served, target)
        raise status.method_not_allowed(request.method, "")

    def _respond(self, request, served, target, obj, code, opts: _Options | None = None):
        response = self.resources.render_object(request, served, target, obj, code)
        for w in (opts.warnings if opts else ()):
            response.headers.add("Warning", f'299 - "{_escape(w)}"')
        return response

    async def _live(self, served: Served, namespace: str, name: str):
        kv, _ = await self.store.get(served.resource.key(namespace, name))
        if kv is None:
            return None, None
        return strategy.default_read(objects.decode(kv, served), served), kv

    # ---- create ----

    async def create(self, request, info: RequestInfo, served: Served, target: Target):
        opts = _Options(request, "CreateOptions")
        obj = strategy.decode_body(read_body(request.content_type, await request.read()), served)
        opts.unknown_fields(strategy.prune_and_default(obj, served), served)
        strategy.check_namespace(obj, info.namespace, served)
        obj = await self._admit(served, obj, None, "CREATE", info, request)
        out = await self._create(served, obj, opts, info)
        return self._respond(request, served, target, out, 201, opts)

    async def _create(self, served: Served, obj: dict, opts: _Options, info: RequestInfo,
                      applied: bool = False) -> dict:
        if served.resource.namespaced and self.namespaces is not None:
            await self.namespaces.admit(info.namespace, served, obj["metadata"].get("name", ""))
        strategy.prepare_create(obj, served)
        strategy.validate(obj, served, None)
        if not applied:
            obj = self.manager_for(served).update(None, obj, opts.manager,
                                                  ignored=_MAIN_RESET if served.version.status else ())
        meta = obj["metadata"]
        if opts.dry:
            return obj
        key = served.resource.key(info.namespace, meta["name"])
        created, revision, _ = await self.store.create(key, objects.encode(obj, served))
        if not created:
            raise status.already_exists(served.resource.group, served.resource.plural, meta["name"])
        meta["resourceVersion"] = str(revision)
        return obj

    # ---- update (PUT) ----

    async def update(self, request, info: RequestInfo, served: Served, target: Target):
        opts = _Options(request, "UpdateOptions")
        body = read_body(request.content_type, await request.read())
        if info.subresource == "scale":
            return await self._update_scale(request, info, served, target, body, opts)
        obj = strategy.decode_body(body, served)
        opts.unknown_fields(strategy.prune_and_default(obj, served), served)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") != info.name:
            raise status.bad_request(f"the name of the object ({meta.get('name', '')}) does not "
                                     f"match the name on the URL ({info.name})")
        strategy.check_namespace(obj, info.namespace, served)
        rv = meta.get("resourceVersion", "")
        if not rv or rv == "0":
            raise strategy_invalid(served, info.name, [FieldError(
                "Invalid", "metadata.resourceVersion", 0, "must be specified for an update")])
        out = await self._write(served, info, opts, lambda live: copy.deepcopy(obj),
                                int(rv) if rv.isdigit() else -1, request=request)
        return self._respond(request, served, target, out, 200, opts)

    async def _update_scale(self, request, info, served, target, body, opts):
        if not isinstance(body, dict):
            raise status.bad_request("the object provided is unrecognized (must be a Scale)")
        rv = ((body.get("metadata") or {}).get("resourceVersion") or "")
        out = await self._write(served, info, opts, lambda live: apply_scale(copy.deepcopy(live), body, served),
                                int(rv) if rv.isdigit() else 0, subresource_override="")
        return respond(request, 200, to_scale(out, served), target.media)

    # ---- patch ----

    async def patch(self, request, info: RequestInfo, served: Served, target: Target):
        kind = patch_type(request.content_type)
        body = await request.read()
        opts = _Options(request, "PatchOptions", apply=kind == "apply")
        if kind == "apply":
            return await self._apply(request, info, served, target, body, opts)

        def mutate(live: dict) -> dict:
            base = to_scale(live, served) if info.subresource == "scale" else live
            patched = patching.apply_patch(kind, base, body)
            if info.subresource == "scale":
                return apply_scale(copy.deepcopy(live), patched, served)
            unknown = strategy.prune_and_default(patched, served)
            opts.unknown_fields(unknown, served)
            return patched

        out = await self._write(served, info, opts, mutate, 0, patch=True, request=request)
        if info.subresource == "scale":
            return respond(request, 200, to_scale(out, served), target.media)
        return self._respond(request, served, target, out, 200, opts)

    async def _apply(self, request, info, served, target, body, opts):
        config = patching.apply_configuration(body)
        config = strategy.decode_body(config, served)
        meta = config.setdefault("metadata", {})
        if meta.get("name", info.name) != info.name:
            raise status.bad_request(f"the name of the object ({meta.get('name')}) does not match "
                                     f"the name on the URL ({info.name})")
        meta["name"] = info.name
        # the configuration is pruned but not defaulted: defaults belong to no applier
        opts.unknown_fields(schema.prune(config, served.version.schema), served)
        strategy.check_namespace(config, info.namespace, served)
        fm = self.manager_for(served)
        sub = info.subresource
        ignored = _STATUS_RESET if sub == "status" else (_MAIN_RESET if served.version.status else ())

        def apply(live):
            return strategy.default_read(
                fm.apply(live, config, opts.manager, opts.force, sub, ignored), served)

        live, _ = await self._live(served, info.namespace, info.name)
        if live is None:
            if sub:
                raise status.not_found(served.resource.group, served.resource.plural, info.name)
            obj = apply(None)
            obj = await self._admit(served, obj, None, "CREATE", info, request)
            try:
                out = await self._create(served, obj, opts, info, applied=True)
            except status.ApiError as err:
                if err.reason != "AlreadyExists":
                    raise
            else:
                return self._respond(request, served, target, out, 201, opts)
        rv = meta.get("resourceVersion", "")
        out = await self._write(served, info, opts, apply, int(rv) if rv.isdigit() else 0,
                                patch=True, applied=True, request=request)
        return self._respond(request, served, target, out, 200, opts)

    # ---- the update loop ----

    async def _write(self, served: Served, info: RequestInfo, opts: _Options, mutate,
                     expected_rv: int, patch: bool = False, applied: bool = False,
                     subresource_override: str | None = None, request=None) -> dict:
        sub = info.subresource if subresource_override is None else subresource_override
        for _ in range(RETRIES):
            live, kv = await self._live(served, info.namespace, info.name)
            if live is None:
                raise status.not_found(served.resource.group, served.resource.plural, info.name)
            if expected_rv and expected_rv != kv.mod_revision:
                raise status.conflict(served.resource.group, served.resource.plural, info.name,
                                      status.MODIFIED)
            new = mutate(copy.deepcopy(live))
            new_meta = new.setdefault("metadata", {})
            if patch:
                patched_rv = new_meta.get("resourceVersion", "")
                if patched_rv and patched_rv != str(kv.mod_revision):
                    raise status.conflict(served.resource.group, served.resource.plural,
                                          info.name, status.MODIFIED)
                if new_meta.get("name") != info.name:
                    raise status.bad_request(f"the name of the object ({new_meta.get('name', '')}) "
                                             f"does not match the name on the URL ({info.name})")
                strategy.check_namespace(new, info.namespace, served)
            new = strategy.prepare_update(new, live, served, sub)
            new = await self._admit(served, new, live, "UPDATE", info, request)
            strategy.validate(new, served, live)
            if not applied:
                ignored = _STATUS_RESET if sub == "status" else (_MAIN_RESET if served.version.status else ())
                new = self.manager_for(served).update(live, new, opts.manager, sub, ignored)
            new["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            if new == live or opts.dry:
                return new
            key = served.resource.key(info.namespace, info.name)
            meta = new["metadata"]
            if meta.get("deletionTimestamp") and not meta.get("finalizers"):
                done, revision, _ = await self.store.delete(key, kv.mod_revision)
            else:
                done, revision, _ = await self.store.update(key, objects.encode(new, served), kv.mod_revision)
            if done:
                meta["resourceVersion"] = str(revision)
                return new
            if expected_rv:
                raise status.conflict(served.resource.group, served.resource.plural, info.name,
                                      status.MODIFIED)
        raise status.conflict(served.resource.group, served.resource.plural, info.name,
                              status.MODIFIED)

    async def _admit(self, served: Served, obj: dict, old: dict | None, operation: str,
                     info: RequestInfo, request=None) -> dict:
        hooks = served.resource.hooks
        if hooks is None:
            return obj
        ctx = HookContext(request, served, info.namespace, info.name, operation,
                          request.get("user") if request is not None else None, old,
                          self.resources)
        return await hooks.admit(obj, old, operation, ctx)

    async def replace_from_hook(self, ctx, obj: dict, subresource: str = "") -> dict:
        """A hook's write: PUT semantics on obj (its resourceVersion guards the write)."""
        info = RequestInfo(path=ctx.request.path, verb="update", resource_request=True,
                           group=ctx.served.resource.group, version=ctx.served.version.name,
                           namespace=ctx.namespace, resource=ctx.served.resource.plural,
                           name=obj["metadata"]["name"], subresource=subresource)
        opts = _Options(ctx.request, "UpdateOptions")
        rv = str(obj["metadata"].get("resourceVersion", ""))
        return await self._write(ctx.served, info, opts, lambda live: copy.deepcopy(obj),
                                 int(rv) if rv.isdigit() else 0, request=ctx.request)

    # ---- delete ----

    async def delete(self, request, info: RequestInfo, served: Served, target: Target):
        options = await _delete_options(request)
        out, code = await self._delete_one(served, info.namespace, info.name, options)
        return self._respond(request, served, target, out, code)

    async def _delete_one(self, served: Served, namespace: str, name: str, options: dict):
        pre = options.get("preconditions") or {}
        policy = options.get("propagationPolicy") or ("Orphan" if options.get("orphanDependents") else "")
        dry = bool(options.get("dryRun"))
        key = served.resource.key(namespace, name)
        for _ in range(RETRIES):
            live, kv = await self._live(served, namespace, name)
            if live is None:
                raise status.not_found(served.resource.group, served.resource.plural, name)
            meta = live["metadata"]
            # worded as kube-apiserver's delete (qualified by kind, as it does there)
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise status.conflict(served.resource.group, served.resource.kind, name,
                                      f"the UID in the precondition ({pre['uid']}) does not match "
                                      f"the UID in record ({meta.get('uid', '')}). The object might "
                                      "have been deleted and then recreated")
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
                raise status.conflict(served.resource.group, served.resource.kind, name,
                                      f"the ResourceVersion in the precondition "
                                      f"({pre['resourceVersion']}) does not match the ResourceVersion "
                                      f"in record ({meta.get('resourceVersion')}). The object might "
                                      "have been modified")
            finalizers = list(meta.get("finalizers") or [])
            wanted = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}.get(policy)
            if wanted and wanted not in finalizers and (finalizers or wanted):
                finalizers.append(wanted)
                if wanted == "orphan" and "foregroundDeletion" in finalizers:
                    finalizers.remove("foregroundDeletion")
                if wanted == "foregroundDeletion" and "orphan" in finalizers:
                    finalizers.remove("orphan")
            if finalizers:
                new = copy.deepcopy(live)
                nmeta = new["metadata"]
                if not nmeta.get("deletionTimestamp"):
                    if nmeta.get("generation", 0) > 0:
                        nmeta["generation"] = nmeta["generation"] + 1
                    nmeta["deletionTimestamp"] = strategy.now()
                nmeta["deletionGracePeriodSeconds"] = 0
                nmeta["finalizers"] = finalizers
                if new == live or dry:
                    return new, 200
                done, revision, _ = await self.store.update(key, objects.encode(new, served), kv.mod_revision)
                if done:
                    nmeta["resourceVersion"] = str(revision)
                    return new, 200
                continue
            if dry:
                return live, 200
            done, revision, _ = await self.store.delete(key, kv.mod_revision)
            if done:
                meta["resourceVersion"] = str(revision)
                return live, 200
        raise status.conflict(served.resource.group, served.resource.plural, name, status.MODIFIED)

    async def delete_collection(self, request, info: RequestInfo, served: Served, target: Target):
        options = await _delete_options(request)
        listed = await reads.list_objects(self.store, served, info.namespace, request.query)
        deleted = []
        for obj in listed.items:
            meta = obj["metadata"]
            try:
                out, _ = await self._delete_one(served, meta.get("namespace", ""), meta["name"], options)
            except status.ApiError as err:
                if err.code == 404:
                    continue
                raise
            deleted.append(out)
        return self.resources.render_list(request, served, target, deleted,
                                          {"continue": "", "resourceVersion": str(listed.revision)})


async def _delete_options(request) -> dict:
    body = await request.read()
    options: dict = {}
    if body.strip():
        options = status.json_body(body, dict, "the body of the request is not valid DeleteOptions",
                                   "the body of the request is not valid DeleteOptions")
    q = request.query
    if "propagationPolicy" in q:
        options["propagationPolicy"] = q["propagationPolicy"]
    if "dryRun" in q:
        options["dryRun"] = q.getall("dryRun")
    if "orphanDependents" in q:
        options["orphanDependents"] = q["orphanDependents"].lower() in ("1", "true")
    policy = options.get("propagationPolicy")
    if policy and policy not in ("Orphan", "Background", "Foreground"):
        raise status.ApiError(422, "Invalid", f'DeleteOptions.meta.k8s.io "" is invalid: '
                              f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                              '"Foreground", "Background", "Orphan", "nil"',
                              {"group": "meta.k8s.io", "kind": "DeleteOptions"})
    return options


def strategy_invalid(served: Served, name: str, errs: list[FieldError]) -> status.ApiError:
    return to_status(served.resource.group, served.resource.kind, name, errs)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


class Namespaces:
    """kube-apiserver's NamespaceLifecycle admission for creates: the namespace must exist and
    not be terminating. Answers are cached briefly (existing namespaces for a minute, missing
    ones for a second, as an informer would lag)."""

    def __init__(self, reviewer, ttl: float = 60.0):
        self.reviewer, self.ttl = reviewer, ttl
        self._cache: dict[str, tuple[float, str | None]] = {}

    async def admit(self, namespace: str, served: Served, name: str) -> None:
        now = time.monotonic()
        hit = self._cache.get(namespace)
        if hit is None or hit[0] < now:
            try:
                phase = await self.reviewer.namespace_phase(namespace)
            except Exception as err:  # kube-apiserver unreachable: do not block writes on it
                log.warning("cannot check namespace %s: %s", namespace, err)
                return
            ttl = self.ttl if phase == "Active" else 1.0
            self._cache[namespace] = hit = (now + ttl, phase)
        phase = hit[1]
        if phase is None:
            raise status.ApiError(404, "NotFound", f'namespaces "{namespace}" not found',
                                  {"name": namespace, "kind": "namespaces"})
        if phase == "Terminating":
            err = status.forbidden(served.resource.group, served.resource.plural, name,
                                   f"unable to create new content in namespace {namespace} "
                                   "because it is being terminated")
            err.details = {**(err.details or {}), "causes": [{
                "reason": "NamespaceTerminating", "message": f"namespace {namespace} is being terminated",
                "field": "metadata.namespace"}]}
            raise err
