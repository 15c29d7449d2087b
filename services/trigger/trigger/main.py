"""What `kubefabric trigger` and its subcommands do once their flags are checked (the command
line is trigger.serve): the service's process, `status` and `dlq`."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from kubefabric.client import ClientError
from kubefabric.lifecycle import until_terminated
from kubefabric.rpc import startup
from kubefabric.rpc.startup import StartupError
from kubefabric.telemetry import tracing

from . import dlq, records
from .client import client_for
from .health import serve_health
from .service import TriggerService
from .sources import ClusterTriggers, SourceError, load_file

log = logging.getLogger("kubefabric.trigger")


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
        try:
            file_triggers = load_file(args.triggers)
        except SourceError as err:
            raise StartupError(str(err)) from None
    if not file_triggers and not args.cluster_triggers:
        raise StartupError("nothing to run: give --triggers FILE or leave --cluster-triggers on")
    client_for(args)  # check the endpoints before starting
    return _serve(args, file_triggers)


async def _serve(args, file_triggers) -> int:
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


def run_dlq(args) -> int:
    return dlq.run_command(args)
