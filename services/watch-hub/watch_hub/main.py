"""The watch-hub process (`kubefabric watch-hub`, the command in serve.py): the Watch API and
health on one port at once, NATS and the shard services followed in the background, and a
clean stop on SIGTERM (watch streams end as etcd's do).

Health: "" and "liveness" are SERVING while the process runs; "readiness" once NATS is
connected and every shard service answered (until then Watch answers UNAVAILABLE).
"""
from __future__ import annotations

import argparse
import asyncio
import logging

from kubefabric import telemetry
from kubefabric.events.connect import connect
from kubefabric.lifecycle import until_terminated
from kubefabric.rpc.limits import max_message_bytes
from kubefabric.rpc.server import LIVENESS, listen, make_server
from kubefabric.rpc.startup import StartupError
from kubefabric.rpc.wire import register
from kubefabric.tls.nats import NatsTLS
from kubefabric.topology.load import TopologyError, load_topology
from kubefabric.watch.registry import WatcherRegistry

from .sources import HubSources
from .watch import HubWatchService

log = logging.getLogger("kubefabric.hub")

READINESS = ("readiness",)  # NATS connected and every shard service answered


def _specs(args):
    """(name, endpoints, tls) per shard, and the topology (None for --shard)."""
    if args.shard:
        return [(args.shard_name, args.shard, None)], None
    try:
        topology = load_topology(args.topology)
    except (TopologyError, OSError) as err:
        raise StartupError(f"--topology: {err}") from None
    embedded = [s.name for s in topology.shards.values() if s.endpoint == "embedded"]
    if embedded:
        raise StartupError(f"--topology: shard(s) {', '.join(embedded)} are embedded in kv-router; "
                           "a watch-hub follows shard services only (grpc:// endpoints)")
    return [(s.name, s.endpoint, s.tls) for s in topology.shards.values()], topology


async def main(args: argparse.Namespace, nats_tls: NatsTLS | None) -> int:
    """Serve until SIGTERM; StartupError when a flag, file or address keeps it from starting."""
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

    ready = asyncio.create_task(_open(args, specs, topology, nats_tls))
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


async def _open(args, specs, topology, nats_tls):
    nc = await connect(args.nats_url, "kubefabric-watch-hub", nats_tls)
    sources = HubSources(nc)
    try:
        await sources.open(specs, topology)
    except BaseException:
        await nc.close()
        raise
    return nc, sources
