"""`kubefabric watch-hub`: ordered, gap-free, resumable watch feeds from the shards' event
streams on NATS JetStream, served as the etcd Watch API (kv-router proxies its clients' watches
here with `serve --watch-hub`; trigger and aggregation consume it the same way).

Stateless: every hub follows every shard's stream on its own, so two or more replicas serve the
same feeds. Health (grpc.health.v1): "" and "liveness" are SERVING while the process runs;
"readiness" once NATS is connected and every shard service answered.
"""
from __future__ import annotations

import argparse
import logging

from kubefabric.config import Count, Duration, Endpoints, Flag, HostPort, URLs, add_command
from kubefabric.events.bus import check_url
from kubefabric.rpc import startup
from kubefabric.rpc.limits import REQUEST_BYTES
from kubefabric.rpc.startup import StartupError
from kubefabric.tls import nats as natstls

log = logging.getLogger("kubefabric.hub")

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
         type=HostPort(listen=True)),
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
         type=REQUEST_BYTES),
    *startup.process_flags("5s", "time watch streams get to end cleanly on SIGTERM",
                           metrics_address="127.0.0.1:2580"),
]


def command(subparsers) -> None:
    add_command(subparsers, "watch-hub", "serve watch feeds from the shards' NATS JetStream streams",
                __doc__.replace("`", "").strip(), FLAGS, startup.runner(_start, log))


def _start(args: argparse.Namespace):
    nats_tls = _nats_tls(args)
    from .main import main  # grpc loads now (kubefabric.cli)
    return main(args, nats_tls)


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
