"""The PostgreSQL store of one shard (asyncpg), a kubefabric.store.contract.Store.

Invariants:
- One writer connection per open store, never replaced while the store is open. Every write
  (begin … commit) runs on it; after a lost writer connection every write fails until the store
  is closed and opened again. Leadership is the lease row every write transaction renews
  (kubefabric.shard.leadership): it is fenced by the row lock that renewal takes, not by this
  connection.
- A silent writer connection cannot hold locks for long (limit_writer_silence): the server ends
  a session idle in a transaction after about one lease (idle_in_transaction_session_timeout),
  a lock wait after two (lock_timeout), a statement after STATEMENT_LEASES leases
  (statement_timeout), and every session whose client's host stopped answering (TCP keepalives,
  tcp_user_timeout). So a frozen leader's open batch, and the row lock it holds, end on the
  server's side and a takeover goes ahead.
- COMMIT either reports "COMMIT" or raises: a transaction PostgreSQL already aborted answers
  "ROLLBACK" to COMMIT, and that is raised as an error, never taken for a commit.
- Reads run on a small pool of other connections. A snapshot is a REPEATABLE READ READ ONLY
  transaction whose snapshot is taken in the same round trip as its BEGIN (PostgreSQL takes it at
  the first statement), so everything committed before `__aenter__` returned is visible to it.
- Statements are the shared ones of kubefabric.store.statements, compiled once; asyncpg prepares
  each SQL text once per connection and reuses it (its statement cache is keyed by the text).
- Keys and values are bytea: compared bytewise, returned as bytes.
- size() is synchronous (called after every commit): it returns a value a background task
  refreshes every SIZE_REFRESH_SECONDS.
"""
from __future__ import annotations

import asyncio
import logging
import ssl

import asyncpg

from kubefabric.dsn import DSN, DSNError, parse_dsn
from kubefabric.lifecycle import start_every
from kubefabric.store import schema
from kubefabric.store.contract import ServerStore
from kubefabric.store.cursor import StatementCursor

from .dialect import statements

log = logging.getLogger("kubefabric.store.postgres")

# B-tree index entries hold at most 2704 bytes (a third of an 8 KiB page). kf_log's primary key
# (key, rev, sub) stores key + 16 bytes + headers, so incompressible keys of up to 2676 bytes
# fit, 2677 do not (measured on PostgreSQL 15 with random keys: tests/backend_pg). Longer keys
# fail with SQLSTATE 54000 (program_limit_exceeded) "index row size … exceeds btree … maximum".
MAX_KEY_BYTES = 2676
DDL_LOCK_KEY = 0x6B66_6464     # "kfdd": serialises schema creation by stores opening at once
SIZE_REFRESH_SECONDS = 5.0
CONNECT_TIMEOUT = 10.0
STATEMENT_LEASES = 10          # statement_timeout of the writer, in leases (at least 10 s)
# every session: the server notices a client host that stopped answering (seconds / ms), and a
# read snapshot left open by a frozen process ends after a minute
SESSION_SETTINGS = {"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "1",
                    "tcp_keepalives_count": "3", "tcp_user_timeout": "10000",
                    "idle_in_transaction_session_timeout": "60000"}
DISK_FULL = "53100"
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

BEGIN_SNAPSHOT = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1"
TABLE_SIZES = ("SELECT coalesce(sum(pg_total_relation_size(to_regclass(t))), 0)::bigint "
               "FROM unnest($1::text[]) AS t")
VACUUM = "VACUUM (ANALYZE) kf_log, kf_kv, kf_meta, kf_leases, kf_leader"
LOCK_DDL = "SELECT pg_advisory_xact_lock($1::bigint)"
RELATIONS = [t.name for t in schema.metadata.sorted_tables] + [
    i.name for t in schema.metadata.sorted_tables for i in t.indexes]
MISSING_RELATIONS = "SELECT count(*) FROM unnest($1::text[]) AS n WHERE to_regclass(n) IS NULL"


# connection exceptions, operator intervention (shutdown, crash, cannot connect now), too many
# connections: the server is unreachable for now, not refusing this request
UNAVAILABLE_SQLSTATES = ("08", "57P", "53300")


class StoreUnavailable(ConnectionError):
    """The database cannot be reached or refused us; the message never holds the password."""


class WriterLost(ConnectionError):
    """The writer connection is gone: this store can no longer write (reopen it)."""


def ssl_option(dsn: DSN):
    """asyncpg's `ssl` argument from libpq-style sslmode/sslrootcert/sslcert/sslkey params.
    With sslrootcert or sslcert, TLS is required whatever the mode (no plaintext fallback)."""
    mode = dsn.param("sslmode") or ""
    root, cert, key = dsn.param("sslrootcert"), dsn.param("sslcert"), dsn.param("sslkey")
    if mode and mode not in SSL_MODES:
        raise DSNError(f"sslmode={mode!r} is not one of {', '.join(SSL_MODES)}")
    if key and not cert:
        raise DSNError("sslkey needs sslcert (the client certificate it belongs to)")
    if mode == "disable":
        return False
    if not (root or cert):
        return mode or None  # None: asyncpg's default ("prefer", or $PGSSLMODE)
    try:
        ctx = ssl.create_default_context(cafile=root)  # no root: the system's trust roots
        if cert:
            ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        files = ", ".join(f"{n}={v}" for n, v in (("sslrootcert", root), ("sslcert", cert),
                                                  ("sslkey", key)) if v)
        raise DSNError(f"cannot load the TLS files of the PostgreSQL DSN ({files}): "
                       f"{err.strerror or err}") from None
    if mode in ("", "allow", "prefer", "require", "verify-ca"):
        ctx.check_hostname = False  # libpq: only verify-full checks the host name
    if not root and mode in ("", "allow", "prefer", "require"):
        ctx.verify_mode = ssl.CERT_NONE  # libpq: without a root cert, require does not verify
    return ctx


def _causes(err: BaseException):
    while err is not None:
        yield err
        err = err.__cause__ or err.__context__


class PostgresStore(ServerStore):
    dialect_name = "postgresql"
    max_key_bytes = MAX_KEY_BYTES
    reads_interleave_commits = True  # a commit may land while a read opens its snapshot

    def __init__(self, dsn: DSN | str, read_pool_size: int = 8):
        self.dsn = parse_dsn(dsn) if isinstance(dsn, str) else dsn
        if self.dsn.kind != "postgres":
            raise DSNError(f"PostgresStore needs a postgres:// DSN, not {self.dsn.redacted()}")
        if read_pool_size < 1:
            raise ValueError("read_pool_size must be at least 1")
        self.read_pool_size = read_pool_size
        self.stmts = statements()
        self._ssl = ssl_option(self.dsn)
        self._w: asyncpg.Connection | None = None
        self._wcur: _Cursor | None = None
        self._wlock: asyncio.Lock | None = None  # held from begin() to commit()/rollback()
        self._release_pending = False
        self._readers: _ReadPool | None = None
        self._size = 0
        self._sizer: asyncio.Task | None = None

    # ---- lifecycle ----

    async def _connect(self) -> asyncpg.Connection:
        d = self.dsn
        try:
            return await asyncpg.connect(
                host=d.host, port=d.port, user=d.user or None, password=d.password or None,
                database=d.database, ssl=self._ssl, statement_cache_size=256,
                timeout=float(d.param("connect_timeout") or CONNECT_TIMEOUT),
                server_settings={"application_name": d.param("application_name") or "kubefabric",
                                 **SESSION_SETTINGS})
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            reason = str(err) or type(err).__name__
            if d.param("sslcert") and isinstance(err, (ConnectionResetError,
                                                       asyncpg.ConnectionDoesNotExistError)):
                # TLS 1.3: the server checks the client certificate after the handshake and
                # its alert reaches asyncpg as a closed connection (sometimes with the alert)
                alert = next((f"{c.reason or c}; " for c in _causes(err)
                              if isinstance(c, ssl.SSLError)), "")
                reason += (f" ({alert}did the server refuse the client certificate sslcert? "
                           "it must be signed by a CA in the server's ssl_ca_file)")
            if d.password:
                reason = reason.replace(d.password, "***")
            raise StoreUnavailable(f"cannot connect to PostgreSQL {d.redacted()} "
                                   f"(host {d.host}, port {d.port}, database {d.database}): {reason}") from None

    async def open(self) -> None:
        self._w = await self._connect()
        try:
            await self._create_schema()
            self._wcur = _Cursor(self._w, self.stmts)
            self._wlock = asyncio.Lock()
            self._readers = _ReadPool(self._connect, self.read_pool_size)
            await self._measure()
        except BaseException:
            await self.close()
            raise
        self._sizer = start_every(SIZE_REFRESH_SECONDS, self._measure, self._size_failed, "pg-size")

    async def _create_schema(self) -> None:
        """Idempotent DDL under a transaction-scoped lock (concurrent CREATE TABLE IF NOT EXISTS
        of the same table can otherwise fail on PostgreSQL's catalog unique indexes), run only
        when a table or index is missing: CREATE INDEX IF NOT EXISTS takes a SHARE lock on its
        table before it finds the index there, which would stall (or deadlock with) the leader's
        writes whenever a replica starts."""
        w = self._w
        async with w.transaction():
            if await w.fetchval(MISSING_RELATIONS, RELATIONS):
                await w.execute(LOCK_DDL, DDL_LOCK_KEY)
                for ddl in self.stmts.ddl():
                    await w.execute(ddl)
            meta = dict(await _Cursor(w, self.stmts).rows("meta_all", {}))
            version = meta.get(schema.META_SCHEMA_VERSION, 0)
            if version > schema.SCHEMA_VERSION:
                raise RuntimeError(f"{self.dsn.redacted()} holds schema version {version}; this "
                                   f"KubeFabric knows up to {schema.SCHEMA_VERSION}: upgrade it")
            if upgrade := schema.upgrade_statements(version):
                await w.execute(LOCK_DDL, DDL_LOCK_KEY)
                for sql in [*upgrade, *self.stmts.ddl()]:
                    await w.execute(sql)
                await _Cursor(w, self.stmts).execute("upsert_meta", {
                    "name": schema.META_SCHEMA_VERSION, "value": schema.SCHEMA_VERSION})

    async def close(self) -> None:
        if self._sizer:
            self._sizer.cancel()
            self._sizer = None
        if self._readers:
            await self._readers.close()
            self._readers = None
        w, self._w = self._w, None
        if w is not None:
            await _close(w)

    # ---- size, disk, maintenance ----

    async def _measure(self) -> None:
        async with self.snapshot() as cur:
            self._size = await cur.conn.fetchval(TABLE_SIZES, [t.name for t in schema.metadata.sorted_tables])

    @staticmethod
    def _size_failed(err: Exception) -> None:  # the server may be restarting: keep the last value
        log.debug("measuring the database size failed: %s", err)

    def size(self) -> tuple[int, int]:
        """(bytes allocated, bytes in use) of the kf_ tables and their indexes and TOAST. In use
        = allocated: PostgreSQL reuses freed space in place and does not report it cheaply."""
        return self._size, self._size

    def disk_space(self) -> tuple[int, int, int]:
        """Unknown for a server database: its own limits apply (a full disk is SQLSTATE 53100)."""
        return 2 ** 62, 0, 0

    @staticmethod
    def is_unavailable(exc: BaseException) -> bool:
        """True when `exc` (or what it was raised from) means the server cannot be reached or
        dropped the connection: connection-level SQLSTATEs (class 08, 57P0x shutdowns, 53300
        too many connections), asyncpg's closed-connection errors, socket errors."""
        while exc is not None:
            if isinstance(exc, (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError)):
                return True  # ConnectionError (StoreUnavailable, WriterLost) is an OSError
            if isinstance(exc, asyncpg.exceptions.InterfaceError) and "closed" in str(exc):
                return True  # "connection is closed" (other InterfaceErrors are our bugs)
            if isinstance(exc, asyncpg.exceptions.InternalClientError):
                return True  # "cannot switch to state N": a connection whose socket died mid-call
            state = getattr(exc, "sqlstate", None) or ""
            if state.startswith(UNAVAILABLE_SQLSTATES):
                return True
            exc = exc.__cause__ or exc.__context__
        return False

    @staticmethod
    def is_disk_full(exc: BaseException) -> bool:
        """True for PostgreSQL's disk_full (SQLSTATE 53100), also when wrapped by a caller."""
        while exc is not None:
            if getattr(exc, "sqlstate", None) == DISK_FULL:
                return True
            exc = exc.__cause__ or exc.__context__
        return False

    defragment_blocks_writes = False

    async def defragment(self) -> None:
        """VACUUM the kf_ tables (not FULL: it would lock out readers while rewriting), on a
        connection of its own: writes, and the lease renewals among them, go on meanwhile."""
        conn = await self._connect()
        try:
            await conn.execute(VACUUM)
        finally:
            await _close(conn)
        await self._measure()

    # ---- reads ----

    def snapshot(self) -> "_Snapshot":
        """`async with store.snapshot() as cur`: one consistent read-only transaction."""
        return _Snapshot(self._readers, self.stmts)

    # ---- writes (one coroutine at a time, on the writer connection) ----

    def _writer(self) -> asyncpg.Connection:
        if self._w is None or self._w.is_closed():
            raise WriterLost(f"the writer connection to {self.dsn.redacted()} is closed; "
                             "this store cannot write until it is reopened")
        return self._w

    async def begin(self) -> "_Cursor":
        w = self._writer()
        await self._wlock.acquire()
        try:
            # "BEGIN" inside a transaction is only a warning in PostgreSQL: never build on one
            # left open (a batch cancelled before it could roll back)
            await w.execute("ROLLBACK; BEGIN" if w.is_in_transaction() else "BEGIN")
            self._release_pending = False
        except BaseException:
            self._wlock.release()
            raise
        return self._wcur

    async def savepoint(self) -> None:
        if self._release_pending:  # the previous request's release and this savepoint: one round trip
            self._release_pending = False
            await self._writer().execute("RELEASE SAVEPOINT request; SAVEPOINT request")
        else:
            await self._writer().execute("SAVEPOINT request")

    async def release(self) -> None:
        """Deferred to the next savepoint(): statements run before it (the batch's meta upserts)
        stay inside the released request's savepoint, which nothing rolls back to anymore, and
        COMMIT or ROLLBACK ends every savepoint anyway."""
        self._writer()
        self._release_pending = True

    async def rollback_to_savepoint(self) -> None:
        await self._writer().execute("ROLLBACK TO SAVEPOINT request; RELEASE SAVEPOINT request")

    async def commit(self) -> None:
        w = self._writer()
        try:
            status = await w.execute("COMMIT")
        except asyncpg.PostgresError:
            raise
        except Exception as err:  # the client lost the connection (asyncpg's errors vary)
            w.terminate()
            raise WriterLost(f"the writer connection to {self.dsn.redacted()} failed during COMMIT "
                             f"({type(err).__name__}: {err}); the outcome is unknown") from err
        finally:
            self._unlock_writer()
        if status != "COMMIT":  # PostgreSQL answers ROLLBACK to COMMIT of an aborted transaction
            raise RuntimeError(f"the transaction was aborted, nothing was committed ({status})")

    async def rollback(self) -> None:
        """No-op without an open transaction; never raises (the connection may be broken). A
        writer connection whose ROLLBACK fails is terminated: no later batch may ever continue
        a half-done transaction."""
        w = self._w
        try:
            if w is not None and not w.is_closed() and w.is_in_transaction():
                await w.execute("ROLLBACK")
        except Exception as err:
            log.warning("rollback on the writer connection failed, closing it: %s", err)
            w.terminate()
        finally:
            self._unlock_writer()

    def _unlock_writer(self) -> None:
        if self._wlock is not None and self._wlock.locked():
            self._wlock.release()

    # ---- leadership (kubefabric.shard.leadership) ----

    shares_host = False  # replicas may run anywhere: the server's timeouts end silent sessions

    def write_lock_holder(self) -> int | None:
        return None  # no file lock to find: the server's timeouts end a silent writer

    async def limit_writer_silence(self, lease_s: float) -> None:
        """Bound how long the writer connection can hold locks without being heard from."""
        ms = max(1, int(lease_s * 1000))
        async with self._wlock:
            await self._writer().execute(
                f"SET idle_in_transaction_session_timeout = {ms}; SET lock_timeout = {2 * ms}; "
                f"SET statement_timeout = {max(10_000, STATEMENT_LEASES * ms)}")


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 5)
    except Exception:
        conn.terminate()


class _ReadPool:
    """Up to `size` read connections, made on demand and kept while healthy."""

    def __init__(self, connect, size: int):
        self._connect = connect
        self._slots = asyncio.Semaphore(size)
        self._idle: list[asyncpg.Connection] = []
        self._closed = False

    async def acquire(self, fresh: bool = False) -> asyncpg.Connection:
        await self._slots.acquire()
        try:
            while self._idle and not fresh:
                conn = self._idle.pop()
                if not conn.is_closed():
                    return conn
            return await self._connect()
        except BaseException:
            self._slots.release()
            raise

    def release(self, conn: asyncpg.Connection, reuse: bool = True) -> None:
        if reuse and not self._closed and not conn.is_closed() and not conn.is_in_transaction():
            self._idle.append(conn)
        else:
            conn.terminate()
        self._slots.release()

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await _close(conn)


class _Snapshot:
    """A REPEATABLE READ READ ONLY transaction on a pooled connection, its snapshot taken on entry."""

    __slots__ = ("pool", "stmts", "conn")

    def __init__(self, pool: _ReadPool, stmts):
        self.pool = pool
        self.stmts = stmts
        self.conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> "_Cursor":
        for fresh in (False, True):  # an idle connection may have died with a server restart
            conn = await self.pool.acquire(fresh)
            try:
                await conn.execute(BEGIN_SNAPSHOT)
            except (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError, OSError):
                self.pool.release(conn, reuse=False)
                if fresh:
                    raise
                continue
            except BaseException:
                self.pool.release(conn, reuse=False)
                raise
            self.conn = conn
            return _Cursor(conn, self.stmts)
        raise AssertionError("unreachable: a fresh connection either begins or raises")

    async def __aexit__(self, exc_type, exc, tb) -> None:
        conn, self.conn = self.conn, None
        reuse = False
        try:
            if exc_type is None or exc_type is not asyncio.CancelledError:
                await conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
                reuse = True
        finally:  # a cancelled statement or a failed end: drop the connection, the server rolls back
            self.pool.release(conn, reuse)


class _Cursor(StatementCursor):
    __slots__ = ()

    async def fetch(self, sql: str, args: tuple) -> list[tuple]:
        return [tuple(r) for r in await self.conn.fetch(sql, *args)]

    async def fetchval(self, sql: str, args: tuple):
        return await self.conn.fetchval(sql, *args)

    async def run(self, sql: str, args: tuple) -> int:
        """Rows changed (the count in PostgreSQL's command tag: "UPDATE 1", "INSERT 0 1")."""
        count = (await self.conn.execute(sql, *args)).rsplit(" ", 1)[-1]
        return int(count) if count.isdigit() else 0

    async def run_many(self, sql: str, many: list[tuple]) -> None:
        await self.conn.executemany(sql, many)
