"""The databases one test uses on a session's database server (PostgreSQL, MariaDB)."""
from __future__ import annotations

import contextlib


class PerTestDatabases:
    """Databases named `<test prefix>_<name>` (the server's rules: `name_of`), created on first
    use and dropped by drop_all() when the test ends. `server` has create_database,
    drop_database and dsn."""

    def __init__(self, server, prefix: str):
        self.server = server
        self.prefix = prefix
        self.created: set[str] = set()

    def name_of(self, name: str) -> str:
        raise NotImplementedError

    def database(self, name: str) -> str:
        db = self.name_of(name)
        if db not in self.created:
            self.server.create_database(db)
            self.created.add(db)
        return db

    def dsn(self, name: str) -> str:
        return self.server.dsn(self.database(name))

    def drop(self, name: str) -> None:
        db = self.name_of(name)
        self.server.drop_database(db)
        self.created.discard(db)

    def drop_all(self) -> None:
        for db in sorted(self.created):
            self.server.drop_database(db)
        self.created.clear()


@contextlib.asynccontextmanager
async def while_open(resource):
    """`resource` (a store or a shard) opened, and closed on the way out."""
    await resource.open()
    try:
        yield resource
    finally:
        await resource.close()
