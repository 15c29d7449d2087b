"""One worker process of `kubefabric serve --workers N` (started by kv_router.workers, never by
hand): the etcd v3 API on the parent's client URLs (SO_REUSEPORT), over a WorkerShard (embedded:
reads from the SQLite file, everything else through the parent; kv_router.workershard) or over
the same shard services as the parent (routed: --shard or --topology, whose file it follows).

It stops on SIGTERM (finishing in-flight requests, as the parent does) and when its lifeline to
the parent closes (the parent is gone). Its settings are the parent's parsed flags, handed over
in the environment (kv_router.workers.SPEC_ENV), so both read the same values.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import socket
import sys

from kubefabric.rpc import startup

from .tls import settings_from_args

log = logging.getLogger("kubefabric.worker")


def main() -> int:
    from .workers import SPEC_ENV  # (no grpc import: settings_from_args comes first)
    spec = json.loads(os.environ.pop(SPEC_ENV))
    args = argparse.Namespace(**spec["args"])
    return startup.run(args, lambda: _start(args, spec), log)


def _start(args: argparse.Namespace, spec: dict):
    tls = settings_from_args(args)  # applies --cipher-suites before grpc loads (kubefabric.cli)
    return serve(args, tls, spec)


async def serve(args: argparse.Namespace, tls, spec: dict) -> int:
    from kubefabric import telemetry
    from kubefabric.lifecycle import settle_heap, until_terminated

    from .main import server_config
    from .routed import RoutedShards
    from .server import RouterServer
    from .shards import TopologyReloader, open_shards

    index = spec["index"]
    _label_logs(index)
    lifeline = socket.socket(fileno=spec["lifeline"])
    lifeline.setblocking(False)
    cfg = server_config(args, tls, reuse_port=True)
    shard = await (open_shards(args) if spec["routed"] else _worker_shard(args, spec))
    server = RouterServer(shard, cfg)
    reloader = None
    try:
        await server.start()
        if isinstance(shard, RoutedShards):
            reloader = TopologyReloader(shard, args.topology, args)
            reloader.start()
    except BaseException:
        await shard.close()
        raise
    telemetry.setup("kv-router", _metrics_address(args.metrics_address, index))
    telemetry.metrics.add_source(telemetry.sources.router(shard, server.watch))
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(lifeline, b"ready\n")
    log.info("worker %d (pid %d) serves the etcd v3 API", index, os.getpid())
    settle_heap()

    terminated = asyncio.ensure_future(until_terminated())
    orphaned = asyncio.ensure_future(loop.sock_recv(lifeline, 1))  # b"": the parent is gone
    await asyncio.wait((terminated, orphaned), return_when=asyncio.FIRST_COMPLETED)
    if orphaned.done():
        log.warning("worker %d: the parent process is gone; stopping", index)
    for task in (terminated, orphaned):
        task.cancel()
    if reloader is not None:
        reloader.stop()
    await server.stop(args.shutdown_grace)
    await shard.close()
    lifeline.close()
    if orphaned.done() and not spec["routed"]:  # the parent could not remove its socket's directory
        shutil.rmtree(os.path.dirname(spec["parent"].removeprefix("unix:")), ignore_errors=True)
    log.info("worker %d stopped", index)
    return 0


async def _worker_shard(args: argparse.Namespace, spec: dict):
    from .workershard import WorkerShard
    shard = WorkerShard(spec["parent"], args.data_dir, args.sqlite_synchronous, args.max_txn_ops)
    try:
        await shard.open()
    except ConnectionError as err:
        await shard.close()
        raise startup.StartupError(f"worker {spec['index']}: cannot reach the parent: {err}") from None
    return shard


def _metrics_address(address: str, index: int) -> str:
    """Worker i serves /metrics on the parent's port + i ('' when the parent serves none)."""
    if not address:
        return ""
    host, _, port = address.rpartition(":")
    return f"{host}:{int(port) + index}" if int(port) else ""


def _label_logs(index: int) -> None:
    """The worker's log lines say which worker wrote them (they share the parent's output)."""
    for handler in logging.getLogger().handlers:
        fmt = getattr(handler.formatter, "_fmt", None)
        if fmt and "%(name)s" in fmt:
            handler.setFormatter(logging.Formatter(fmt.replace("%(name)s", f"[worker {index}] %(name)s")))


if __name__ == "__main__":
    sys.exit(main())
