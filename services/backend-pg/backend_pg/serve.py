"""`kubefabric backend-pg`: one replica of a shard service on PostgreSQL."""
from __future__ import annotations

from kubefabric.shardsvc.serve import make_command


def _store(dsn, args):
    from .store import PostgresStore
    return PostgresStore(dsn, read_pool_size=args.read_pool_size)


command = make_command("backend-pg", ("postgres",), 2391,
                       "postgres://kubefabric:secret@db:5432/kubefabric?sslmode=verify-full",
                       _store, "Run one replica of a shard service on PostgreSQL")
