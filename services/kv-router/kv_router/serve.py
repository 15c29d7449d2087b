"""`kubefabric serve`: the embedded default — kv-router, one SQLite shard and the in-process
event bus in one process, serving the etcd v3 API."""
from __future__ import annotations

import argparse
import logging
import os

from kubefabric.config import Bool, Count, Duration, Endpoints, Flag, URLs, add_command
from kubefabric.rpc import startup
from kubefabric.rpc.limits import REQUEST_BYTES

from .tls import settings_from_args

log = logging.getLogger("kubefabric.serve")


FLAGS = [
    Flag("--listen-client-urls", "http://127.0.0.1:2379",
         "comma-separated URLs to serve the etcd v3 gRPC API on (etcd's flag name)",
         type=URLs(("http", "https"), listen=True)),
    Flag("--advertise-client-urls", "",
         "URLs reported to clients in MemberList (default: the listen URLs)",
         type=URLs(("http", "https"), optional=True)),
    Flag("--data-dir", "kubefabric-data",
         "directory of the embedded SQLite shard; created if missing (not used with --shard)"),
    Flag("--shard", "", "serve a shard service instead of the embedded SQLite shard: its "
         "replicas' Shard API addresses, grpc://host:port[,grpc://host:port...] (writes go to "
         "the leader, reads to any replica)", type=Endpoints("grpc")),
    Flag("--topology", "", "serve several shards routed by this topology file (YAML: shards, "
         "rules, default; see docs/topology.md); re-read on SIGHUP and when it changes"),
    Flag("--watch-hub", "", "serve etcd Watch streams through watch-hub(s), "
         "grpc://host:port[,grpc://host:port...] (with --shard or --topology; streams move to "
         "another hub, or the restarted one, without the client noticing). Without it the "
         "router follows the shards' Feed RPC itself", type=Endpoints("grpc")),
    Flag("--workers", "1", "processes serving the client URLs (0: one per CPU). Above 1, this "
         "process starts that many minus one workers on the same ports (SO_REUSEPORT: the kernel "
         "spreads connections over them). Embedded: this process stays the shard's one writer; "
         "the workers answer reads from the SQLite file themselves and pass writes, leases, "
         "compaction and auth to it; watches follow its commits. With --shard or --topology "
         "(shard services only, no embedded shard): each worker is a kv-router of its own over "
         "the same shard services; this process alone compacts. A worker that dies is started "
         "again; worker i serves /metrics on --metrics-address's port + i", type=Count(0, 256)),
    Flag("--name", "default", "member name reported by MemberList"),
    Flag("--initial-advertise-peer-urls", "http://localhost:2380",
         "peer URLs reported by MemberList (KubeFabric has no raft peers; etcd's default)",
         type=URLs(("http", "https"))),
    Flag("--max-request-bytes", "1572864",
         "largest request accepted, in bytes (etcd's default 1.5 MiB); larger puts and txns get "
         "'etcdserver: request is too large'", type=REQUEST_BYTES),
    Flag("--max-txn-ops", "128", "most operations in one txn branch (etcd's default)",
         type=Count(1)),
    Flag("--quota-backend-bytes", "0",
         "database size at which the NOSPACE alarm is raised and writes are refused "
         "(0: etcd's default, 2 GiB)", type=Count(0)),
    Flag("--auto-compaction-mode", "periodic",
         "periodic: keep history for --auto-compaction-retention as a duration; revision: keep "
         "that many revisions", choices=("periodic", "revision")),
    Flag("--auto-compaction-retention", "0",
         "history to keep before compacting automatically (0 disables; kube-apiserver compacts "
         "every 5 minutes on its own). periodic: a duration such as 1h or 30m; revision: a number"),
    Flag("--watch-progress-notify-interval", "10m",
         "how often watchers that asked for progress notifications get one when idle (0: never)",
         type=Duration()),
    Flag("--watch-stream-buffer-bytes", "67108864",
         "responses a watch stream may hold for a client that reads too slowly; past it every "
         "watcher of the stream is cancelled with a reason (clients re-watch)", type=Count(1)),
    Flag("--max-watchers-per-stream", "100000",
         "most watchers one watch stream may hold (etcd has no limit; kube-apiserver puts all "
         "its uncached watches on one stream); one more is refused like etcd refuses a watch: "
         "created and canceled with a reason", type=Count(1)),
    Flag("--max-watch-streams-per-connection", "10000",
         "most watch streams one client connection may have open at once (etcd has no limit; "
         "etcd clients share one stream per connection and context); one more is refused with "
         "RESOURCE_EXHAUSTED", type=Count(1)),
    Flag("--request-timeout", "7s",
         "how long a unary request may take before it fails with etcd's 'etcdserver: request "
         "timed out' (etcd's 5s + 2 election timeouts; 0: no limit). Defragment and Compact, "
         "and Lock and Campaign (which wait for the lock or leadership), are not limited, as in "
         "etcd", type=Duration()),
    Flag("--sqlite-synchronous", "FULL",
         "SQLite durability: FULL fsyncs every commit (like etcd); NORMAL may lose the last "
         "commits on power loss", choices=("FULL", "NORMAL")),
    # TLS on https:// client URLs (kubefabric/tls/suites.py says what grpc can and cannot enforce)
    Flag("--cert-file", "", "server TLS certificate (PEM) for https:// client URLs; re-read when "
         "it changes, so a rotated certificate reaches new connections without a restart"),
    Flag("--key-file", "", "unencrypted private key (PEM) of --cert-file"),
    Flag("--trusted-ca-file", "", "CA certificate(s) (PEM) that sign client certificates; as in "
         "etcd, setting it requires and verifies a client certificate on every connection"),
    Flag("--client-cert-auth", "false", "require client certificates signed by "
         "--trusted-ca-file (needs it)", type=Bool(), const="true"),
    Flag("--cipher-suites", "", "comma-separated TLS 1.2 cipher suites by etcd's (Go's) names, "
         "e.g. TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (empty: grpc's defaults); TLS 1.3 suites "
         "are always on and cannot be chosen"),
    Flag("--tls-min-version", "TLS1.2", "minimum TLS version; only TLS1.2: grpc python always "
         "accepts TLS 1.2 and 1.3 and cannot be limited to TLS 1.3, so TLS1.3 is refused"),
    # etcd authentication (kv_router/auth.py; the users and roles live in the default shard)
    Flag("--auth-token", "simple", "how Authenticate's tokens are made: simple (etcd's default: "
         "opaque, valid on every kv-router replica for --auth-token-ttl after their last use) or "
         "jwt,sign-method=RS256,pub-key=FILE,priv-key=FILE[,ttl=5m] (etcd's option names)"),
    Flag("--auth-token-ttl", "300", "seconds a simple token stays valid after its last use "
         "(etcd's flag; JWT tokens take --auth-token's ttl= instead)", type=Count(1)),
    Flag("--bcrypt-cost", "10", "bcrypt cost of stored user passwords (etcd's flag, 4 to 31)",
         type=Count(4, 31)),
    # TLS towards the --shard endpoints (topology shards have their own `tls:` block)
    Flag("--shard-ca-file", "", "CA certificate(s) (PEM) that verify the --shard services' "
         "certificates; any --shard-* flag dials them with TLS (without this one: the system's "
         "trust roots)"),
    Flag("--shard-cert-file", "", "client certificate (PEM) presented to the --shard services "
         "(for their --trusted-ca-file)"),
    Flag("--shard-key-file", "", "unencrypted private key (PEM) of --shard-cert-file"),
    Flag("--shard-server-name", "", "name to check the --shard services' certificates against "
         "(default: the host of each endpoint)"),
    *startup.process_flags("10s", metrics_address="127.0.0.1:2381",
                           metrics_note=" (like etcd's --listen-metrics-urls)"),
]


def command(subparsers) -> None:
    add_command(subparsers, "serve", "run KubeFabric embedded: etcd v3 API on one SQLite shard",
                "Run KubeFabric as a single process: the etcd v3 gRPC API (KV, Watch, Lease, "
                "Maintenance, Cluster) backed by one SQLite shard in --data-dir. Point "
                "kube-apiserver (--etcd-servers) or etcdctl (--endpoints) at it. Every flag "
                "can also be set as an environment variable KUBEFABRIC_<FLAG_NAME>, e.g. "
                "KUBEFABRIC_DATA_DIR.", FLAGS, startup.runner(_start, log),
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def _start(args: argparse.Namespace):
    tls = settings_from_args(args)  # applies --cipher-suites: before grpc loads (kubefabric.cli)
    if args.workers != 1:
        # the workers are started by fork + exec: grpc's fork handlers have nothing to do
        # between the two, and would log "skipping fork() handlers" at every start
        os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    from .main import main  # grpc loads now (kubefabric.cli)
    return main(args, tls)
