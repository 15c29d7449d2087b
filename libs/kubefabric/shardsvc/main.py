"""A shard service replica's process (`kubefabric backend-pg|backend-mysql|backend-sqlite`, the
command in serve.py): the Shard API and health on one port, the replica's election, events to
NATS while it leads, and a clean stop on SIGTERM (finishing in-flight requests).

Health (grpc.health.v1): "" and "liveness" are SERVING while the process runs; "readiness" and
"kubefabric.shard.v1.Shard" are SERVING only once the database is reachable and this replica's
role (leader or replica) is known.
"""
from __future__ import annotations

import asyncio
import logging

from kubefabric import telemetry
from kubefabric.dsn import DSN
from kubefabric.events.connect import connect
from kubefabric.events.publisher import EventPublisher
from kubefabric.index.topofile import IndexSettingsFile
from kubefabric.lifecycle import settle_heap, until_terminated
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2_grpc
from kubefabric.rpc.handlers import GATE
from kubefabric.rpc.server import LIVENESS, listen, make_server
from kubefabric.rpc.startup import StartupError
from kubefabric.tls import CertificateReloader, ClientTLS, TLSSettings, check_files
from kubefabric.tls.nats import NatsTLS

from .lane import LaneServer
from .node import ShardNode
from .service import ShardService

log = logging.getLogger("kubefabric.shard.serve")

READINESS = ("readiness", "kubefabric.shard.v1.Shard")  # the database answers, the role is known


async def main(args, dsn: DSN, nats_tls: NatsTLS | None, store_of, index_rules: tuple = ()) -> int:
    """Serve until SIGTERM; StartupError when a flag, file or address keeps it from starting.
    index_rules: the shard's label and field indexes (from --topology, re-read on changes)."""
    address = args.advertise_address or args.listen_address
    options = {"max_txn_ops": args.max_txn_ops, "quota_bytes": args.quota_backend_bytes,
               "group_commit": args.group_commit}
    node = ShardNode(lambda: store_of(dsn, args), options, address, args.name, args.leader_lease)
    node.index_rules = index_rules
    service = ShardService(node, type(store_of(dsn, args)).is_unavailable)
    server, health = make_server(args.max_request_bytes)
    shard_pb2_grpc.add_ShardServicer_to_server(service, server)
    credentials, certificates = None, None
    if args.cert_file or args.key_file or args.trusted_ca_file:
        check_files(args.cert_file, args.key_file, args.trusted_ca_file)
        listeners = (args.listen_address, *([args.lane_address] if args.lane_address else []))
        tls = TLSSettings(args.cert_file, args.key_file, args.trusted_ca_file, listeners)
        certificates = CertificateReloader(tls)
        credentials = certificates.credentials()
        node.peer_tls = ClientTLS(args.trusted_ca_file, args.cert_file, args.key_file)
    lane = None
    if args.lane_address:  # first: a port it cannot have stops the start before the API serves
        lane = LaneServer(service, args.max_request_bytes, certificates)
        try:
            service.lane = await lane.start(args.lane_address)
        except OSError as err:
            raise StartupError(f"--lane-address: cannot listen on {args.lane_address}: "
                               f"{err.strerror or err}") from None
        log.info("shard %s: batch lane on %s (advertised as %s)", args.name, args.lane_address,
                 service.lane)
    await listen(server, [(args.listen_address, credentials)], "--listen-address")

    async def set_health(role: str) -> None:  # noqa: E306
        await health.mark(READINESS, serving=role in ("leader", "replica"))

    await health.mark(LIVENESS, serving=True)
    await set_health("starting")
    node.on_role_change = lambda role: asyncio.get_running_loop().create_task(set_health(role))
    node.start()
    settings = None
    if args.topology:
        settings = IndexSettingsFile(args.topology, args.name, node.set_index_rules)
        settings.start()
        log.info("shard %s: %d index rule(s) from %s", args.name, len(index_rules), args.topology)
    telemetry.setup(args.telemetry_name, args.metrics_address)
    telemetry.metrics.add_source(telemetry.sources.shard_node(node, args.name))
    log.info("shard %s: serving the Shard API on %s (advertised as %s), database %s",
             args.name, args.listen_address, address, dsn.redacted())
    events = asyncio.create_task(_publish_events(node, args, nats_tls)) if args.nats_url else None

    settle_heap()
    await until_terminated()
    if settings is not None:
        settings.stop()
    if events is not None:
        events.cancel()
    log.info("shutting down: finishing in-flight requests")
    await health.enter_graceful_shutdown()
    service.end_streams()
    await GATE.drain(args.shutdown_grace)
    service.close_feeds()
    if lane is not None:
        await lane.stop(args.shutdown_grace)
    await server.stop(args.shutdown_grace)
    await node.stop()
    log.info("stopped")
    return 0


async def _publish_events(node, args, nats_tls) -> None:
    """Connect to NATS (waiting for it as long as it takes) and publish while leading.
    nats_tls: None for plaintext."""
    nc = await connect(args.nats_url, f"kubefabric-{args.telemetry_name}-{args.name}", nats_tls)
    publisher = EventPublisher(node, nc, args.name, args.event_retention)
    await publisher.start()
    telemetry.metrics.add_source(telemetry.sources.publisher(publisher))
    try:
        await asyncio.Event().wait()
    finally:
        await publisher.stop()
        await nc.close()
