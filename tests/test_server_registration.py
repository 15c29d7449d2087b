"""kubefabric.telemetry.instrument_server (every make_server server): generated servicer code
registers its handlers twice, as a generic handler and as gRPC registered methods; only the
generic half reaches the server, instrumented. A grpc.aio server waits on one requested call
per registered method each time it accepts a call (bench/README.md, "Third round"), so
registered methods would cost every call of the server."""
from __future__ import annotations

import asyncio
from collections import namedtuple

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kubefabric.rpc.server import Health, make_server
from kubefabric.telemetry import instrument_server

Details = namedtuple("Details", "method invocation_metadata")


class Recorder:
    """The two registration calls of a grpc.aio server, recorded."""

    def __init__(self):
        self.generic: list = []
        self.registered: list[str] = []

    def add_generic_rpc_handlers(self, handlers):
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service_name, method_handlers):
        self.registered.append(service_name)


def test_generated_servicers_are_served_generic_only():
    server = instrument_server(Recorder())
    health_pb2_grpc.add_HealthServicer_to_server(Health(), server)
    assert server.registered == []
    assert len(server.generic) == 1
    handler = server.generic[0].service(Details("/grpc.health.v1.Health/Check", ()))
    assert handler is not None and handler.unary_unary.__qualname__.startswith("_wrap_unary")
    assert server.generic[0].service(Details("/grpc.health.v1.Health/Nope", ())) is None


def test_make_server_answers_generated_servicers():
    async def check():
        server, health = make_server()
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        await health.mark([""], serving=True)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=5)
        finally:
            await server.stop(0)
        return reply.status

    assert asyncio.run(check()) == health_pb2.HealthCheckResponse.SERVING
