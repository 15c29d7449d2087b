"""A trigger ready to run: its identity, its spec, and everything compiled from the spec once
(templates, filters, selectors). A spec that does not compile still makes a Trigger, with
`error` set: it is not run, and its status says why."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from . import spec as specmod
from .celfilter import CELError, CELFilter
from .gotemplate import TemplateError, compile_filter, compile_template
from .selectors import Selector, SelectorError


@dataclass
class Trigger:
    id: str                      # "namespace/name"
    uid: str                     # identity of its progress records (the object's uid)
    namespace: str
    name: str
    generation: int
    source: str                  # "cluster" or "file"
    key: bytes = b""             # where the HTTPTrigger object is stored (cluster triggers)
    spec: specmod.TriggerSpec | None = None
    error: str = ""
    selector: Selector | None = None
    event_filter: object = None
    cel: CELFilter | None = None
    url: object = None
    uri: object = None
    headers: dict = field(default_factory=dict)
    body: object = None

    @property
    def runnable(self) -> bool:
        return self.spec is not None and not self.error

    @property
    def fingerprint(self) -> str:
        """What a running pipeline depends on: a change restarts it."""
        return f"{self.uid}/{self.generation}/{self.error}"


def uid_for_file(namespace: str, name: str) -> str:
    return "file-" + hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:20]


def compile_trigger(obj: dict, source: str, key: bytes = b"") -> Trigger:
    """obj: an HTTPTrigger object (from the store or a file)."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    name = meta.get("name") or "?"
    uid = meta.get("uid") or uid_for_file(namespace, name)
    t = Trigger(f"{namespace}/{name}", uid, namespace, name, int(meta.get("generation") or 1),
                source, key)
    try:
        s = specmod.parse(obj.get("spec"), namespace)
        t.spec = s
        t.selector = Selector(s.label_selectors, s.field_selectors)
        if s.event_filter:
            t.event_filter = compile_filter(s.event_filter)
        if s.cel_filter:
            t.cel = CELFilter(s.cel_filter)
        if s.url_template:
            t.url = compile_template("url_template", s.url_template)
        if s.url_service and s.url_service.uri_template:
            t.uri = compile_template("uri_template", s.url_service.uri_template)
        t.headers = {k: compile_template("header_template_" + k, v) for k, v in s.headers_template.items()}
        if s.body_template:
            t.body = compile_template("body_template", s.body_template)
    except (specmod.SpecError, TemplateError, CELError, SelectorError) as err:
        t.error = str(err)
    return t


class TemplateData(dict):
    """What templates and eventFilter see: the object (HariKube's data, so `toJson .` is the
    object), plus `.old` and `.new` for the previous and current states when the object has
    no such top-level fields."""

    def __init__(self, obj: dict, old: dict | None):
        super().__init__(obj)
        self._old, self._new = old, obj

    def get(self, key, default=None):
        if key in self:
            return self[key]
        if key == "old":
            return default if self._old is None else self._old
        if key == "new":
            return self._new
        return default
