#!/usr/bin/env python3
"""The framework's floor: a bare grpc.aio server that answers KV.Range, KV.Put and
Maintenance.Status with constants (no interceptors, no storage, no revision bookkeeping).

    uv run python bench/floor.py --listen 127.0.0.1:2379 [--event-loop uvloop|asyncio]

bench/run.py runs it as the server `floor` (uvloop, as `kubefabric serve` by default) and
`floor-asyncio` (the standard event loop), so every table shows what a call costs grpc.aio
itself: request parsing, one coroutine per call, response serialisation and HTTP/2 framing.
The responses are shaped like real ones (a header with cluster/member ids and a revision; a get
answers with one key-value of the bench's value size) so serialising them costs what ours does.
"""
from __future__ import annotations

import argparse
import asyncio
import signal

import grpc

from kubefabric.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from kubefabric.proto.mvccpb import kv_pb2

HEADER = rpc_pb2.ResponseHeader(cluster_id=0x1000, member_id=0x2000, revision=12345, raft_term=2)
RANGE = rpc_pb2.RangeResponse(header=HEADER, count=1, kvs=[kv_pb2.KeyValue(
    key=b"/bench/get/00000042", value=b"v" * 256, create_revision=100, mod_revision=200, version=3)])
PUT = rpc_pb2.PutResponse(header=HEADER)
STATUS = rpc_pb2.StatusResponse(header=HEADER, version="3.7.3", dbSize=4096, leader=0x2000,
                                raftIndex=12345, raftTerm=2, raftAppliedIndex=12345, dbSizeInUse=4096)


class KV(rpc_pb2_grpc.KVServicer):
    async def Range(self, request, context):
        return RANGE

    async def Put(self, request, context):
        return PUT


class Maintenance(rpc_pb2_grpc.MaintenanceServicer):
    async def Status(self, request, context):
        return STATUS


async def serve(listen: str) -> None:
    server = grpc.aio.server()
    rpc_pb2_grpc.add_KVServicer_to_server(KV(), server)
    rpc_pb2_grpc.add_MaintenanceServicer_to_server(Maintenance(), server)
    server.add_insecure_port(listen)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", required=True, help="host:port to serve on")
    p.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop")
    a = p.parse_args()
    if a.event_loop == "uvloop":
        import uvloop
        uvloop.run(serve(a.listen))
    else:
        asyncio.run(serve(a.listen))


if __name__ == "__main__":
    main()
