"""OpenTelemetry tracing, configured only through the standard OTEL_* environment variables.

Tracing is on when OTEL_TRACES_EXPORTER names an exporter (otlp, console), or when it is unset
and OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (then: otlp). Off
otherwise, and with OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none: then `ENABLED` is False,
the SDK is not even imported, and every hook in this package costs one attribute test.

Everything else is the SDK's own reading of the environment: OTEL_SERVICE_NAME and
OTEL_RESOURCE_ATTRIBUTES (service.name defaults to the KubeFabric service), OTEL_TRACES_SAMPLER(_ARG),
OTEL_BSP_* (batching), OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT/HEADERS/CERTIFICATE/INSECURE/TIMEOUT/
COMPRESSION, OTEL_PROPAGATORS (default: W3C tracecontext and baggage). The OTLP exporter speaks
OTLP/gRPC (OTEL_EXPORTER_OTLP_PROTOCOL=grpc); other protocols are refused with a warning.

Trace context crosses processes as W3C `traceparent`/`tracestate` gRPC metadata (interceptors.py).
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger("kubefabric.telemetry")

ENABLED = False          # read on hot paths: keep it a plain module attribute
_tracer = None           # opentelemetry.trace.Tracer once enabled
_provider = None
api = None               # the opentelemetry modules, bound once enabled (see _bind)

INSTRUMENTATION = "kubefabric"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def exporters_from_env(env=os.environ) -> list[str]:
    """The span exporters the environment asks for ([] = tracing off)."""
    if _truthy(env.get("OTEL_SDK_DISABLED")):
        return []
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names and (env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
        names = ["otlp"]
    return [n for n in names if n != "none"]


def setup(service_name: str, env=os.environ) -> bool:
    """Install a tracer provider if the environment asks for one; True if tracing is on."""
    names = exporters_from_env(env)
    if not names:
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    named = env.get("OTEL_SERVICE_NAME") or "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    provider = TracerProvider(resource=Resource.create({} if named else {SERVICE_NAME: service_name}))
    added = 0
    for name in names:
        exporter = _exporter(name, env)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
            added += 1
    if not added:
        return False
    trace.set_tracer_provider(provider)
    install(provider)
    log.info("tracing on: exporting spans to %s as %s", ", ".join(names),
             provider.resource.attributes.get(SERVICE_NAME))
    return True


def _exporter(name: str, env):
    if name == "otlp":
        protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
        if protocol != "grpc":
            log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported: KubeFabric exports "
                        "OTLP/gRPC only (set it to grpc and point the endpoint at a gRPC receiver, "
                        "usually port 4317); no spans are exported", protocol)
            return None
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        return OTLPSpanExporter()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter
        return ConsoleSpanExporter()
    log.warning("OTEL_TRACES_EXPORTER=%s is not supported (otlp, console or none); ignored", name)
    return None


def install(provider) -> None:
    """Trace with `provider` (any opentelemetry TracerProvider). Tests use this hook with an
    in-memory exporter; it does not touch the global provider."""
    global ENABLED, _tracer, _provider
    _bind()
    _provider = provider
    _tracer = provider.get_tracer(INSTRUMENTATION)
    ENABLED = True


def uninstall() -> None:
    global ENABLED, _tracer, _provider
    ENABLED = False
    _tracer = _provider = None


def tracer():
    return _tracer


def _bind() -> None:
    global api
    if api is None:
        from types import SimpleNamespace

        from opentelemetry import context, propagate, trace
        api = SimpleNamespace(context=context, propagate=propagate, trace=trace,
                              SERVER=trace.SpanKind.SERVER, CLIENT=trace.SpanKind.CLIENT,
                              INTERNAL=trace.SpanKind.INTERNAL, ERROR=trace.StatusCode.ERROR,
                              Status=trace.Status)


# ---- W3C trace context in gRPC metadata ----

def context_from_metadata(metadata):
    """The remote parent carried in a call's metadata (a sequence of (key, value) pairs)."""
    carrier = {}
    for key, value in metadata or ():
        if key in ("traceparent", "tracestate", "baggage"):
            carrier[key] = value
    return api.propagate.extract(carrier) if carrier else None


def metadata_with_context(metadata):
    """`metadata` plus the current trace context (traceparent, tracestate)."""
    carrier: dict[str, str] = {}
    api.propagate.inject(carrier)
    if not carrier:
        return metadata
    return (*(metadata or ()), *carrier.items())


async def in_span(name: str, awaitable, attributes=None, started=None):
    """Await `awaitable` inside an INTERNAL span `name` (a child of the current span); started():
    called inside the span before awaiting (to capture its context). Callers test ENABLED first,
    so this costs nothing with tracing off."""
    with _tracer.start_as_current_span(name, kind=api.INTERNAL, attributes=attributes):
        if started is not None:
            started()
        return await awaitable


# ---- W3C trace context in message headers (NATS) ----

def carrier() -> dict[str, str]:
    """The current trace context as headers (traceparent, tracestate); {} without a span."""
    out: dict[str, str] = {}
    api.propagate.inject(out)
    return out


def span_from_headers(name: str, headers, attributes=None):
    """A CONSUMER span `name` whose parent is the context in message `headers` (a new trace if
    there is none); a context manager."""
    parent = api.propagate.extract(dict(headers or {}))
    return _tracer.start_as_current_span(name, context=parent, kind=api.trace.SpanKind.CONSUMER,
                                         attributes=attributes)


# ---- W3C trace context along a committed txn's events (write → feed → watch → trigger) ----

class TracedEvents(list):
    """One committed txn's events that remember the trace context (a carrier dict: traceparent,
    tracestate) of the request that committed them. Only a traced write makes one; untraced
    txns travel as plain lists, so with tracing off nothing on the event path changes. Copies
    must go through `same_trace` to keep the context.

    parts: when txns of several shards share a revision (a merged feed joins their events),
    [(end index, trace)] per txn, in order: each event keeps its own write's context."""

    __slots__ = ("trace", "parts")

    def __init__(self, events, trace: dict | None, parts: list | None = None):
        super().__init__(events)
        self.trace = trace
        self.parts = parts


def trace_of(events) -> dict | None:
    """The trace context `events` carry (of their first traced txn), or None."""
    return events.trace if type(events) is TracedEvents else None


def trace_for(events, key: bytes) -> dict | None:
    """The trace context of the txn among `events` that changed `key` (a watcher's first
    selected event): the one trace, unless txns of several shards share the revision."""
    if type(events) is not TracedEvents:
        return None
    if events.parts is None:
        return events.trace
    i = 0
    for end, trace in events.parts:
        for ev in events[i:end]:
            if ev.kv.key == key:
                return trace
        i = end
    return None


def same_trace(original, events: list) -> list:
    """`events` (a copy, or a subset of one txn's events) with `original`'s trace context."""
    if type(original) is TracedEvents:
        keep = original.parts if len(events) == len(original) else None
        return TracedEvents(events, original.trace, keep)
    return events


def join_commits(first: list, second) -> list:
    """The events of two txns of one revision (different shards) as one list; each event keeps
    its txn's trace context. `first` may be extended in place."""
    if type(first) is not TracedEvents and type(second) is not TracedEvents:
        first.extend(second)
        return first

    def parts(events, offset: int) -> list:
        if type(events) is TracedEvents and events.parts:
            return [(offset + end, t) for end, t in events.parts]
        return [(offset + len(events), trace_of(events))]
    joined = parts(first, 0) + parts(second, len(first))
    return TracedEvents([*first, *second], trace_of(first) or trace_of(second), joined)


def traced_commit(rev: int, events, commit_cls):
    """A HistoryResponse-like message of one live commit, with its trace context if it has one."""
    trace = trace_of(events)
    if trace is None:
        return commit_cls(rev=rev, events=events)
    return commit_cls(rev=rev, events=events, traceparent=trace.get("traceparent", ""),
                      tracestate=trace.get("tracestate", ""))


def events_of_commit(commit) -> list:
    """The events of a received commit message, carrying its trace context if it has one."""
    events = list(commit.events)
    if commit.traceparent:
        trace = {"traceparent": commit.traceparent}
        if commit.tracestate:
            trace["tracestate"] = commit.tracestate
        return TracedEvents(events, trace)
    return events


def context_from_carrier(carrier: dict | None):
    """An OpenTelemetry context whose parent is `carrier`'s span (None: no parent)."""
    return api.propagate.extract(carrier) if carrier else None
