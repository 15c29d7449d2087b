"""The store contract: what kubefabric.shard.core.Shard (and the shard service around it) uses
of a shard's database, and nothing else. Three stores implement it: SqliteStore
(services/backend-sqlite), PostgresStore (services/backend-pg) and MysqlStore
(services/backend-mysql); the shard conformance suite (tests/shard) runs unchanged against each,
and the type checker holds each to `Store` where it is built (each service's `_store`).

SQL: every statement comes from kubefabric.store.statements (SQLAlchemy Core, compiled once
per dialect into a StatementCache and run through the raw driver, every value a bound
parameter); a dialect module adds only `upsert_kv` and `upsert_meta`. Keys and values are bytes
compared bytewise (BLOB / bytea / VARBINARY, never a text collation, never LIKE): keys with NUL,
0xFF, invalid UTF-8, %, _ or \\ store, range and sort exactly as bytes.
"""
from __future__ import annotations

from typing import Any, AsyncContextManager, Protocol

from .statements import StatementCache


class Cursor(Protocol):
    """Runs named statements (statements.BUILDERS, upsert_kv, upsert_meta) with named values
    (a dict; Compiled.args orders them); the same surface inside a snapshot and inside the
    writer's transaction. Keys and values come back as bytes, integers as int."""

    async def rows(self, name: str, values: dict, shape: str = "",
                   limited: bool = False) -> list: ...
    async def scalar(self, name: str, values: dict, shape: str = "") -> Any: ...
    async def execute(self, name: str, values: dict) -> int:
        """The number of rows the statement changed (MySQL/MariaDB: rows matched,
        CLIENT_FOUND_ROWS on the writer connection): a lease renewal or takeover learns from it
        whether the row still held the term it expected."""
    async def executemany(self, name: str, many: list[dict]) -> None: ...


class Store(Protocol):
    """One shard's MVCC log in one database.

    Invariants:
    - Writes run only on the ONE writer connection, in batches whose first statement renews the
      leader lease row (kubefabric.shard.leadership: the fencing argument per database), so a
      deposed leader cannot commit.
    - Nothing waits for another process on the event loop: SQLite's begin() waits for the write
      lock with asyncio sleeps (no busy timeout on the writer connection); COMMIT, VACUUM and
      open() run in a worker thread; the server stores use asynchronous drivers.
    - A snapshot's read transaction is established when `__aenter__` returns: every txn
      committed before that is visible (PostgreSQL: REPEATABLE READ READ ONLY with a statement
      in the same round trip; MySQL/MariaDB: START TRANSACTION WITH CONSISTENT SNAPSHOT). Many
      snapshots run at once, on a pool of read connections separate from the writer's.
    - The password of a DSN is never logged nor put in an error; outages are reported through
      `is_unavailable`, never as a traceback.
    """

    dialect_name: str
    stmts: StatementCache
    # False when a snapshot read can never overlap a commit (SQLite: reads run synchronously on
    # the event loop); True for server databases: the shard then takes a read's header revision
    # from the snapshot itself (the clock meta row)
    reads_interleave_commits: bool
    # a cursor whose every statement is a read snapshot of its own (SQLite's autocommit on the
    # read connection), for a read that is one statement: it saves the BEGIN and COMMIT around
    # it; None (server databases): every read opens snapshot(). Read-only here (a property in
    # the protocol), so a store may declare it as its own cursor type
    @property
    def single_statement_reads(self) -> Cursor | None: ...
    # the longest key the database's indexes hold (None: no limit), measured with random
    # incompressible keys against the real server; the Shard refuses longer keys with an error
    max_key_bytes: int | None
    # True when every replica runs on the database's host (SQLite): the lease holder's PID can
    # be checked, and a frozen holder of the write lock stopped (kubefabric.shard.holder)
    shares_host: bool
    # False when defragment() runs on a connection of its own while the writer (and its lease
    # renewals) go on; True (SQLite's VACUUM) makes the shard extend its lease first
    defragment_blocks_writes: bool

    async def open(self) -> None:
        """Connect (errors name host, port and database and the driver's reason), create the
        schema if missing (idempotent DDL from stmts.ddl()), check the schema version."""

    async def close(self) -> None: ...

    def size(self) -> tuple[int, int]:
        """(bytes allocated, bytes in use); synchronous, called after each commit: a server
        database answers from values a background task refreshes every few seconds."""

    def disk_space(self) -> tuple[int, int, int]:
        """(bytes the database can still write, bytes it must keep free, filesystem size);
        (2**62, 0, 0) when unknown (a server database's own limits apply)."""

    @staticmethod
    def is_disk_full(exc: BaseException) -> bool:
        """The database refused a write for lack of space (the writer raises etcd's NOSPACE)."""

    @staticmethod
    def is_unavailable(exc: BaseException) -> bool:
        """The database cannot be reached or dropped the connection (looking through
        __cause__/__context__): clients get errors.DB_UNAVAILABLE, the log one WARNING line.
        SQLite: always False."""

    async def defragment(self) -> None:
        """Give free space back (VACUUM, OPTIMIZE TABLE); the writer is idle meanwhile."""

    # ---- reads ----

    def snapshot(self) -> AsyncContextManager[Cursor]:
        """`async with store.snapshot() as cur`: one consistent read-only transaction."""

    # ---- the writer (one coroutine at a time) ----

    async def begin(self) -> Cursor:
        """A read-write transaction on the writer connection."""

    async def savepoint(self) -> None: ...            # SAVEPOINT request
    async def release(self) -> None: ...              # RELEASE request
    async def rollback_to_savepoint(self) -> None: ...  # back to "request", and release it
    async def commit(self) -> None: ...

    async def rollback(self) -> None:
        """No-op without an open transaction; never raises on a broken connection."""

    # ---- leadership: a lease row the shard maintains (kubefabric.shard.leadership) ----
    # The statements come from the dialect: insert_leader (the row unless it exists) and now_ms
    # (the server's clock in ms; None on SQLite: the :now parameter, the host's CLOCK_MONOTONIC,
    # which every replica of a SQLite file shares).

    async def limit_writer_silence(self, lease_s: float) -> None:
        """Server-side timeouts on the writer connection, so a frozen leader's open transaction
        (and the lease row it locks) ends about a lease after its last statement (PostgreSQL:
        idle_in_transaction_session_timeout, lock_timeout, statement_timeout, TCP keepalives;
        MariaDB: idle_transaction_timeout, innodb_lock_wait_timeout, max_statement_time;
        SQLite: nothing to set)."""

    def write_lock_holder(self) -> int | None:
        """The PID of another process holding the database's write lock (SQLite); None when
        none does, and always on server databases (their timeouts end silent sessions)."""


class ServerStore:
    """What the stores on a database server (PostgreSQL, MySQL) share: a pool of read
    connections, sized by the shard service's --read-pool-size."""

    single_statement_reads = None  # a snapshot costs no more than the statement's round trip

    def __init__(self, dsn, read_pool_size: int):
        raise NotImplementedError

    @classmethod
    def for_service(cls, dsn, args):
        """The store a `kubefabric backend-*` shard service serves."""
        return cls(dsn, read_pool_size=args.read_pool_size)
