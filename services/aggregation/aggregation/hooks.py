"""Python hooks for what a CRD cannot say, declared in a Python file beside the CRD manifest
(`widgets.yaml` -> `widgets.py`) that defines a `Hooks` object for the resource:

    from aggregation.hooks import Hooks, Invalid

    hooks = Hooks("widgets.example.kubefabric.io")

    @hooks.mutate                      # before validation, on create and update
    def label_color(obj, old, ctx):
        obj["metadata"].setdefault("labels", {})["color"] = obj["spec"]["color"]

    @hooks.validate                    # after the schema and CEL rules passed
    def no_friday_deploys(obj, old, ctx):
        if ...: raise Invalid("spec.replicas", "no scaling on Fridays")

    @hooks.subresource("approve", methods=("POST",))      # .../widgets/<name>/approve
    async def approve(ctx): ...                           # returns the response object

    @hooks.collection("report")                           # .../widgets/-/report
    async def report(ctx): return {...}

Functions may be plain or async. A subresource or collection request is authorized like any
other (verb from the HTTP method, resource "widgets/approve"), then gets a HookContext: the
request, its user, the current object (subresources), and `get`, `list` and `replace` that go
through the data layer as every other request does.
"""
from __future__ import annotations

import importlib.util
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from . import reads, status
from .app import respond
from .fielderrors import FieldError, to_status
from .negotiate import read_body


class HookError(Exception):
    """A hooks file that cannot be loaded; one line naming the file."""


class Invalid(Exception):
    """Raised by a validate hook: the request is refused with 422 Invalid."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


@dataclass
class Endpoint:
    name: str
    fn: Callable
    methods: tuple[str, ...]
    kind: str = ""

    @property
    def verbs(self) -> tuple[str, ...]:
        verbs = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        return tuple(verbs[m] for m in self.methods)


@dataclass
class HookContext:
    request: web.Request
    served: Any
    namespace: str
    name: str
    operation: str                      # CREATE, UPDATE, or the HTTP method of an endpoint
    user: Any = None
    object: dict | None = None          # the current object (subresource endpoints)
    _resources: Any = None

    @property
    def query(self):
        return self.request.query

    async def body(self) -> Any:
        text = await self.request.read()
        if not text:
            return None
        return read_body(self.request.content_type, text)

    async def get(self, name: str, namespace: str | None = None) -> dict:
        return await reads.get(self._resources.store, self.served, namespace or self.namespace,
                               name, {})

    async def list(self, labelSelector: str = "", fieldSelector: str = "",
                   namespace: str | None = None, resource: str = "") -> list[dict]:
        """Objects of this resource, or of `resource` (<plural>.<group>: another CRD in the
        --crd-dir, at its preferred version), selected as a list request selects them (the
        shards' index answers what the topology indexes)."""
        served = self.served
        if resource:
            registry = self._resources.registry
            served = registry.by_name(resource) if registry is not None else None
            if served is None:
                raise LookupError(f"{resource} is not among the resources this server was given (--crd-dir)")
        query = {k: v for k, v in (("labelSelector", labelSelector),
                                   ("fieldSelector", fieldSelector)) if v}
        result = await reads.list_objects(self._resources.store, served,
                                          self.namespace if namespace is None else namespace, query)
        return result.items

    async def replace(self, obj: dict, subresource: str = "") -> dict:
        """Write `obj` as a PUT would (its resourceVersion must be current: 409 otherwise),
        through every check of the write path; the stored object."""
        return await self._resources.writes.replace_from_hook(self, obj, subresource)


@dataclass
class Hooks:
    resource: str                       # <plural>.<group>, as the CRD's metadata.name
    validators: list[Callable] = field(default_factory=list)
    mutators: list[Callable] = field(default_factory=list)
    subresources: dict[str, Endpoint] = field(default_factory=dict)
    collections: dict[str, Endpoint] = field(default_factory=dict)

    def validate(self, fn: Callable) -> Callable:
        self.validators.append(fn)
        return fn

    def mutate(self, fn: Callable) -> Callable:
        self.mutators.append(fn)
        return fn

    def subresource(self, name: str, methods: tuple[str, ...] = ("GET",), kind: str = ""):
        def add(fn: Callable) -> Callable:
            self.subresources[name] = Endpoint(name, fn, tuple(m.upper() for m in methods), kind)
            return fn
        return add

    def collection(self, name: str, methods: tuple[str, ...] = ("GET",)):
        def add(fn: Callable) -> Callable:
            self.collections[name] = Endpoint(name, fn, tuple(m.upper() for m in methods))
            return fn
        return add

    # ---- used by the server ----

    async def admit(self, obj: dict, old: dict | None, operation: str, ctx: HookContext) -> dict:
        for fn in self.mutators:
            out = await _call(fn, obj, old, ctx)
            if isinstance(out, dict):
                obj = out
        errs: list[FieldError] = []
        for fn in self.validators:
            try:
                out = await _call(fn, obj, old, ctx)
            except Invalid as err:
                errs.append(FieldError("Invalid", err.field, detail=err.message))
                continue
            for item in _messages(out):
                errs.append(FieldError("Invalid", item[0], detail=item[1]))
        if errs:
            meta = obj.get("metadata") or {}
            raise to_status(ctx.served.resource.group, ctx.served.resource.kind,
                            meta.get("name", ""), errs)
        return obj

    async def serve(self, endpoint: Endpoint, ctx: HookContext) -> web.StreamResponse:
        if ctx.request.method.upper() not in endpoint.methods:
            raise status.method_not_allowed(ctx.request.method, f"{ctx.served.resource.plural}/{endpoint.name}")
        out = await _call(endpoint.fn, ctx)
        if isinstance(out, web.StreamResponse):
            return out
        code = 200
        if isinstance(out, tuple):
            code, out = out
        return respond(ctx.request, code, out)


def _messages(out: Any) -> list[tuple[str, str]]:
    if not out:
        return []
    if isinstance(out, str):
        return [("", out)]
    items = []
    for item in out:
        items.append(tuple(item) if isinstance(item, (tuple, list)) else ("", str(item)))
    return items


async def _call(fn: Callable, *args):
    out = fn(*args)
    if inspect.isawaitable(out):
        out = await out
    return out


def attach_hooks(resources, crd_dir: str) -> None:
    """Load <manifest>.py beside each CRD manifest that has one; its Hooks object for the
    resource becomes resource.hooks."""
    by_name = {r.name: r for r in resources}
    loaded: set[Path] = set()
    for r in resources:
        source = Path(r.source)
        hooks_file = source.with_suffix(".py")
        if not hooks_file.exists() or hooks_file in loaded:
            continue
        loaded.add(hooks_file)
        for hooks in _load(hooks_file):
            target = by_name.get(hooks.resource)
            if target is None:
                raise HookError(f"{hooks_file}: Hooks({hooks.resource!r}) names no CRD of "
                                f"{crd_dir} (known: {', '.join(sorted(by_name))})")
            target.hooks = hooks


def _load(path: Path) -> list[Hooks]:
    name = f"kubefabric_hooks_{path.stem.replace('-', '_').replace('.', '_')}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise HookError(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the author's code: report it in one line
        raise HookError(f"{path}: {type(err).__name__}: {err}") from None
    found = [v for v in vars(module).values() if isinstance(v, Hooks)]
    if not found:
        raise HookError(f"{path}: defines no aggregation.hooks.Hooks object")
    return found
