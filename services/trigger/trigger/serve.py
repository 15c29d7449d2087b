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
import asyncio
import logging
import socket
import sys

from kubefabric.config import Bool, Count, Duration, Flag, HostPort, URLs, add_flags
from kubefabric.lifecycle import until_terminated
from kubefabric.rpc import startup
from kubefabric.rpc.startup import StartupError

log = logging.getLogger("kubefabric.trigger")

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
    p.set_defaults(func=run)
    sub = p.add_subparsers(dest="trigger_command", metavar="SUBCOMMAND")
    from .dlq import add_commands
    add_commands(sub, lambda q: add_flags(q, CLIENT_FLAGS))
    st = sub.add_parser("status", help="show every trigger's status",
                        description="Every trigger's status as the service recorded it.")
    add_flags(st, CLIENT_FLAGS)
    st.add_argument("-o", "--output", choices=("table", "json"), default="table")
    st.set_defaults(func=run_status)


def client_tls(args):
    if not (args.ca_file or args.cert_file or args.key_file):
        return None
    from kubefabric.tls import ClientTLS
    return ClientTLS(args.ca_file, args.cert_file, args.key_file)


def client_for(args):
    from kubefabric.client import EtcdClient
    try:
        return EtcdClient.connect(args.endpoints, client_tls(args))
    except ValueError as err:
        raise StartupError(f"--endpoints: {err}") from None


def run(args: argparse.Namespace) -> int:
    return startup.run(args, lambda: _checked(args), log)


def _checked(args: argparse.Namespace):
    """The settings checked (StartupError); the service's coroutine."""
    if args.lease_ttl < 2:
        raise StartupError("--lease-ttl: at least 2 seconds")
    if args.checkpoint_interval <= 0:
        raise StartupError("--checkpoint-interval: must be above 0")
    try:
        args.service_url_template.format(scheme="http", name="n", namespace="ns", port=80)
    except (KeyError, IndexError, ValueError) as err:
        raise StartupError(f"--service-url-template: unknown field {err}") from None
    file_triggers = []
    if args.triggers:
        from .sources import SourceError, load_file
        try:
            file_triggers = load_file(args.triggers)
        except SourceError as err:
            raise StartupError(str(err)) from None
    if not file_triggers and not args.cluster_triggers:
        raise StartupError("nothing to run: give --triggers FILE or leave --cluster-triggers on")
    client_for(args)  # check the endpoints before starting
    return _serve(args, file_triggers)


async def _serve(args, file_triggers) -> int:
    from kubefabric.client import ClientError
    from kubefabric.telemetry import tracing

    from .health import serve_health
    from .service import TriggerService
    from .sources import ClusterTriggers

    tracing.setup("trigger")
    client = client_for(args)
    svc = TriggerService(client, args.replica_name, args.lease_ttl, args.event_source,
                         args.service_url_template, args.checkpoint_interval)
    stop = asyncio.Event()
    web = await serve_health(args.listen_address, svc) if args.listen_address else None
    for t in file_triggers:
        svc.set_trigger(t.id, t)
    cluster = ClusterTriggers(client, svc.set_trigger) if args.cluster_triggers else None
    terminated = asyncio.create_task(until_terminated())
    terminated.add_done_callback(lambda _: stop.set())
    log.info("trigger %s: %d trigger(s) from %s%s; reading %s", args.replica_name, len(file_triggers),
             args.triggers or "no file", " and the cluster's HTTPTriggers" if cluster else "", args.endpoints)
    try:
        while not stop.is_set():
            try:
                if cluster is not None and cluster.task is None:
                    await cluster.start()
                await svc.run(stop)
            except ClientError as err:
                log.error("the data layer is unavailable (%s); retrying in 2s", err)
                await asyncio.sleep(2)
    finally:
        if cluster is not None:
            await cluster.stop()
        if web is not None:
            await web.cleanup()
        await client.close()
    log.info("stopped")
    return 0


def run_status(args) -> int:
    import json

    from kubefabric.client import ClientError

    from . import records

    async def go() -> int:
        client = client_for(args)
        try:
            kvs, _ = await client.kv.list(records.STATUS)
        except ClientError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        finally:
            await client.close()
        rows = [json.loads(kv.value) for kv in kvs]
        if args.output == "json":
            print(json.dumps(rows, indent=1))
            return 0
        table = [("TRIGGER", "SOURCE", "READY", "REVISION", "DELIVERED", "FAILED", "DEAD", "LAST ERROR")]
        for r in rows:
            s = r.get("status", {})
            ready = next((c["status"] for c in s.get("conditions", []) if c["type"] == "Ready"), "?")
            table.append((r.get("trigger", "?"), r.get("source", "?"), ready, str(s.get("lastDeliveredRevision", "")),
                          str(s.get("delivered", 0)), str(s.get("failed", 0)), str(s.get("deadLettered", 0)),
                          (s.get("lastError") or "")[:60]))
        widths = [max(len(row[i]) for row in table) for i in range(7)]
        for row in table:
            print("  ".join(row[i].ljust(widths[i]) for i in range(7)) + "  " + row[7])
        return 0

    return asyncio.run(go())
