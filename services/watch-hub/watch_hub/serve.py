"""`kubefabric watch-hub`: ordered, gap-free, resumable watch feeds from the shards' event
streams on NATS JetStream, served as the etcd Watch API (kv-router proxies its clients' watches
here with `serve --watch-hub`; trigger and aggregation consume it the same way).

Stateless: every hub follows every shard's stream on its own, so two or more replicas serve the
same feeds. Health (grpc.health.v1): "" and "liveness" are SERVING while the process runs;
"readiness" once NATS is connected and every shard service answered.
"""
from __future__ import annotations

import argparse
import asyncio
import logging

from kubefabric.config import Count, Duration, Endpoints, Flag, HostPort, URLs, add_flags
from kubefabric.events.bus import check_url
from kubefabric.lifecycle import until_terminated
from kubefabric.logs import setup_logging
from kubefabric.rpc import startup
from kubefabric.rpc.startup import StartupError
from kubefabric.tls import nats as natstls

log = logging.getLogger("kubefabric.hub")

READINESS = ("readiness",)  # NATS connected and every shard service answered

FLAGS = [
    Flag("--topology", "", "the topology file kv-router uses (docs/topology.md): every shard "
         "must be a grpc:// shard service publishing on NATS; re-read on restart"),
    Flag("--shard", "", "one shard service instead of a topology: its replicas' Shard API "
         "addresses, grpc://host:port[,grpc://host:port...]", type=Endpoints("grpc")),
    Flag("--shard-name", "default", "with --shard: the shard's name (its --name; its NATS "
         "subjects are kf.<name>.*)"),
    Flag("--nats-url", "", "NATS server(s) with JetStream, nats://host:port[,...] or "
         "tls://host:port[,...] (required)",
         type=URLs(("nats", "tls"), optional=True, port_required=False)),
    *natstls.FLAGS,  # TLS towards NATS: --nats-ca-file, --nats-cert-file, --nats-key-file
    Flag("--listen-address", "127.0.0.1:2480", "host:port to serve the Watch API and health on",
         type=HostPort()),
    Flag("--metrics-address", "127.0.0.1:2580", "host:port to serve Prometheus /metrics on "
         "(empty disables). Traces: the OTEL_* environment variables", type=HostPort(optional=True)),
    Flag("--watch-progress-notify-interval", "10m", "how often watchers that asked for progress "
         "notifications get one when idle (0: never)", type=Duration()),
    Flag("--watch-stream-buffer-bytes", "67108864", "responses a watch stream may hold for a "
         "reader that is too slow; past it every watcher of the stream is cancelled with a "
         "reason", type=Count(1)),
    Flag("--max-watchers-per-stream", "100000", "most watchers one watch stream may hold",
         type=Count(1)),
    Flag("--max-watch-streams-per-connection", "1000000", "most watch streams one connection may "
         "have open at once (a kv-router relays all its clients' streams on one connection; it "
         "limits each client itself)", type=Count(1)),
    Flag("--max-request-bytes", "1572864", "etcd's request limit of the routers in front: watch "
         "responses with fragment=true are split at it (plus gRPC's allowance)",
         type=Count(1, 2 ** 31 - 1 - 512 * 1024)),
    Flag("--log-format", "text", "log format: text or json", choices=("text", "json")),
    Flag("--log-level", "info", "log level", choices=("debug", "info", "warning", "error")),
    Flag("--shutdown-grace", "5s", "time watch streams get to end cleanly on SIGTERM",
         type=Duration()),
    Flag("--event-loop", "uvloop", "asyncio event loop: uvloop or asyncio",
         choices=("uvloop", "asyncio")),
]


def command(subparsers) -> None:
    p = subparsers.add_parser(
        "watch-hub", help="serve watch feeds from the shards' NATS JetStream streams",
        description=__doc__.replace("`", "").strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p, FLAGS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_format, args.log_level)
    return startup.run(lambda: _serve(args, _nats_tls(args)), args.event_loop, log)


def _nats_tls(args) -> natstls.NatsTLS | None:
    """The NATS settings checked (StartupError), and TLS towards NATS (None: plaintext)."""
    if not args.nats_url:
        raise StartupError("--nats-url (or KUBEFABRIC_NATS_URL) is required")
    check_url(args.nats_url)
    nats_tls = natstls.from_flags(args.nats_url, args.nats_ca_file, args.nats_cert_file,
                                  args.nats_key_file)
    if bool(args.topology) == bool(args.shard):
        raise StartupError("give exactly one of --topology FILE and --shard grpc://host:port")
    return nats_tls


def _specs(args):
    """(name, endpoints, tls) per shard, and the topology (None for --shard)."""
    if args.shard:
        return [(args.shard_name, args.shard, None)], None
    from kubefabric.topology.load import TopologyError, load_topology

    try:
        topology = load_topology(args.topology)
    except (TopologyError, OSError) as err:
        raise StartupError(f"--topology: {err}") from None
    embedded = [s.name for s in topology.shards.values() if s.endpoint == "embedded"]
    if embedded:
        raise StartupError(f"--topology: shard(s) {', '.join(embedded)} are embedded in kv-router; "
                           "a watch-hub follows shard services only (grpc:// endpoints)")
    return [(s.name, s.endpoint, s.tls) for s in topology.shards.values()], topology


async def _serve(args, nats_tls) -> int:
    from kubefabric import telemetry
    from kubefabric.events.bus import connect
    from kubefabric.rpc.server import LIVENESS, listen, make_server, max_message_bytes
    from kubefabric.rpc.wire import register
    from kubefabric.watch.registry import WatcherRegistry

    from .watch import HubWatchService

    specs, topology = _specs(args)
    watch = HubWatchService(max_message_bytes(args.max_request_bytes), args.watch_stream_buffer_bytes,
                            args.max_watchers_per_stream, args.max_watch_streams_per_connection)
    server, health = make_server(args.max_request_bytes)
    register(server, "Watch", watch)
    await listen(server, [(args.listen_address, None)], "--listen-address")
    await health.mark(LIVENESS, serving=True)
    await health.mark(READINESS, serving=False)
    telemetry.setup("watch-hub", args.metrics_address)
    log.info("watch-hub: serving the Watch API on %s; connecting to NATS and %d shard(s)",
             args.listen_address, len(specs))

    ready = asyncio.create_task(_open(args, specs, topology, connect, nats_tls))
    stop = asyncio.create_task(until_terminated())
    done, _ = await asyncio.wait({ready, stop}, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        ready.cancel()
        await server.stop(0)
        return 0
    nc, sources = ready.result()  # raises StartupError: the caller logs it
    registry = WatcherRegistry(sources.surface, args.watch_progress_notify_interval)
    registry.start()
    watch.serve(registry, sources.surface.state.fill)
    telemetry.metrics.add_source(telemetry.sources.router(sources.surface, watch))
    telemetry.metrics.add_source(telemetry.sources.hub(sources.subscriptions))
    await health.mark(READINESS, serving=True)
    log.info("watch-hub ready at revision %d (shards: %s)", registry.committed, ", ".join(sources.shards))

    await stop
    log.info("shutting down: ending watch streams")
    await health.enter_graceful_shutdown()
    watch.close_all()
    await registry.stop()
    await server.stop(args.shutdown_grace)
    await sources.close()
    await nc.close()
    log.info("stopped")
    return 0


async def _open(args, specs, topology, connect, nats_tls):
    nc = await connect(args.nats_url, "kubefabric-watch-hub", nats_tls)
    from .sources import HubSources

    sources = HubSources(nc)
    try:
        await sources.open(specs, topology)
    except BaseException:
        await nc.close()
        raise
    return nc, sources
