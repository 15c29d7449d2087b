"""What a request URL addresses, parsed as kube-apiserver's RequestInfoFactory does for
/apis/<group>/<version>/... paths, and the authorization attributes it implies."""
from __future__ import annotations

from dataclasses import dataclass, fields

from .auth import Attributes
from .selectors import SelectorError, parse_fields

_TRUE = ("1", "true")


@dataclass(frozen=True)
class RequestInfo(Attributes):
    """The authorization attributes (verb: get list watch create update patch delete
    deletecollection, or the HTTP verb of a non-resource path) and the path's segments after
    the version (and namespace)."""
    parts: tuple[str, ...] = ()

    def attributes(self) -> Attributes:
        return Attributes(**{f.name: getattr(self, f.name) for f in fields(Attributes)})


_HTTP_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
               "DELETE": "delete"}


def parse(method: str, path: str, query) -> RequestInfo:
    """query: the request's query parameters (a mapping)."""
    http_verb = method.lower()
    non_resource = RequestInfo(path=path, verb="get" if http_verb == "head" else http_verb)
    segments = [s for s in path.strip("/").split("/")]
    if len(segments) < 3 or segments[0] != "apis" or not all(segments):
        return non_resource
    group, version, rest = segments[1], segments[2], segments[3:]
    if not rest:
        return non_resource
    verb = _HTTP_VERBS.get(method.upper(), http_verb)
    legacy_watch = rest[0] == "watch"
    if legacy_watch:
        rest = rest[1:]
        verb = "watch"
    namespace = ""
    if len(rest) >= 2 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
        if not rest:
            return RequestInfo(path=path, verb=verb, resource_request=True, group=group,
                               version=version, resource="namespaces", name=namespace,
                               parts=("namespaces", namespace))
    if not rest:
        return non_resource
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if len(rest) > 3:
        subresource = "/".join(rest[2:])
    if not name:
        if verb == "get":
            verb = "watch" if str(query.get("watch", "")).lower() in _TRUE else "list"
        elif verb == "delete":
            verb = "deletecollection"
    elif verb == "get" and str(query.get("watch", "")).lower() in _TRUE:
        verb = "watch"
    if legacy_watch and name:
        verb = "watch"
    if verb in ("list", "watch") and not name:
        name = _selected_name(str(query.get("fieldSelector", "")))
    return RequestInfo(path=path, verb=verb, resource_request=True, group=group, version=version,
                       namespace=namespace, resource=resource, name=name, subresource=subresource,
                       parts=tuple(rest))


def _selected_name(field_selector: str) -> str:
    """The name a list or watch is limited to by `metadata.name=x` (authorization sees it)."""
    try:
        reqs = parse_fields(field_selector)
    except SelectorError:
        return ""
    return next((r.values[0] for r in reqs if r.key == "metadata.name" and r.op == "Equals"), "")
