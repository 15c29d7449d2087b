"""`kubefabric backend-sqlite`: the shard service over a SQLite file (a non-embedded SQLite shard).
Replicas on the same host and directory share the file; the leader holds the lease in it
(kubefabric.shard.leadership)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from kubefabric.dsn import DSN
from kubefabric.shardsvc.serve import make_command

if TYPE_CHECKING:  # the CLI loads this module to list its command: no SQLAlchemy here
    from kubefabric.store.contract import Store


def _store(dsn: DSN, args) -> Store:
    from .store import SqliteStore  # delayed: see TYPE_CHECKING above
    return SqliteStore(dsn.database)


command = make_command("backend-sqlite", ("sqlite",), 2390, "sqlite:///var/lib/kubefabric/shard-a",
                       _store, "Run one replica of a shard service on a SQLite file")
