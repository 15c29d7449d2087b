"""Traces and metrics of every KubeFabric service (README "Observe").

- tracing.py: OpenTelemetry, configured only through the OTEL_* environment variables; off (and
  free) unless they ask for an exporter. `tracing.install(provider)` is the hook for tests.
- metrics.py: Prometheus metrics with etcd's names where etcd has them, and /metrics.
- interceptors.py: grpc.aio server interceptor and instrumented Shard stubs (W3C trace context
  in gRPC metadata).
- sources.py: samplers of router and shard state for the gauges.

A service calls `setup(service_name, metrics_address)` once its event loop runs, has its
grpc.aio server instrumented (`instrument_server`, as kubefabric.rpc.server.make_server
does), and registers its sources with `metrics.add_source`.
"""
from __future__ import annotations

from . import metrics, sources, tracing
from .interceptors import instrument_server, instrument_shard_stub, server_interceptors

__all__ = ["setup", "instrument_server", "server_interceptors", "instrument_shard_stub", "metrics", "sources", "tracing"]


def setup(service_name: str, metrics_address: str = "") -> None:
    """Tracing from the environment, /metrics on `metrics_address` ('' disables). Call it from
    the running event loop (the metrics sampler is a task on it)."""
    tracing.setup(service_name)
    metrics.serve(metrics_address)
