"""An HTTPTrigger's spec (HariKube's field names and meanings, plus KubeFabric's additions),
checked and with its defaults, from the object stored by kube-apiserver or a --triggers file.

Invariants:
- `parse()` accepts exactly what the CRD's OpenAPI schema accepts (deploy/crds/httptriggers.yaml)
  and fills the same defaults, so a trigger behaves the same from a file or from the cluster;
  a spec it refuses raises SpecError with one line naming the field.
- Templates and filters are only parsed here (templates.py, celfilter.py compile them).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from kubefabric.config import duration

EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED")
METHODS = ("GET", "POST", "PUT", "PATCH")
HASH_TYPES = ("SHA256", "SHA512")
CE_MODES = ("binary", "structured")
DLQ_POLICIES = ("store", "discard")
GROUP = "triggers.kubefabric.io"
PLURAL = "httptriggers"
KIND = "HTTPTrigger"


class SpecError(ValueError):
    """A trigger spec that cannot work; the message names the field."""


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str


@dataclass(frozen=True)
class ServiceURL:
    name: str
    namespace: str
    port_name: str
    scheme: str
    uri_static: str | None
    uri_template: str | None


@dataclass(frozen=True)
class TLSAuth:
    ca: SecretRef | None
    cert: SecretRef | None
    key: SecretRef | None
    insecure_skip_verify: bool


@dataclass(frozen=True)
class Backoff:
    initial: float = 1.0       # seconds before the first retry
    max: float = 30.0          # cap of the exponential delay (Retry-After may ask for longer)
    multiplier: float = 2.0


@dataclass(frozen=True)
class TriggerSpec:
    api_version: str
    kind: str
    namespaces: tuple[str, ...] = ()
    label_selectors: tuple[str, ...] = ()
    field_selectors: tuple[str, ...] = ()
    event_types: tuple[str, ...] = EVENT_TYPES
    event_filter: str = ""
    cel_filter: str = ""
    concurrency: int = 1
    send_initial_events: bool = False
    url_static: str | None = None
    url_template: str | None = None
    url_service: ServiceURL | None = None
    method: str = "POST"
    basic_auth_user: str | None = None
    basic_auth_password: SecretRef | None = None
    tls: TLSAuth | None = None
    headers_static: dict = field(default_factory=dict)
    headers_template: dict = field(default_factory=dict)
    headers_from_secret: dict = field(default_factory=dict)   # header -> SecretRef
    content_type: str = "application/json"
    body_template: str = ""
    signature_header: str = ""
    signature_key: SecretRef | None = None
    signature_hash: str = "SHA256"
    timeout: float = 10.0
    retries: int = 0
    backoff: Backoff = Backoff()
    dead_letter: str = "store"
    ce_mode: str = "binary"
    ce_source: str = ""

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0] if "/" in self.api_version else ""

    def secret_refs(self) -> set[SecretRef]:
        refs = {self.basic_auth_password, self.signature_key, *self.headers_from_secret.values()}
        if self.tls:
            refs |= {self.tls.ca, self.tls.cert, self.tls.key}
        return {r for r in refs if r is not None}


_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HEADER = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def parse(spec: dict, namespace: str = "default") -> TriggerSpec:
    """The TriggerSpec of `spec` (the object's .spec); `namespace`: the trigger's own, where its
    Secrets live and the default namespace of url.service."""
    if not isinstance(spec, dict):
        raise SpecError("spec: must be an object")
    p = _Reader(spec, "spec")
    res = p.obj("resource", required=True)
    api_version = _Reader(res, "spec.resource").str("apiVersion", required=True)
    kind = _Reader(res, "spec.resource").str("kind", required=True)
    if api_version.count("/") > 1 or not api_version.strip("/"):
        raise SpecError(f"spec.resource.apiVersion: {api_version!r} is not group/version or v1")

    event_types = tuple(p.list("eventTypes")) or EVENT_TYPES
    for t in event_types:
        if t not in EVENT_TYPES:
            raise SpecError(f"spec.eventTypes: {t!r} is not one of {', '.join(EVENT_TYPES)}")
    concurrency = p.int("concurrency", 1, 0, 100)

    url = p.obj("url", required=True)
    u = _Reader(url, "spec.url")
    chosen = [k for k in ("static", "template", "service") if url.get(k) is not None]
    if len(chosen) != 1:
        raise SpecError("spec.url: give exactly one of static, template, service")
    service = None
    if "service" in chosen:
        s = _Reader(u.obj("service"), "spec.url.service")
        uri = s.obj("uri")
        ur = _Reader(uri, "spec.url.service.uri")
        if uri.get("static") is not None and uri.get("template") is not None:
            raise SpecError("spec.url.service.uri: give at most one of static, template")
        service = ServiceURL(s.str("name", required=True), s.str("namespace") or namespace,
                             s.str("portName"), s.str("scheme") or "http", ur.str("static") or None,
                             ur.str("template") or None)
        if service.scheme not in ("http", "https"):
            raise SpecError(f"spec.url.service.scheme: {service.scheme!r} is not http or https")

    method = p.str("method") or "POST"
    if method not in METHODS:
        raise SpecError(f"spec.method: {method!r} is not one of {', '.join(METHODS)}")

    auth = _Reader(p.obj("auth"), "spec.auth")
    basic = auth.obj("basicAuth")
    user = pw = None
    if basic:
        b = _Reader(basic, "spec.auth.basicAuth")
        user, pw = b.str("user", required=True), b.ref("secretKeyRef", required=True)
    tls = None
    if auth.obj("tls"):
        t = _Reader(auth.obj("tls"), "spec.auth.tls")
        tls = TLSAuth(t.ref("caRef"), t.ref("certRef"), t.ref("keyRef"), t.bool("insecureSkipVerify"))
        if bool(tls.cert) != bool(tls.key):
            raise SpecError("spec.auth.tls: certRef and keyRef go together (a client certificate "
                            "and its key)")

    headers = _Reader(p.obj("headers"), "spec.headers")
    static_h, template_h = headers.strmap("static"), headers.strmap("template")
    from_secret = {}
    for name, ref in headers.obj("fromSecretRef").items():
        from_secret[name] = _Reader({"r": ref}, f"spec.headers.fromSecretRef.{name}").ref("r")
    for name in (*static_h, *template_h, *from_secret):
        if not _HEADER.match(name):
            raise SpecError(f"spec.headers: {name!r} is not a valid HTTP header name")

    body = _Reader(p.obj("body"), "spec.body")
    sig = body.obj("signature")
    sig_header, sig_key, sig_hash = "", None, "SHA256"
    if sig:
        sr = _Reader(sig, "spec.body.signature")
        sig_header = sr.str("header", required=True)
        sig_key = sr.ref("keySecretRef", required=True)
        sig_hash = _Reader(sr.obj("hmac"), "spec.body.signature.hmac").str("hashType") or "SHA256"
        if sig_hash not in HASH_TYPES:
            raise SpecError(f"spec.body.signature.hmac.hashType: {sig_hash!r} is not SHA256 or SHA512")

    delivery = _Reader(p.obj("delivery"), "spec.delivery")
    backoff_r = _Reader(delivery.obj("backoff"), "spec.delivery.backoff")
    backoff = Backoff(backoff_r.duration("initial", 1.0), backoff_r.duration("max", 30.0),
                      backoff_r.number("multiplier", 2.0, 1.0, 10.0))
    if backoff.max < backoff.initial:
        raise SpecError("spec.delivery.backoff.max: must not be below initial")
    dead_letter = _Reader(delivery.obj("deadLetter"), "spec.delivery.deadLetter").str("policy") or "store"
    if dead_letter not in DLQ_POLICIES:
        raise SpecError(f"spec.delivery.deadLetter.policy: {dead_letter!r} is not store or discard")
    timeout = delivery.duration("timeout", 10.0)
    if timeout <= 0:
        raise SpecError("spec.delivery.timeout: must be above 0")

    ce = _Reader(p.obj("cloudEvents"), "spec.cloudEvents")
    ce_mode = ce.str("mode") or "binary"
    if ce_mode not in CE_MODES:
        raise SpecError(f"spec.cloudEvents.mode: {ce_mode!r} is not binary or structured")

    return TriggerSpec(
        api_version=api_version, kind=kind, namespaces=tuple(p.list("namespaces")),
        label_selectors=tuple(p.list("labelSelectors")), field_selectors=tuple(p.list("fieldSelectors")),
        event_types=event_types, event_filter=p.str("eventFilter"), cel_filter=p.str("celFilter"),
        concurrency=max(concurrency, 1), send_initial_events=p.bool("sendInitialEvents"),
        url_static=u.str("static") or None, url_template=u.str("template") or None,
        url_service=service, method=method, basic_auth_user=user, basic_auth_password=pw, tls=tls,
        headers_static=static_h, headers_template=template_h, headers_from_secret=from_secret,
        content_type=body.str("contentType") or "application/json", body_template=body.str("template"),
        signature_header=sig_header, signature_key=sig_key, signature_hash=sig_hash,
        timeout=timeout, retries=delivery.int("retries", 0, 0, 100), backoff=backoff,
        dead_letter=dead_letter, ce_mode=ce_mode, ce_source=ce.str("source"))


class _Reader:
    """Typed access to one level of the spec, with errors naming the field's path."""

    def __init__(self, d, path: str):
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise SpecError(f"{path}: must be an object")
        self.d, self.path = d, path

    def _get(self, name, required):
        v = self.d.get(name)
        if v is None and required:
            raise SpecError(f"{self.path}.{name}: required")
        return v

    def str(self, name: str, required: bool = False) -> str:
        v = self._get(name, required)
        if v is None:
            return ""
        if not isinstance(v, str):
            raise SpecError(f"{self.path}.{name}: must be a string")
        if required and not v:
            raise SpecError(f"{self.path}.{name}: must not be empty")
        return v

    def obj(self, name: str, required: bool = False) -> dict:
        v = self._get(name, required)
        if v is not None and not isinstance(v, dict):
            raise SpecError(f"{self.path}.{name}: must be an object")
        return v or {}

    def list(self, name: str) -> list[str]:
        v = self.d.get(name) or []
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise SpecError(f"{self.path}.{name}: must be a list of strings")
        return v

    def strmap(self, name: str) -> dict:
        v = self.obj(name)
        for k, x in v.items():
            if not isinstance(x, str):
                raise SpecError(f"{self.path}.{name}.{k}: must be a string")
        return dict(v)

    def bool(self, name: str) -> bool:
        v = self.d.get(name, False)
        if not isinstance(v, bool):
            raise SpecError(f"{self.path}.{name}: must be true or false")
        return v

    def int(self, name: str, default: int, lo: int, hi: int) -> int:
        v = self.d.get(name, default)
        if v is None:
            v = default
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise SpecError(f"{self.path}.{name}: must be a whole number from {lo} to {hi}")
        return v

    def number(self, name: str, default: float, lo: float, hi: float) -> float:
        v = self.d.get(name, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise SpecError(f"{self.path}.{name}: must be a number from {lo} to {hi}")
        return float(v)

    def duration(self, name: str, default: float) -> float:
        v = self.d.get(name)
        if v is None or v == "":
            return default
        try:
            return go_duration(v)
        except ValueError:
            raise SpecError(f"{self.path}.{name}: {v!r} is not a duration (e.g. 500ms, 30s, "
                            "1m30s)") from None

    def ref(self, name: str, required: bool = False) -> SecretRef | None:
        v = self.obj(name, required)
        if not v:
            return None
        r = _Reader(v, f"{self.path}.{name}")
        return SecretRef(r.str("name", required=True), r.str("key", required=True))


_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text) -> float:
    """Seconds from a Go/Kubernetes duration ('30s', '1m30s', '1.5h', '250ms'); a bare number
    is seconds. Raises ValueError."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    s = str(text).strip()
    if s in ("0", ""):
        return 0.0
    try:
        return duration(s)
    except Exception:
        pass
    pos, total = 0, 0.0
    for m in _GO_DURATION.finditer(s):
        if m.start() != pos:
            raise ValueError(s)
        total += float(m[1]) * _GO_UNITS[m[2]]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise ValueError(s)
    return total
