"""The contract's Cursor (named statements, named values) over one driver connection.

A backend's cursor subclasses `StatementCursor` and runs SQL text with positional arguments
(`fetch`, `fetchval`, `run`, `run_many`); this class turns a statement's name into that text
(the dialect's compiled statements) and its values dict into those arguments, once for every
backend."""
from __future__ import annotations

from typing import Any


class StatementCursor:
    """Runs cached statements on one connection; the same surface for snapshots and the writer."""

    __slots__ = ("conn", "stmts")

    def __init__(self, conn, stmts):
        self.conn = conn
        self.stmts = stmts

    async def rows(self, name: str, values: dict, shape: str = "", limited: bool = False) -> list:
        c = self.stmts.get(name, shape, limited)
        return await self.fetch(c.sql, c.args(values))

    async def scalar(self, name: str, values: dict, shape: str = "") -> Any:
        c = self.stmts.get(name, shape, False)
        return await self.fetchval(c.sql, c.args(values))

    async def execute(self, name: str, values: dict) -> int:
        c = self.stmts.get(name)
        return await self.run(c.sql, c.args(values))

    async def executemany(self, name: str, many: list[dict]) -> None:
        if many:
            c = self.stmts.get(name)
            await self.run_many(c.sql, [c.args(v) for v in many])

    # ---- the driver's part ----

    async def fetch(self, sql: str, args: tuple) -> list[tuple]:
        """The rows of `sql`, as tuples."""
        raise NotImplementedError

    async def fetchval(self, sql: str, args: tuple) -> Any:
        """The first column of the first row (None when there is no row)."""
        raise NotImplementedError

    async def run(self, sql: str, args: tuple) -> int:
        """The number of rows `sql` changed (see contract.Cursor.execute)."""
        raise NotImplementedError

    async def run_many(self, sql: str, many: list[tuple]) -> None:
        """`sql` once per argument tuple, in order."""
        raise NotImplementedError
