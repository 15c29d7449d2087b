"""`kubefabric trigger`: call HTTP functions when Kubernetes resources stored in KubeFabric
change. Triggers are HTTPTrigger objects (triggers.kubefabric.io/v1, HariKube's fields) read
live from the data layer, and/or a --triggers file. Events are CloudEvents 1.0 (Knative
ApiServerSource types, ce-id = <key>@<mod_revision>), delivered at least once and in order per
object, with a durable watermark and a dead-letter queue in KubeFabric.

Several replicas share the work (leases and rendezvous hashing of object keys). Health:
/livez and /readyz, Prometheus /metrics, on --listen-address.

Subcommands: `kubefabric trigger dlq list|replay|purge`, `kubefabric trigger status`.
"""
from __future__ import annotations

import argparse
import socket

from kubefabric.config import Bool, Count, Duration, Flag, HostPort, URLs, add_flags
from kubefabric.rpc import startup

CLIENT_FLAGS = [
    Flag("--endpoints", "http://127.0.0.1:2379", "the etcd API to read and record through: "
         "kv-router (or kubefabric serve), http(s)://host:port[,...]",
         type=URLs(("http", "https"))),
    Flag("--ca-file", "", "CA that signs the router's certificate (https:// endpoints)"),
    Flag("--cert-file", "", "client certificate for a router that requires one"),
    Flag("--key-file", "", "the client certificate's key"),
]

FLAGS = [
    Flag("--triggers", "", "a YAML file of HTTPTrigger objects (apiVersion triggers.kubefabric.io/v1), "
         "for use without a cluster; read at start"),
    Flag("--cluster-triggers", "true", "also run the HTTPTrigger objects stored in the data layer "
         "(applied with kubectl), picked up and changed live", type=Bool(), const="true"),
    Flag("--replica-name", socket.gethostname(), "this replica's name among the replicas (its "
         "progress records are kept under it: keep it stable across restarts, e.g. the pod name)"),
    Flag("--lease-ttl", "10", "seconds a replica's lease lasts: a replica that dies loses its "
         "share to the others within it", type=Count(2, 86400)),
    Flag("--event-source", "https://kubernetes.default.svc", "the CloudEvents `source` "
         "attribute (Knative's ApiServerSource uses the API server's URL); spec.cloudEvents.source "
         "overrides it per trigger"),
    Flag("--service-url-template", "{scheme}://{name}.{namespace}.svc:{port}",
         "how url.service becomes a URL: {scheme}, {name}, {namespace}, {port} (the Service's port)"),
    Flag("--checkpoint-interval", "1s", "how often watermarks and counters are recorded in "
         "KubeFabric (a crash redelivers at most this much)", type=Duration(positive=True)),
    Flag("--listen-address", "127.0.0.1:2680", "host:port for /livez, /readyz and /metrics "
         "(empty disables). Traces: the OTEL_* environment variables", type=HostPort(optional=True, listen=True)),
    *startup.process_flags(shutdown_grace=None),
]


def command(subparsers) -> None:
    p = subparsers.add_parser("trigger", help="call HTTP functions on resource changes (HTTPTrigger)",
                              description=__doc__.replace("`", "").strip(),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p, CLIENT_FLAGS + FLAGS)
    p.set_defaults(func=_process("run"))
    sub = p.add_subparsers(dest="trigger_command", metavar="SUBCOMMAND")
    _add_dlq_commands(sub, lambda q: add_flags(q, CLIENT_FLAGS))
    st = sub.add_parser("status", help="show every trigger's status",
                        description="Every trigger's status as the service recorded it.")
    add_flags(st, CLIENT_FLAGS)
    st.add_argument("-o", "--output", choices=("table", "json"), default="table")
    st.set_defaults(func=_process("run_status"))


def _add_dlq_commands(sub, common_flags) -> None:
    dlq = sub.add_parser("dlq", help="list, replay or purge dead letters",
                         description="The dead-letter queue: events a function did not accept "
                                     "after their last attempt.")
    dsub = dlq.add_subparsers(dest="dlq_command", metavar="COMMAND", required=True)
    for name, helptext in (("list", "show dead letters"),
                           ("replay", "deliver dead letters again (the running service does it)"),
                           ("purge", "delete dead letters")):
        p = dsub.add_parser(name, help=helptext, description=helptext)
        common_flags(p)
        p.add_argument("--trigger", default="", help="only this trigger (namespace/name)")
        p.add_argument("--id", action="append", default=[],
                       help="only this letter (its event id <key>@<revision>); repeatable")
        if name == "list":
            p.add_argument("-o", "--output", choices=("table", "json"), default="table")
        p.set_defaults(func=_process("run_dlq"))


def _process(name: str):
    """A command's function: trigger.main.<name>(args). trigger.main is imported only when a
    command runs: it loads grpc, which must not load while the command line is built
    (kubefabric.cli), and the delivery stack (aiohttp, CloudEvents, CEL)."""
    def run(args: argparse.Namespace) -> int:
        from . import main
        return getattr(main, name)(args)
    return run
