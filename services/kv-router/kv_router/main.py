"""The `kubefabric serve` process: open the shards, serve the etcd v3 API, compact, follow the
topology file, and stop cleanly on SIGTERM (finishing in-flight requests)."""
from __future__ import annotations

import argparse
import logging

from kubefabric import telemetry
from kubefabric.auth.tokens import TokenError, provider
from kubefabric.lifecycle import settle_heap, until_terminated
from kubefabric.rpc.startup import StartupError
from kubefabric.tls import CertificateReloader, TLSSettings

from .compaction import AutoCompactor
from .routed import RoutedShards
from .server import RouterServer, ServerConfig
from .shards import TopologyReloader, open_shards
from .workers import Workers

log = logging.getLogger("kubefabric.serve")


def server_config(args: argparse.Namespace, tls: TLSSettings | None,
                  reuse_port: bool = False) -> ServerConfig:
    """The etcd v3 server's settings from the flags (StartupError for a bad one)."""
    listen = [u.strip() for u in args.listen_client_urls.split(",") if u.strip()]
    advertise = [u.strip() for u in (args.advertise_client_urls or args.listen_client_urls).split(",")
                 if u.strip()]
    cfg = ServerConfig(listen_client_urls=listen, advertise_client_urls=advertise, name=args.name,
                       max_request_bytes=args.max_request_bytes,
                       peer_urls=[u.strip() for u in args.initial_advertise_peer_urls.split(",")],
                       progress_interval_s=args.watch_progress_notify_interval,
                       watch_buffer_bytes=args.watch_stream_buffer_bytes,
                       max_watchers_per_stream=args.max_watchers_per_stream,
                       max_watch_streams_per_connection=args.max_watch_streams_per_connection,
                       request_timeout_s=args.request_timeout, watch_hub=args.watch_hub,
                       tls=CertificateReloader(tls) if tls else None, reuse_port=reuse_port)
    try:
        cfg.auth_tokens = provider(args.auth_token, simple_ttl_s=float(args.auth_token_ttl))
    except TokenError as err:
        raise StartupError(f"--auth-token: {err}") from None
    cfg.client_cert_auth = bool(args.client_cert_auth)
    cfg.bcrypt_cost = args.bcrypt_cost
    return cfg


async def main(args: argparse.Namespace, tls: TLSSettings | None) -> int:
    """Serve until SIGTERM; StartupError when a flag, file or address keeps it from starting.
    With --workers above 1, also start and supervise the worker processes (kv_router.workers)."""
    workers = Workers.from_args(args)
    cfg = server_config(args, tls, reuse_port=workers is not None)
    try:
        compactor_cfg = AutoCompactor.parse(args.auto_compaction_mode, args.auto_compaction_retention)
    except ValueError as err:
        raise StartupError(f"--auto-compaction-retention: {err}") from None
    shard = await open_shards(args)
    server = RouterServer(shard, cfg)
    try:
        if workers is not None:  # they serve before the client port answers anywhere
            await workers.start(shard)
        await server.start()
    except BaseException:
        if workers is not None:
            await workers.stop()
        await shard.close()
        raise
    telemetry.setup("kv-router", args.metrics_address)
    telemetry.metrics.add_source(telemetry.sources.router(shard, server.watch))
    compactors = [AutoCompactor(shard, *compactor_cfg)]
    reloader, routed = None, None
    if isinstance(shard, RoutedShards):  # --topology
        for spec in shard.topology.shards.values():  # shards with their own retention
            if spec.compaction_retention:
                compactors.append(AutoCompactor(shard.shards[spec.name], *AutoCompactor.parse(
                    args.auto_compaction_mode, spec.compaction_retention)))
        routed = shard
        routed.misplacement.check("start-up")  # in the background: keys on the wrong shard
        reloader = TopologyReloader(shard, args.topology, args)
        reloader.start()
    for compactor in compactors:
        compactor.start()

    settle_heap()
    await until_terminated()
    log.info("shutting down: finishing in-flight requests")
    if workers is not None:  # their in-flight writes need this process: they stop first
        await workers.stop()
    for compactor in compactors:
        compactor.stop()
    if reloader:
        reloader.stop()
    if routed:
        routed.misplacement.stop()
    await server.stop(args.shutdown_grace)
    await shard.close()
    log.info("stopped cleanly at revision %d", shard.state.committed)
    return 0
