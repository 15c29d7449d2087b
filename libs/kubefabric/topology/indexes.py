"""What `kubefabric topology status` does once its flags are checked (kubefabric.topology.status):
ask kv-router for its shards' indexes (kubefabric.query.v1.Query/Indexes) and print them."""
from __future__ import annotations

import sys
import time

import grpc

from kubefabric.proto.kubefabric.query.v1 import query_pb2, query_pb2_grpc


def _channel(args):
    url = args.endpoints.split(",")[0].strip()
    secure = url.startswith("https://")
    target = url.split("://", 1)[-1].rstrip("/")
    if not secure:
        return grpc.insecure_channel(target)

    def read(path):
        with open(path, "rb") as f:
            return f.read()
    creds = grpc.ssl_channel_credentials(read(args.ca_file) if args.ca_file else None,
                                         read(args.key_file) if args.key_file else None,
                                         read(args.cert_file) if args.cert_file else None)
    return grpc.secure_channel(target, creds)


def describe(st) -> str:
    if st.pending:
        return "pending: the shard's leader has not applied it yet"
    if st.ready:
        return f"ready (writes after revision {st.since_revision} indexed as written)"
    where = st.cursor.decode("utf-8", "backslashreplace") or "(start)"
    return (f"building: {st.backfilled:,} earlier object versions indexed, at {where}; "
            f"queries read the range meanwhile")


def run(args) -> int:
    deadline = time.monotonic() + args.wait
    try:
        with _channel(args) as channel:
            stub = query_pb2_grpc.QueryStub(channel)
            while True:
                try:
                    resp = stub.Indexes(query_pb2.IndexesRequest(), timeout=args.timeout)
                except grpc.RpcError as err:
                    print(f"kubefabric topology status: {args.endpoints}: {err.details() or err.code()}",
                          file=sys.stderr)
                    return 1
                waiting = [st for st in resp.indexes if not st.ready]
                if not waiting or time.monotonic() >= deadline:
                    break
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    except OSError as err:
        print(f"kubefabric topology status: {err}", file=sys.stderr)
        return 1
    if not resp.indexes:
        print("no indexes: no topology rule has index: (see docs/topology.md)")
        return 0
    width = max(len(st.index) for st in resp.indexes)
    shard_w = max(5, *(len(st.shard) for st in resp.indexes))
    print(f"{'SHARD':<{shard_w}}  {'INDEX':<{width}}  STATE")
    for st in sorted(resp.indexes, key=lambda s: (s.shard, s.index)):
        print(f"{st.shard:<{shard_w}}  {st.index:<{width}}  {describe(st)}")
    return 1 if waiting else 0
