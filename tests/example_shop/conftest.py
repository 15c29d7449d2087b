"""The example app (examples/shop) on a real stack (tests/harness/shop.py): kube-apiserver on
kv-router, which routes by the example's own
topology: Orders to a shard service on PostgreSQL, everything else to a SQLite shard service.
One stack per test module (kube-apiserver takes seconds to start; CPU is scarce); tests use
namespaces of their own.

    def test_x(shop):
        shop.api.kubectl("apply", "-f", ...)
        op = shop.start_operator("a")          # `shop operator`, a process of its own
        fn = shop.start_function()             # `shop function`; fn.url
"""
from __future__ import annotations

import pytest

from harness.otlp import OtlpCollector
from harness.shop import ShopStack


@pytest.fixture(scope="module")
def shop(tmp_path_factory, postgres_server, request):
    """The stack; a module with `TRACED_STACK = True` gets it with tracing on everywhere
    (kube-apiserver's --tracing-config-file, OTEL_* for KubeFabric's and the shop's processes)
    exporting to an OTLP collector on loopback: `shop.collector`."""
    workdir = tmp_path_factory.mktemp("shop")
    collector = OtlpCollector() if getattr(request.module, "TRACED_STACK", False) else None
    env, flags = {}, []
    if collector is not None:
        config = workdir / "tracing.yaml"
        config.write_text(APISERVER_TRACING.format(endpoint=collector.endpoint))
        env, flags = collector.env, ["--tracing-config-file", str(config)]
    stack = ShopStack(workdir, postgres_server, env=env, apiserver_flags=flags)
    stack.collector = collector
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        if collector is not None:
            collector.stop()


# kube-apiserver's tracing (APIServerTracing): OTLP/gRPC (insecure) to the collector, every
# request sampled; it sends W3C traceparent to its etcd (kv-router) with each call
APISERVER_TRACING = """\
apiVersion: apiserver.config.k8s.io/v1
kind: TracingConfiguration
endpoint: {endpoint}
samplingRatePerMillion: 1000000
"""
