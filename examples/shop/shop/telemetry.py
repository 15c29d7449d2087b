"""Tracing for the shop's processes, configured only by the standard OTEL_* variables (as every
KubeFabric service is): on when OTEL_TRACES_EXPORTER names an exporter or an OTLP endpoint is
set, off otherwise. The pricing function continues the trace its CloudEvent carries (W3C
traceparent, from the HTTP headers or the CloudEvents distributed-tracing extension) and its
calls to kube-apiserver carry it on (httpx instrumentation)."""
from __future__ import annotations

import logging
import os

from opentelemetry import propagate, trace

log = logging.getLogger("shop.telemetry")


def exporters(env=os.environ) -> list[str]:
    if env.get("OTEL_SDK_DISABLED", "").lower() in ("1", "true", "yes"):
        return []
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names and (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        names = ["otlp"]
    return [n for n in names if n != "none"]


def setup(service_name: str) -> bool:
    """Install a tracer provider when the environment asks for one; True if tracing is on."""
    names = exporters()
    if not names:
        return False
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create(
        {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}))
    for name in names:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            log.warning("OTEL_TRACES_EXPORTER=%s is not supported here (otlp, console): ignored", name)
    trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument()
    log.info("tracing on: %s", ", ".join(names))
    return True


def shutdown() -> None:
    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()


def context_of(headers, event) -> object:
    """The trace context a delivery carries: the HTTP traceparent header, else the event's
    traceparent extension attribute (CloudEvents distributed tracing), else none."""
    carrier = {k.lower(): v for k, v in headers.items() if k.lower() in ("traceparent", "tracestate")}
    if "traceparent" not in carrier:
        for name in ("traceparent", "tracestate"):
            value = event.get_extension(name)
            if value:
                carrier[name] = str(value)
    return propagate.extract(carrier)


def tracer():
    return trace.get_tracer("shop")
