"""One HTTP request per trigger event, as HariKube builds it (url/method/headers/body/auth/
signature fields), and as a CloudEvent (CloudEvents SDK, HTTP binding) in KubeFabric:

- no body template: the event is a CloudEvent whose data is the object, binary mode (ce-*
  headers, the object as the JSON body) or structured (application/cloudevents+json);
- a body template: the rendered template is the body with body.contentType, and the ce-*
  headers are still set (a binary-mode CloudEvent with that data), so the receiver always has
  ce-id = <key>@<mod_revision> to deduplicate with.

Header precedence, lowest first: CloudEvents headers, Content-Type, headers.static,
headers.template, headers.fromSecretRef, basic auth, the signature, traceparent.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timezone

from cloudevents.core.bindings import http as cehttp
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from kubefabric.telemetry import tracing

from .compiled import TemplateData, Trigger
from .events import CE_TYPES, Event, subject
from .gotemplate import ExecError
from .gotemplate.values import go_json

_FORMAT = JSONFormat()


class RequestError(Exception):
    """The request cannot be built (a template failed, a Secret or Service is missing): the
    attempt fails like a failed call, with this message."""


@dataclass
class HTTPRequest:
    method: str
    url: str
    headers: dict
    body: bytes


class Lookups:
    """What building a request reads from the data layer; secrets.py and services.py."""

    def secret(self, namespace: str, name: str, key: str) -> bytes:  # pragma: no cover
        raise NotImplementedError

    def service_url(self, namespace: str, name: str, port_name: str, scheme: str) -> str:  # pragma: no cover
        raise NotImplementedError


def build(t: Trigger, ev: Event, plural: str, source: str, lookups: Lookups) -> HTTPRequest:
    s = t.spec
    data = TemplateData(ev.object, ev.old)
    try:
        if s.url_static is not None:
            url = s.url_static
        elif t.url is not None:
            url = t.url.render(data)
        else:
            svc = s.url_service
            uri = svc.uri_static or (t.uri.render(data) if t.uri is not None else "")
            base = lookups.service_url(svc.namespace, svc.name, svc.port_name, svc.scheme)
            url = base.rstrip("/") + "/" + uri.lstrip("/")
        body = t.body.render(data).encode() if t.body is not None else None
        templated = {k: tmpl.render(data) for k, tmpl in t.headers.items()}
    except ExecError as err:
        raise RequestError(str(err)) from None

    meta = ev.object.get("metadata") or {}
    attributes = {"specversion": "1.0", "id": ev.id, "source": s.ce_source or source,
                  "type": CE_TYPES[ev.type], "subject": subject(ev.object, plural),
                  "time": datetime.now(timezone.utc),
                  "kind": str(ev.object.get("kind") or s.kind), "name": str(meta.get("name", "")),
                  "namespace": str(meta.get("namespace", "")),
                  "apiversion": str(ev.object.get("apiVersion") or s.api_version)}
    trace = tracing.carrier() if tracing.ENABLED else None  # the delivery span's context
    if trace:  # the CloudEvents distributed-tracing extension (traceparent, tracestate)
        attributes.update(trace)
    if body is None:
        attributes["datacontenttype"] = "application/json"
        if s.ce_mode == "structured":   # the object inline as "data" (JSON)
            msg = cehttp.to_structured(CloudEvent(attributes, ev.object), _FORMAT)
        else:
            msg = cehttp.to_binary(CloudEvent(attributes, go_json(ev.object).encode()), _FORMAT)
        headers, body = dict(msg.headers), msg.body
    else:
        attributes["datacontenttype"] = s.content_type
        msg = cehttp.to_binary(CloudEvent(attributes, body), _FORMAT)
        headers = dict(msg.headers)
    headers = {_canonical(k): v for k, v in headers.items()}
    if body is not None and s.body_template:
        headers["Content-Type"] = s.content_type
    headers.update(s.headers_static)
    headers.update(templated)
    for name, ref in s.headers_from_secret.items():
        headers[name] = _text(lookups.secret(t.namespace, ref.name, ref.key))
    if s.basic_auth_user is not None:
        password = _text(lookups.secret(t.namespace, s.basic_auth_password.name, s.basic_auth_password.key))
        token = base64.b64encode(f"{s.basic_auth_user}:{password}".encode()).decode()
        headers["Authorization"] = "Basic " + token
    if s.signature_header:
        key = lookups.secret(t.namespace, s.signature_key.name, s.signature_key.key)
        digest = hashlib.sha512 if s.signature_hash == "SHA512" else hashlib.sha256
        headers[s.signature_header] = hmac.new(key, body, digest).hexdigest()
    if trace:
        headers.update(trace)   # and the W3C HTTP headers: either one parents the function's span
    return HTTPRequest(s.method, url, headers, body)


def _canonical(name: str) -> str:
    """Go's canonical MIME header form (ce-id -> Ce-Id), as Go clients send them."""
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.split("-"))


def _text(b: bytes) -> str:
    return b.decode(errors="replace")
