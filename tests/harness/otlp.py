"""An OTLP/gRPC trace collector for tests: what the processes under test export, in memory."""
from __future__ import annotations

import time

import grpc


class OtlpCollector:
    """A tiny OTLP/gRPC trace collector on loopback. With `monkeypatch`, the OTEL_* variables of
    the processes the test starts point at it; `env` has the same settings for processes given
    an environment of their own; `endpoint` is its host:port (kube-apiserver's tracing config)."""

    def __init__(self, monkeypatch=None):
        from concurrent import futures

        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tgrpc

        self.received = []
        received = self.received

        class Collector(tgrpc.TraceServiceServicer):
            def Export(self, request, context):
                received.append(request)
                return tpb.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(4))
        tgrpc.add_TraceServiceServicer_to_server(Collector(), self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.endpoint = f"127.0.0.1:{port}"
        self.env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{self.endpoint}",
                    "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_BSP_SCHEDULE_DELAY": "100"}
        if monkeypatch is not None:
            for name, value in self.env.items():
                monkeypatch.setenv(name, value)
            monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
            monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
            monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)

    def spans(self):
        out = []
        for req in list(self.received):
            for rs in req.resource_spans:
                service = next(a.value.string_value for a in rs.resource.attributes
                               if a.key == "service.name")
                out.extend((service, s) for ss in rs.scope_spans for s in ss.spans)
        return out

    def trace_of(self, name: str) -> set:
        """(service, span name) of every span in the trace of the first span called `name`."""
        spans = self.spans()
        first = next((s for _, s in spans if s.name == name), None)
        if first is None:
            return set()
        return {(svc, s.name) for svc, s in spans if s.trace_id == first.trace_id}

    def wait_for(self, name: str, expected: set, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not expected <= self.trace_of(name) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert expected <= self.trace_of(name), (self.trace_of(name), [(v, s.name) for v, s in self.spans()])

    def stop(self) -> None:
        self.server.stop(0)
