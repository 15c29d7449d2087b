#!/usr/bin/env python3
"""The framework's floor: a bare grpc.aio server that answers KV.Range, KV.Put and
Maintenance.Status with constants (no interceptors, no storage, no revision bookkeeping).

    uv run python bench/floor.py --listen 127.0.0.1:2379 [--event-loop uvloop|asyncio] [--stage S]
    uv run python bench/floor.py --listen 127.0.0.1:2379 --serving sync|sync-bridge [--threads N]

bench/run.py runs it as the server `floor` (uvloop, as `kubefabric serve` by default) and
`floor-asyncio` (the standard event loop), so every table shows what a call costs grpc.aio
itself: request parsing, one coroutine per call, response serialisation and HTTP/2 framing.
The responses are shaped like real ones (a header with cluster/member ids and a revision; a get
answers with one key-value of the bench's value size) so serialising them costs what ours does.

`--serving` measures other ways to serve the same constants with grpcio (run.py: `floor-sync`,
`floor-sync-bridge`): `sync` is grpcio's synchronous server (its own polling thread, handlers on
a pool of `--threads`), `sync-bridge` the same server handing each call to a coroutine on a
uvloop event loop in another thread and waiting for it, which is what serving KubeFabric's
asyncio code from the synchronous server would cost (bench/README.md, "Other serving stacks").

`--stage` (run.py: the server `floor+STAGE`) builds the floor with `kubefabric serve`'s pieces
added one by one, each stage on top of the ones before it (STAGES), to find where the embedded
server's extra CPU per call enters (bench/README.md, "Third round: the get path").
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import threading
from concurrent import futures

import grpc

from kubefabric.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from kubefabric.proto.mvccpb import kv_pb2

HEADER = rpc_pb2.ResponseHeader(cluster_id=0x1000, member_id=0x2000, revision=12345, raft_term=2)
RANGE = rpc_pb2.RangeResponse(header=HEADER, count=1, kvs=[kv_pb2.KeyValue(
    key=b"/bench/get/00000042", value=b"v" * 256, create_revision=100, mod_revision=200, version=3)])
PUT = rpc_pb2.PutResponse(header=HEADER)
STATUS = rpc_pb2.StatusResponse(header=HEADER, version="3.7.3", dbSize=4096, leader=0x2000,
                                raftIndex=12345, raftTerm=2, raftAppliedIndex=12345, dbSizeInUse=4096)

# cumulative: each stage has every piece of the stages before it
STAGES = (
    "options",      # kubefabric.rpc.server.server_options (limits, keepalive, reuse_port off)
    "make_server",  # kubefabric.rpc.server.make_server: instrumented handlers, grpc.health.v1
    "register",     # kubefabric.rpc.wire.register: generic handlers, etcd's request decoder
    "etcd_unary",   # handlers wrapped by etcd_unary (admission gate, 7 s request deadline)
    "kv",           # kv_router's KVService (check_range, AuthGuard) over a shard answering RANGE
    "imports",      # every module `kubefabric serve` imports, loaded
    "settle",       # lifecycle.settle_heap() once serving (gc.freeze, young generation 20,000)
    "store",        # the KVService over the embedded SQLite shard of `kubefabric serve` (--data-dir)
    "router",       # kv_router's RouterServer on that shard: every service, auth, watch registry
)


class KV(rpc_pb2_grpc.KVServicer):
    async def Range(self, request, context):
        return RANGE

    async def Put(self, request, context):
        return PUT


class Maintenance(rpc_pb2_grpc.MaintenanceServicer):
    async def Status(self, request, context):
        return STATUS


class ConstantShard:
    """The part of a ShardSurface KVService's Range and Put use, answering constants."""

    async def range(self, request):
        return RANGE

    async def put(self, request):
        return PUT


async def embedded_shard(data_dir: str):
    """The shard `kubefabric serve --data-dir DATA_DIR` serves (its defaults)."""
    from kubefabric.config import FlagParser
    from kv_router.serve import command
    from kv_router.shards import open_shards
    parser = FlagParser(prog="floor")
    command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--data-dir", data_dir])
    return args, await open_shards(args)


async def build(stage: str | None, data_dir: str, listen: str) -> grpc.aio.Server:
    upto = STAGES.index(stage) + 1 if stage else 0
    has = set(STAGES[:upto]).__contains__
    if has("router"):
        from kv_router.main import server_config
        from kv_router.server import RouterServer
        args, shard = await embedded_shard(data_dir)
        args.listen_client_urls = f"http://{listen}"
        router = RouterServer(shard, server_config(args, None))
        await router.start()
        return router.server
    if has("imports"):
        import kv_router.main  # noqa: F401  (what `kubefabric serve` loads)
    kv, maintenance = KV(), Maintenance()
    if has("etcd_unary"):
        from kubefabric.rpc.handlers import DEADLINE, etcd_unary
        DEADLINE.seconds = 7.0
        KV.Range = etcd_unary(KV.Range)
        KV.Put = etcd_unary(KV.Put)
        Maintenance.Status = etcd_unary(Maintenance.Status)
    if has("kv"):
        from kubefabric.auth.tokens import SimpleTokens
        from kv_router.authguard import AuthGuard
        from kv_router.kv import KVService
        shard = (await embedded_shard(data_dir))[1] if has("store") else ConstantShard()
        kv = KVService(shard, 1572864, AuthGuard(shard, SimpleTokens()))
    if has("make_server"):
        from kubefabric.rpc.server import make_server
        server, _ = make_server()
    elif has("options"):
        from kubefabric.rpc.server import server_options
        server = grpc.aio.server(options=server_options(1572864))
    else:
        server = grpc.aio.server()
    if has("register"):
        from kubefabric.rpc.wire import register
        register(server, "KV", kv)
        register(server, "Maintenance", maintenance)
    else:
        rpc_pb2_grpc.add_KVServicer_to_server(kv, server)
        rpc_pb2_grpc.add_MaintenanceServicer_to_server(maintenance, server)
    return server


async def serve(listen: str, stage: str | None, data_dir: str) -> None:
    server = await build(stage, data_dir, listen)
    if not (stage and STAGES.index(stage) >= STAGES.index("router")):
        server.add_insecure_port(listen)
        await server.start()
    if stage and STAGES.index(stage) >= STAGES.index("settle"):
        from kubefabric.lifecycle import settle_heap
        settle_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


class SyncKV(rpc_pb2_grpc.KVServicer):
    def Range(self, request, context):
        return RANGE

    def Put(self, request, context):
        return PUT


class BridgedKV(rpc_pb2_grpc.KVServicer):
    """Each call runs as a coroutine on `loop` (another thread); the pool thread waits for it."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.async_kv = KV()

    def Range(self, request, context):
        return asyncio.run_coroutine_threadsafe(self.async_kv.Range(request, None), self.loop).result()

    def Put(self, request, context):
        return asyncio.run_coroutine_threadsafe(self.async_kv.Put(request, None), self.loop).result()


class SyncMaintenance(rpc_pb2_grpc.MaintenanceServicer):
    def Status(self, request, context):
        return STATUS


def serve_sync(listen: str, threads: int, bridge: bool) -> None:
    kv: rpc_pb2_grpc.KVServicer = SyncKV()
    if bridge:
        import uvloop
        loop = uvloop.new_event_loop()
        threading.Thread(target=loop.run_forever, name="event-loop", daemon=True).start()
        kv = BridgedKV(loop)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads))
    rpc_pb2_grpc.add_KVServicer_to_server(kv, server)
    rpc_pb2_grpc.add_MaintenanceServicer_to_server(SyncMaintenance(), server)
    server.add_insecure_port(listen)
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(0).wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", required=True, help="host:port to serve on")
    p.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop")
    p.add_argument("--stage", choices=STAGES, help="the floor with kubefabric's pieces up to this one")
    p.add_argument("--data-dir", default="data", help="the stages store and router: the shard's directory")
    p.add_argument("--serving", choices=("aio", "sync", "sync-bridge"), default="aio",
                   help="aio: grpc.aio on --event-loop (default); sync: grpcio's synchronous server; "
                        "sync-bridge: the synchronous server running each call on a uvloop loop")
    p.add_argument("--threads", type=int, default=4, help="sync, sync-bridge: handler threads (default 4)")
    a = p.parse_args()
    if a.serving != "aio":
        if a.stage:
            p.error("--stage builds on grpc.aio: it needs --serving aio")
        serve_sync(a.listen, a.threads, bridge=a.serving == "sync-bridge")
    elif a.event_loop == "uvloop":
        import uvloop
        uvloop.run(serve(a.listen, a.stage, a.data_dir))
    else:
        asyncio.run(serve(a.listen, a.stage, a.data_dir))


if __name__ == "__main__":
    main()
