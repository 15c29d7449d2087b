"""`kubefabric backend-pg|backend-mysql|backend-sqlite`: one replica of a shard service.

Run several replicas on the same database: they elect one writer through the database (a lease
the leader renews; a replica takes over once it runs out), the others serve reads and forward
writes. kv-router reaches them with
`kubefabric serve --shard grpc://host:port[,grpc://host:port...]`.

Health (grpc.health.v1): "" and "liveness" are SERVING while the process runs; "readiness" and
"kubefabric.shard.v1.Shard" are SERVING only once the database is reachable and this replica's
role (leader or replica) is known.
"""
from __future__ import annotations

import argparse
import importlib
import logging

from kubefabric.config import Bool, Count, Duration, Flag, HostPort, URLs, add_command
from kubefabric.dsn import DSN, DSNError, parse_dsn
from kubefabric.events.bus import BusError, check_url
from kubefabric.rpc import startup
from kubefabric.rpc.limits import REQUEST_BYTES
from kubefabric.tls import nats as natstls
from kubefabric.topology.load import TopologyError

log = logging.getLogger("kubefabric.shard.serve")

# NATS servers: the port may be left out (4222)
NATS_URLS = URLs(("nats", "tls"), optional=True, port_required=False)


def flags(default_port: int, dsn_example: str) -> list[Flag]:
    return [
        Flag("--dsn", "", f"the shard's database, e.g. {dsn_example} (the password is never "
             "logged; prefer the environment variable)"),
        Flag("--listen-address", f"127.0.0.1:{default_port}", "host:port to serve the Shard API on",
             type=HostPort(listen=True)),
        Flag("--advertise-address", "", "host:port other replicas and routers use to reach this "
             "one (default: --listen-address)", type=HostPort(optional=True, host_required=True)),
        Flag("--lane-address", "", "host:port of the batch lane: kv-router's coalesced reads "
             "and writes and its commit feed as plain frames on TCP beside the gRPC port, about "
             "4x cheaper per message than a gRPC stream (port 0: any free one; empty: no lane, they go on "
             "gRPC). With --cert-file it serves TLS with the same certificate (and, with "
             "--trusted-ca-file, client certificates). Routers learn it from the Status RPC "
             "and dial it on the host they reach this replica at",
             type=HostPort(listen=True, optional=True)),
        Flag("--name", "default", "the shard's name, used in logs"),
        Flag("--topology", "", "the topology file kv-router reads (docs/topology.md): this "
             "shard keeps the label and field indexes of its rules with index: and shard: "
             "<--name>; re-read on SIGHUP and when it changes (empty: no indexes)"),
        Flag("--read-pool-size", "8", "database connections for reads", type=Count(1, 1000)),
        Flag("--max-txn-ops", "128", "most operations in one txn branch (etcd's default)",
             type=Count(1)),
        Flag("--quota-backend-bytes", "0", "database size at which the NOSPACE alarm is raised "
             "(0: etcd's default, 2 GiB)", type=Count(0)),
        Flag("--max-request-bytes", "1572864", "largest request accepted (etcd's 1.5 MiB)",
             type=REQUEST_BYTES),
        Flag("--leader-lease", "1s", "how long the leader's lease lasts (etcd's election timeout): "
             "the leader renews it through the database several times per lease and stops "
             "writing when it cannot; a replica takes over once it ran out, so a frozen or "
             "partitioned leader is replaced after about this long",
             type=Duration(minimum=0.1, maximum=60)),
        Flag("--group-commit", "true", "batch concurrent writes into one database transaction "
             "(false: one transaction per write, for comparison)", type=Bool()),
        *startup.process_flags("10s", metrics_address=f"127.0.0.1:{default_port + 100}"),
        # TLS on the Shard API (kubefabric/tls/server.py); replicas use the same files to reach
        # their leader: the certificate as client certificate, --trusted-ca-file to verify it
        Flag("--cert-file", "", "TLS certificate (PEM) of the Shard API; when set the API is "
             "served with TLS only. Re-read when it changes. Its SANs must cover the address "
             "routers and other replicas dial (--advertise-address); with --trusted-ca-file it "
             "is also this replica's client certificate towards the leader (extended key usage "
             "serverAuth and clientAuth)"),
        Flag("--key-file", "", "unencrypted private key (PEM) of --cert-file"),
        Flag("--nats-url", "", "NATS server(s) with JetStream, nats://host:port[,...] (or "
             "tls://, see --nats-ca-file): the leader "
             "publishes every committed txn to the stream KF_<name> (subject kf.<name>.events) "
             "for watch-hubs, heartbeats on kf.<name>.heartbeat, and follows kf.clock (empty: no "
             "events on NATS; kv-router then follows the Feed RPC itself)", type=NATS_URLS),
        *natstls.FLAGS,  # TLS towards NATS: --nats-ca-file, --nats-cert-file, --nats-key-file
        Flag("--event-retention", "1h", "how long the JetStream stream keeps events (watch-hubs "
             "read older revisions from the database)", type=Duration(positive=True)),
        Flag("--trusted-ca-file", "", "CA certificate(s) (PEM) of clients (routers, other "
             "replicas): setting it requires and verifies a client certificate on every "
             "connection (mTLS); replicas also verify the leader's certificate with it (without "
             "it: the system's trust roots)"),
    ]


def make_command(name: str, kinds: tuple[str, ...], default_port: int, dsn_example: str,
                 store_class: str, summary: str):
    """The entry point of one backend's subcommand. `store_class` ("module:Class") builds its
    stores with Class.for_service(dsn, args); the module loads only when the command runs (the
    CLI builds every command's parser: no SQLAlchemy or database driver then)."""

    def store_of(dsn: DSN, args: argparse.Namespace):
        module, _, cls = store_class.partition(":")
        return getattr(importlib.import_module(module), cls).for_service(dsn, args)

    def command(subparsers) -> None:
        add_command(subparsers, name, summary, f"{summary}. {__doc__.split(chr(10), 2)[2].strip()}",
                    flags(default_port, dsn_example), lambda args: run(args, kinds, store_of),
                    telemetry_name=name)
    return command


def run(args, kinds: tuple[str, ...], store_of) -> int:
    return startup.run(args, lambda: _start(args, kinds, store_of), log)


def _start(args, kinds: tuple[str, ...], store_of):
    dsn, nats_tls = _checked(args, kinds, store_of)
    index_rules = _index_rules(args)
    from .main import main  # grpc loads now (kubefabric.cli)
    return main(args, dsn, nats_tls, store_of, index_rules)


def _index_rules(args) -> tuple:
    """The label and field indexes this shard keeps: its rules in --topology (StartupError)."""
    if not args.topology:
        return ()
    from kubefabric.index.topofile import load_rules  # (loads grpc: not while building the CLI)
    try:
        return load_rules(args.topology, args.name)
    except TopologyError as err:
        raise startup.StartupError(f"--topology: {err}".replace("\n", "; ")) from None


def _checked(args, kinds: tuple[str, ...], store_of) -> tuple[DSN, natstls.NatsTLS | None]:
    """The DSN and NATS TLS settings, checked before anything starts (StartupError)."""
    nats_tls = None
    if args.nats_url:
        check_url(args.nats_url)
        nats_tls = natstls.from_flags(args.nats_url, args.nats_ca_file, args.nats_cert_file,
                                      args.nats_key_file)
    elif args.nats_ca_file or args.nats_cert_file or args.nats_key_file:
        raise BusError("--nats-ca-file, --nats-cert-file and --nats-key-file need --nats-url")
    if not args.dsn:
        raise DSNError("--dsn (or KUBEFABRIC_DSN) is required")
    dsn = parse_dsn(args.dsn)
    if dsn.kind not in kinds:
        raise DSNError(f"this command serves {' or '.join(kinds)} databases, not {dsn.kind}")
    store_of(dsn, args)  # built, not opened: checks the DSN's settings and TLS files now
    return dsn, nats_tls
