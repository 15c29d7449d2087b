"""`kubefabric backend-pg`: one replica of a shard service on PostgreSQL."""
from __future__ import annotations

from typing import TYPE_CHECKING

from kubefabric.dsn import DSN
from kubefabric.shardsvc.serve import make_command

if TYPE_CHECKING:  # the CLI loads this module to list its command: no SQLAlchemy here
    from kubefabric.store.contract import Store


def _store(dsn: DSN, args) -> Store:
    from .store import PostgresStore  # delayed: see TYPE_CHECKING above
    return PostgresStore(dsn, read_pool_size=args.read_pool_size)


command = make_command("backend-pg", ("postgres",), 2391,
                       "postgres://kubefabric:secret@db:5432/kubefabric?sslmode=verify-full",
                       _store, "Run one replica of a shard service on PostgreSQL")
