"""An async etcd v3 client over the generated stubs (kubefabric.proto), for the services that
consume the data layer through its etcd API (trigger, aggregation), and for their tests.

    client = EtcdClient.connect("http://127.0.0.1:2379")
    kvs, rev = await client.kv.list(b"/registry/configmaps/")            # pages pinned at rev
    ok = (await client.kv.put_if(b"/k", b"v", mod_revision=0)).succeeded  # create-only
    async with client.watch(b"/registry/", prefix_end(b"/registry/"), start_revision=rev + 1) as w:
        async for batch in w: ...                                        # resumes on its own
    ka = client.leases.keep_alive(await client.leases.grant(10))         # ka.lost: asyncio.Event

Works against etcd itself, `kubefabric serve` and kv-router alike.
"""
from __future__ import annotations

import grpc

from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

from .connection import Connection, parse_endpoints
from .errors import ClientError, Compacted, LeaseLost, Unavailable
from .kv import KV, KeyValue, RangeResult, TxnResult, prefix_end
from .lease import KeepAlive, Lease, Leases
from .query import Query, QueryPage
from .watch import Watch, WatchBatch


class EtcdClient:
    def __init__(self, conn: Connection):
        self.conn = conn
        self.kv = KV(conn)
        self.leases = Leases(conn)
        self.query = Query(conn)  # kv-router's Query API (not etcd's)

    @classmethod
    def connect(cls, endpoints: str | list[str], tls=None, **kw) -> "EtcdClient":
        """endpoints: 'http://h:p,http://h:p' (or a list). tls: None, or an object with
        credentials() and options(), e.g. kubefabric's ClientTLS; an https:// endpoint without
        one uses the system's trust roots. Channels connect lazily: this never blocks."""
        hosts, secure = parse_endpoints(endpoints)
        if secure and tls is None:
            tls = _SystemRoots()
        return cls(Connection(hosts, tls, **kw))

    def watch(self, key: bytes, range_end: bytes = b"", **kw) -> Watch:
        return Watch(self.conn, key, range_end, **kw)

    async def status(self) -> pb.StatusResponse:
        return await self.conn.call("Maintenance", "Status", pb.StatusRequest(), what="Status")

    async def close(self) -> None:
        await self.conn.close()

    async def __aenter__(self) -> "EtcdClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


class _SystemRoots:
    def credentials(self):
        return grpc.ssl_channel_credentials()

    def options(self):
        return []


__all__ = ["parse_endpoints", "EtcdClient", "Watch", "WatchBatch", "KeepAlive", "Lease", "RangeResult", "TxnResult",
           "KeyValue", "prefix_end", "Query", "QueryPage", "ClientError", "Compacted", "LeaseLost", "Unavailable"]
