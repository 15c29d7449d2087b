"""One etcd write is one trace: client → kv-router (server span) → kv-router's call to the shard
service (client span) → the shard service (server span) → its writer (commit span).

Router and shard service run in this process on one asyncio loop, over real gRPC on loopback,
with an in-memory span exporter installed through kubefabric.telemetry.tracing.install. Trace
context crosses each hop only as `traceparent` metadata: the server spans' parents must be remote.
The last test runs the real commands, configured by OTEL_* variables, against an OTLP collector.
"""
from __future__ import annotations

import asyncio
import socket
import time

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.etcdserverpb import rpc_pb2_grpc
from kubefabric.telemetry import tracing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_shard_service(data_dir):
    """A backend-sqlite replica, wired as kubefabric.shardsvc.serve wires it."""
    from kubefabric.proto.kubefabric.shard.v1 import shard_pb2_grpc
    from kubefabric.shardsvc.node import ShardNode
    from kubefabric.shardsvc.service import ShardService
    from backend_sqlite.store import SqliteStore
    from kubefabric.telemetry import server_interceptors

    server = grpc.aio.server(interceptors=server_interceptors())
    port = server.add_insecure_port("127.0.0.1:0")
    node = ShardNode(lambda: SqliteStore(str(data_dir)), {}, f"127.0.0.1:{port}", "a")
    service = ShardService(node)
    shard_pb2_grpc.add_ShardServicer_to_server(service, server)
    await server.start()
    node.start()
    await asyncio.wait_for(node.ready.wait(), 30)
    return server, node, service, port


async def write_traced(tmp_path, exporter):
    from kv_router.server import RouterServer, ServerConfig

    from kubefabric.shardsvc.client import RemoteShard

    shard_server, node, service, shard_port = await start_shard_service(tmp_path / "shard")
    remote = RemoteShard([f"127.0.0.1:{shard_port}"], name="a")
    await remote.open()
    url = f"http://127.0.0.1:{free_port()}"
    router = RouterServer(remote, ServerConfig(listen_client_urls=[url], advertise_client_urls=[url]))
    await router.start()
    try:
        exporter.clear()  # startup calls (Status, Feed) are not part of the write
        async with grpc.aio.insecure_channel(url.removeprefix("http://")) as channel:
            kv = rpc_pb2_grpc.KVStub(channel)
            tracer = tracing.tracer()
            with tracer.start_as_current_span("etcdserverpb.KV/Put", kind=SpanKind.CLIENT):
                resp = await kv.Put(pb.PutRequest(key=b"/registry/pods/default/p", value=b"v"),
                                    metadata=tracing.metadata_with_context(()), timeout=10)
        assert resp.header.revision == 2
    finally:
        await router.stop(0.5)
        await remote.close()
        service.close_feeds()
        await shard_server.stop(0.5)
        await node.stop()


@pytest.fixture(autouse=True)
def reopen_gate():
    """RouterServer.stop closes the process-wide admission gate; later tests need it open."""
    from kubefabric.rpc.handlers import GATE

    yield
    GATE.closed = False


@pytest.fixture
def exporter():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.uninstall()
        provider.shutdown()


def test_put_is_one_trace_through_router_shard_and_writer(tmp_path, exporter):
    asyncio.run(write_traced(tmp_path, exporter))
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    (client,) = [s for s in spans if s.kind == SpanKind.CLIENT and s.name == "etcdserverpb.KV/Put"]
    trace = [s for s in spans if s.context.trace_id == client.context.trace_id]

    def only(name, kind, parent):
        found = [s for s in trace if s.name == name and s.kind == kind]
        assert len(found) == 1, (name, [(s.name, s.kind) for s in trace])
        span = found[0]
        assert span.parent is not None and span.parent.span_id == parent.context.span_id, \
            f"{name} ({kind}) has parent {by_id.get(span.parent.span_id) if span.parent else None}"
        return span

    router_server = only("etcdserverpb.KV/Put", SpanKind.SERVER, client)
    router_client = only("kubefabric.shard.v1.Shard/Put", SpanKind.CLIENT, router_server)
    shard_server = only("kubefabric.shard.v1.Shard/Put", SpanKind.SERVER, router_client)
    writer = only("kubefabric.writer.commit", SpanKind.INTERNAL, shard_server)

    # each hop's context arrived as gRPC metadata, not through this process's context variables
    assert router_server.parent.is_remote and shard_server.parent.is_remote
    assert not router_client.parent.is_remote and not writer.parent.is_remote
    for span in (router_server, router_client, shard_server):
        assert span.attributes["rpc.system"] == "grpc"
        assert span.attributes["rpc.grpc.status_code"] == 0
    assert router_client.attributes["kubefabric.shard"] == "a"
    # nested in time, too
    assert client.start_time <= router_server.start_time <= router_client.start_time \
        <= shard_server.start_time <= writer.start_time
    assert writer.end_time <= shard_server.end_time <= router_client.end_time \
        <= router_server.end_time <= client.end_time


def test_failed_call_marks_spans_as_errors(tmp_path, exporter):
    """A request the shard refuses: the router's spans carry the gRPC code and an error status."""

    async def scenario():
        from kubefabric.shardsvc.client import RemoteShard

        shard_server, node, service, port = await start_shard_service(tmp_path / "shard")
        remote = RemoteShard([f"127.0.0.1:{port}"], name="a")
        await remote.open()
        try:
            exporter.clear()
            with pytest.raises(Exception):  # compacting the future: OUT_OF_RANGE
                await remote.compact(1000)
        finally:
            await remote.close()
            service.close_feeds()
            await shard_server.stop(0.5)
            await node.stop()

    asyncio.run(scenario())
    spans = {(s.name, s.kind): s for s in exporter.get_finished_spans()}
    client = spans[("kubefabric.shard.v1.Shard/Compact", SpanKind.CLIENT)]
    server = spans[("kubefabric.shard.v1.Shard/Compact", SpanKind.SERVER)]
    assert server.parent.span_id == client.context.span_id
    for span in (client, server):
        assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OUT_OF_RANGE.value[0]
        assert not span.status.is_ok


@pytest.mark.parametrize("env, expected", [
    ({}, []),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, ["otlp"]),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, ["otlp"]),
    ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, []),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, []),
])
def test_tracing_is_configured_by_otel_env_only(env, expected):
    assert tracing.exporters_from_env(env) == expected


def test_tracing_off_by_default():
    assert tracing.setup("kv-router", env={}) is False
    assert tracing.ENABLED is False


def test_write_forwarded_by_a_replica_stays_in_the_trace(tmp_path, exporter):
    """A write that reaches a replica is forwarded to the leader: replica server span → its
    client span to the leader → the leader's server span → the writer."""

    async def scenario():
        from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb
        from kubefabric.shardsvc.client import RemoteShard

        leader = await start_shard_service(tmp_path / "shard")
        replica = await start_shard_service(tmp_path / "shard")
        assert (leader[1].role, replica[1].role) == ("leader", "replica")
        for _ in range(100):  # the replica learns the leader's address from the database
            if replica[1].leader_address:
                break
            await asyncio.sleep(0.1)
        remote = RemoteShard([f"127.0.0.1:{replica[3]}"], name="a")
        await remote.open()
        try:
            exporter.clear()
            with tracing.tracer().start_as_current_span("write"):
                await remote.put(pb.PutRequest(key=b"k", value=b"v"))
        finally:
            await remote.close()
            for server, node, service, _ in (replica, leader):
                service.close_feeds()
                await server.stop(0.5)
                await node.stop()

    asyncio.run(scenario())
    spans = [s for s in exporter.get_finished_spans() if "Status" not in s.name]
    root = next(s for s in spans if s.name == "write")
    chain = [root]
    while True:
        children = [s for s in spans if s.parent and s.parent.span_id == chain[-1].context.span_id]
        if not children:
            break
        assert len(children) == 1, [(s.name, s.kind) for s in children]
        chain.append(children[0])
    assert [(s.name, s.kind) for s in chain] == [
        ("write", SpanKind.INTERNAL),
        ("kubefabric.shard.v1.Shard/Put", SpanKind.CLIENT),   # router → replica
        ("kubefabric.shard.v1.Shard/Put", SpanKind.SERVER),   # replica
        ("kubefabric.shard.v1.Shard/Put", SpanKind.CLIENT),   # replica → leader
        ("kubefabric.shard.v1.Shard/Put", SpanKind.SERVER),   # leader
        ("kubefabric.writer.commit", SpanKind.INTERNAL),
    ]


from harness.otlp import OtlpCollector  # noqa: E402


PUT_TRACE = {("kv-router", "etcdserverpb.KV/Put"), ("kv-router", "kubefabric.shard.v1.Shard/Put"),
             ("backend-sqlite", "kubefabric.shard.v1.Shard/Put"),
             ("backend-sqlite", "kubefabric.writer.commit")}


CALLER_TRACE = "5eed" * 8   # the trace id of the "kube-apiserver" in front of the tests' writes


def put_watched(endpoint: str, key: bytes) -> tuple:
    """A put whose caller sends its own traceparent (as kube-apiserver does), seen by a watcher
    that asks for trace context (kubefabric_trace_context, as the trigger does) and by one that
    does not: (the traced watcher's event response, the other's)."""
    from harness.client import Client
    from harness.stream import WatchStream

    c = Client(endpoint)
    end = key[:-1] + bytes([key[-1] + 1])
    try:
        with WatchStream(c) as traced, WatchStream(c) as plain:
            assert traced.created(key, end, kubefabric_trace_context=True).created
            assert plain.created(key, end).created
            c.kv.Put(pb.PutRequest(key=key, value=b"v"), timeout=10,
                     metadata=[("traceparent", f"00-{CALLER_TRACE}-{'ab' * 8}-01")])
            (got,) = traced.events(1, timeout=10)
            (other,) = plain.events(1, timeout=10)
    finally:
        c.close()
    assert got.events[0].kv.key == key and other.events[0].kv.key == key
    return got, other


def assert_event_continues_write(collector, got, other, shard_service: str) -> None:
    """The traced watcher's event carries the trace context of the shard's commit span of that
    write (in the caller's trace); the other watcher's event carries none."""
    assert other.kubefabric_traceparent == "" and other.kubefabric_tracestate == ""
    version, trace_id, parent, flags = got.kubefabric_traceparent.split("-")
    assert (version, trace_id, flags) == ("00", CALLER_TRACE, "01"), got.kubefabric_traceparent
    deadline = time.monotonic() + 20
    while True:
        commits = [s for svc, s in collector.spans() if svc == shard_service and
                   s.name == "kubefabric.writer.commit" and s.trace_id.hex() == CALLER_TRACE]
        if commits or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [s.span_id.hex() for s in commits] == [parent], "the event's parent is the write's commit span"


def test_processes_export_one_trace_over_otlp(tmp_path, monkeypatch):
    """The real commands, configured only by OTEL_* variables, export OTLP/gRPC to a collector
    (a tiny one on loopback): a put through `kubefabric serve` and `kubefabric backend-sqlite`
    arrives as one trace from two services, and its watch event (through the shard's Feed RPC)
    carries the write's trace context to a watcher that asked for it."""
    from harness.servers import start_router, start_shard

    collector = OtlpCollector(monkeypatch)
    shard = start_shard(tmp_path, "sqlite", f"sqlite:///{tmp_path / 'shard'}", name="a",
                        extra=["--metrics-address", ""])
    router = start_router(tmp_path, [shard], extra=["--metrics-address", ""])
    try:
        got, other = put_watched(router.endpoint, b"/registry/configmaps/default/traced")
        collector.wait_for("etcdserverpb.KV/Put", PUT_TRACE)
        assert_event_continues_write(collector, got, other, "backend-sqlite")
    finally:
        router.stop()
        shard.stop()
        collector.stop()


def test_embedded_watch_event_carries_the_write_trace(tmp_path, monkeypatch):
    """`kubefabric serve` alone (embedded shard), tracing turned on by --otlp-endpoint (no
    OTEL_EXPORTER_OTLP_ENDPOINT): the writer's trace context reaches the watcher."""
    from harness.servers import start_kubefabric

    collector = OtlpCollector(monkeypatch)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    server = start_kubefabric(tmp_path, ["--metrics-address", "", "--otlp-endpoint", f"http://{collector.endpoint}"])
    try:
        got, other = put_watched(server.endpoint, b"/registry/configmaps/default/traced")
        assert_event_continues_write(collector, got, other, "kv-router")
    finally:
        server.stop()
        collector.stop()


def test_write_and_its_watch_delivery_are_one_trace(tmp_path, monkeypatch, nats_server):
    """Through NATS: the shard leader publishes the write's trace context with its events, the
    watch-hub continues it while it hands the event to its watchers (kube-apiserver -> router
    -> shard -> writer -> hub -> watcher), and a watcher that asked for trace context gets the
    write's, relayed by kv-router from the hub."""
    from harness.servers import start_hub, start_router, start_shard

    collector = OtlpCollector(monkeypatch)
    name = f"traced{time.monotonic_ns() % 10**9}"
    shard = start_shard(tmp_path, "sqlite", f"sqlite:///{tmp_path / 'shard'}", name=name,
                        extra=["--metrics-address", "", "--nats-url", nats_server.url])
    hub = start_hub(tmp_path, nats_server.url, [shard], shard_name=name)
    router = start_router(tmp_path, [shard], extra=["--metrics-address", "", "--watch-hub",
                                                    f"grpc://{hub.endpoint}"])
    try:
        got, other = put_watched(router.endpoint, b"/registry/configmaps/default/traced")
        assert got.events[0].kv.value == b"v"
        collector.wait_for("etcdserverpb.KV/Put", PUT_TRACE | {("watch-hub", "kubefabric.hub.deliver")})
        assert_event_continues_write(collector, got, other, "backend-sqlite")
    finally:
        router.stop()
        hub.stop()
        shard.stop()
        collector.stop()


def test_txns_of_two_shards_at_one_revision_keep_their_own_trace():
    """A merged feed joins the events of two shards' txns that share a revision: a watcher of
    either shard's keys gets its own write's trace context, an untraced txn's events none."""
    from kubefabric.proto.mvccpb.kv_pb2 import Event, KeyValue

    def ev(key: bytes) -> Event:
        return Event(kv=KeyValue(key=key, mod_revision=7))

    a, b = {"traceparent": f"00-{'a' * 32}-{'1' * 16}-01"}, {"traceparent": f"00-{'b' * 32}-{'2' * 16}-01"}
    main = tracing.TracedEvents([ev(b"/registry/events/x"), ev(b"/registry/leases/y")], a)
    orders = tracing.TracedEvents([ev(b"/registry/shop/orders/o")], b)
    joined = tracing.join_commits(tracing.same_trace(main, list(main)), orders)
    assert [e.kv.key for e in joined] == [b"/registry/events/x", b"/registry/leases/y", b"/registry/shop/orders/o"]
    assert tracing.trace_for(joined, b"/registry/shop/orders/o") == b
    assert tracing.trace_for(joined, b"/registry/leases/y") == a
    untraced = tracing.join_commits([ev(b"/registry/events/z")], orders)
    assert tracing.trace_for(untraced, b"/registry/events/z") is None
    assert tracing.trace_for(untraced, b"/registry/shop/orders/o") == b
    plain = tracing.join_commits([ev(b"k1")], [ev(b"k2")])
    assert type(plain) is list and tracing.trace_for(plain, b"k1") is None


def test_delivery_request_carries_its_span_as_header_and_cloudevents_extension(exporter):
    """The trigger's request for an event: W3C traceparent of the delivery span both as the HTTP
    header and as the CloudEvents distributed-tracing extension (binary mode: Ce-Traceparent);
    with tracing off, neither."""
    from trigger.compiled import compile_trigger
    from trigger.events import Event
    from trigger.objects import ObjectRef
    from trigger.request import Lookups, build

    t = compile_trigger({"apiVersion": "triggers.kubefabric.io/v1", "kind": "HTTPTrigger",
                         "metadata": {"name": "t", "namespace": "ns"},
                         "spec": {"resource": {"apiVersion": "v1", "kind": "ConfigMap"},
                                  "url": {"static": "http://127.0.0.1:9/"}}}, "file")
    assert t.runnable, t.error
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}}
    ev = Event("ADDED", b"/registry/configmaps/ns/c", 5, obj, None, ObjectRef("ns", "c"))
    with tracing.tracer().start_as_current_span("trigger deliver") as span:
        req = build(t, ev, "configmaps", "kubefabric", Lookups())
    ctx = span.get_span_context()
    traceparent = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
    assert req.headers["traceparent"] == traceparent
    assert req.headers["Ce-Traceparent"] == traceparent
    assert req.headers["Ce-Id"] == "/registry/configmaps/ns/c@5"
    tracing.uninstall()
    untraced = build(t, ev, "configmaps", "kubefabric", Lookups())
    assert not {"traceparent", "Ce-Traceparent"} & set(untraced.headers), untraced.headers
