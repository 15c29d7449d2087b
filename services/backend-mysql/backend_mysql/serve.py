"""`kubefabric backend-mysql`: one replica of a shard service on MySQL 8 or MariaDB 10.6+."""
from __future__ import annotations

from typing import TYPE_CHECKING

from kubefabric.dsn import DSN
from kubefabric.shardsvc.serve import make_command

if TYPE_CHECKING:  # the CLI loads this module to list its command: no SQLAlchemy here
    from kubefabric.store.contract import Store


def _store(dsn: DSN, args) -> Store:
    from .store import MysqlStore  # delayed: see TYPE_CHECKING above
    return MysqlStore(dsn, read_pool_size=args.read_pool_size)


command = make_command("backend-mysql", ("mysql",), 2392,
                       "mysql://kubefabric:secret@db:3306/kubefabric",
                       _store, "Run one replica of a shard service on MySQL or MariaDB")
