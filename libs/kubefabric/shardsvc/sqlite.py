"""`kubefabric backend-sqlite`: the shard service over a SQLite file (a non-embedded SQLite shard).
Replicas on the same host and directory share the file; the writer holds its lock file."""
from __future__ import annotations

from .serve import make_command


def _store(dsn, args):
    # imported here: every `kubefabric` command loads this module to list its subcommand, and
    # the store pulls in SQLAlchemy
    from kubefabric.store.sqlite import SqliteStore

    return SqliteStore(dsn.database)


command = make_command("backend-sqlite", ("sqlite",), 2390, "sqlite:///var/lib/kubefabric/shard-a",
                       _store, "Run one replica of a shard service on a SQLite file")
