"""The MySQL 8 / MariaDB 10.6+ shard store (aiomysql), a kubefabric.store.contract.Store.

Invariants:
- InnoDB tables only (ENGINE=InnoDB, NO_ENGINE_SUBSTITUTION), ROW_FORMAT=DYNAMIC; keys are
  VARBINARY: compared bytewise, no padding, NUL and trailing spaces significant. Sessions run
  with STRICT_ALL_TABLES, so an over-long key is an error (1406), never a silent truncation.
- Reads: each snapshot is one pooled read connection inside START TRANSACTION WITH CONSISTENT
  SNAPSHOT, READ ONLY (REPEATABLE READ). InnoDB creates the read view in that statement, so
  every transaction committed before __aenter__ returned is visible, and nothing committed later.
- Writes: one writer connection, autocommit off, made by open() and never replaced behind the
  writer's back, so a lost connection (and with it the open transaction) makes later writes
  fail until the store is reopened. It reports matched rows (CLIENT_FOUND_ROWS): the lease
  renewal's row count says whether the row still holds the term, even when nothing changed.
- Leadership is the lease row every write transaction renews (kubefabric.shard.leadership);
  the renewal's record lock fences the batch. A silent writer connection cannot hold locks for
  long on MariaDB (limit_writer_silence): idle_transaction_timeout ends a session idle in a
  transaction after about a lease, innodb_lock_wait_timeout a lock wait after two,
  max_statement_time a statement after STATEMENT_LEASES leases. MySQL 8 has no idle-transaction
  timeout: there a frozen leader's open batch holds the row until its connection dies.
- A statement cancelled while in flight leaves the connection mid-protocol: such a connection is
  closed, never reused (the server then rolls its transaction back).
- Values are sent as SQL literals escaped here (bytes as _binary X'hex'): aiomysql 0.3 cannot
  escape bytes with PyMySQL >= 1.2.3 (aio-libs/aiomysql#1080). Hex doubles a value's size.
"""
from __future__ import annotations

import asyncio
import contextlib
import math
import logging
import re
import ssl

import aiomysql
import pymysql
from pymysql.constants import CLIENT

from kubefabric.dsn import DSN, DSNError, parse_dsn
from kubefabric.lifecycle import cancel_and_wait, start_every
from kubefabric.store import schema
from kubefabric.store.contract import ServerStore
from kubefabric.store.cursor import StatementCursor

from .dialect import statements, tables_ddl

log = logging.getLogger("kubefabric.store.mysql")

# etcd accepts 1.5 MiB requests: one value is sent hex-encoded (3 MiB) and a history row carries a
# value and its previous value (3 MiB); 8 MiB leaves room for statement and row overhead.
MIN_MAX_ALLOWED_PACKET = 8 * 1024 * 1024
SQL_MODE = "STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,ERROR_FOR_DIVISION_BY_ZERO"
# the statement form: MariaDB < 11.1 has no transaction_isolation variable, MySQL 8 no tx_isolation
ISOLATION = "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"
SIZE_REFRESH_SECONDS = 5.0
STATEMENT_LEASES = 10          # max_statement_time of the writer, in leases (at least 10 s)
MAX_INSERT_CHARS = 1_000_000  # multi-row INSERT statements are cut at about this length
TABLES = tuple(t.name for t in schema.metadata.sorted_tables)
DISK_FULL_CODES = {1021, 1114}  # ER_DISK_FULL, ER_RECORD_FILE_FULL ("The table is full")
ERRNO_28 = re.compile(r"(errno|Errcode|error)[: ]+28\b|No space left on device", re.IGNORECASE)
SSL_MODES = ("DISABLED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")


# client and server errors that mean the server is gone for now: cannot connect (2002, 2003),
# server gone away / lost during query (2006, 2013, 2055), too many connections (1040), shutdown
# in progress (1053), connection killed (1927), disconnected for inactivity (4031)
UNAVAILABLE_CODES = {2002, 2003, 2006, 2013, 2055, 1040, 1053, 1927, 4031}


class MysqlStoreError(RuntimeError):
    """The store cannot be used as configured (connection, server settings, schema, leadership)."""


class WriterClosed(MysqlStoreError, ConnectionError):
    """The writer connection is gone: this store can no longer write (reopen it)."""


class MysqlStore(ServerStore):
    dialect_name = "mysql"
    max_key_bytes = schema.MYSQL_MAX_KEY_BYTES  # VARBINARY(3056): see schema.py (3072-byte index)
    reads_interleave_commits = True  # a commit may land while a read opens its snapshot

    def __init__(self, dsn: DSN | str, read_pool_size: int = 8):
        self.dsn = parse_dsn(dsn) if isinstance(dsn, str) else dsn
        if self.dsn.kind != "mysql":
            raise DSNError(f"MysqlStore needs a mysql:// or mariadb:// DSN, not {self.dsn.redacted()}")
        self.read_pool_size = read_pool_size
        self.stmts = statements()
        self.server_version = ""
        self._ssl = ssl_context(self.dsn)
        self._w: _Cursor | None = None          # the writer connection's cursor
        self._pool: aiomysql.Pool | None = None
        self._size = (0, 0)
        self._size_task: asyncio.Task | None = None

    # ---- lifecycle ----

    def _where(self) -> str:
        return f"{self.dsn.host}:{self.dsn.port} database {self.dsn.database!r}"

    def _connect_args(self) -> dict:
        d = self.dsn
        return dict(host=d.host, port=d.port, user=d.user, password=d.password, db=d.database,
                    charset="utf8mb4", sql_mode=f"'{SQL_MODE}'",  # aiomysql sends it unquoted
                    init_command=ISOLATION, ssl=self._ssl, connect_timeout=10)

    def _failure(self, what: str, exc: BaseException) -> MysqlStoreError:
        cause = exc.__cause__  # aiomysql's 2003 hides the reason (refused, TLS, ...) there
        reason = f"{exc} ({cause})" if cause else str(exc)
        if self.dsn.password:
            reason = reason.replace(self.dsn.password, "***")
        return MysqlStoreError(f"MySQL/MariaDB at {self._where()}: {what}: {reason}")

    async def _connect(self) -> "_Cursor":
        try:
            conn = await aiomysql.connect(autocommit=False, client_flag=CLIENT.FOUND_ROWS,
                                          **self._connect_args())
        except (pymysql.err.Error, OSError, asyncio.TimeoutError) as exc:
            raise self._failure("cannot connect", exc) from None
        return _Cursor(conn, self.stmts)

    async def open(self) -> None:
        self._w = await self._connect()
        try:
            await self._check_server()
            await self._create_schema()
            self._pool = await aiomysql.create_pool(minsize=1, maxsize=self.read_pool_size,
                                                    autocommit=True, **self._connect_args())
            await self._refresh_size()
        except (pymysql.err.Error, OSError) as exc:
            await self.close()
            raise self._failure("cannot open the store", exc) from None
        except BaseException:
            await self.close()
            raise
        self._size_task = start_every(SIZE_REFRESH_SECONDS, self._refresh_size, self._size_failed, "mysql-size")

    async def _check_server(self) -> None:
        self.server_version, packet = (await self._w.fetch("SELECT VERSION(), @@max_allowed_packet"))[0]
        if packet < MIN_MAX_ALLOWED_PACKET:
            raise MysqlStoreError(
                f"MySQL/MariaDB at {self._where()}: max_allowed_packet is {packet} bytes; KubeFabric needs "
                f"at least {MIN_MAX_ALLOWED_PACKET} (etcd's 1.5 MiB requests, hex-encoded, and history "
                f"rows of two values): set max_allowed_packet=64M in the server's [mysqld] configuration")

    async def _create_schema(self) -> None:
        """Create missing tables (with their indexes: MySQL 8 has no CREATE INDEX IF NOT EXISTS),
        check they are InnoDB and that no newer KubeFabric wrote this schema."""
        engines = dict(await self._w.fetch(
            "SELECT table_name, engine FROM information_schema.tables WHERE table_schema = DATABASE()"
            " AND table_name IN (" + ", ".join(["%s"] * len(TABLES)) + ")", TABLES))
        for table, ddl in tables_ddl().items():
            if table not in engines:
                for statement in ddl:
                    await self._w.send(statement)
            elif (engines[table] or "").lower() != "innodb":
                raise MysqlStoreError(f"table {table} at {self._where()} uses {engines[table]}, not InnoDB")
        version = dict(await self._w.rows("meta_all", {})).get(schema.META_SCHEMA_VERSION, 0)
        await self._w.conn.rollback()
        if version > schema.SCHEMA_VERSION:
            raise MysqlStoreError(f"{self._where()} has schema version {version}; this KubeFabric "
                                  f"knows versions up to {schema.SCHEMA_VERSION}")
        if upgrade := schema.upgrade_statements(version):
            for statement in upgrade:  # DDL: each commits by itself
                await self._w.send(statement)
            for table, ddl in tables_ddl().items():
                if table in upgrade_drops(upgrade):
                    for statement in ddl:
                        await self._w.send(statement)
            await self._w.execute("upsert_meta", {"name": schema.META_SCHEMA_VERSION,
                                                  "value": schema.SCHEMA_VERSION})
            await self._w.conn.commit()

    async def close(self) -> None:
        task, self._size_task = self._size_task, None
        if task is not None:
            await cancel_and_wait(task)
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
            self._pool = None
        if self._w is not None:
            await self._w.close()
        self._w = None

    # ---- size (cached: size() is called on the event loop after every commit) ----

    def size(self) -> tuple[int, int]:
        """(bytes allocated, bytes in use) of the kf_ tables, refreshed every few seconds."""
        return self._size

    def disk_space(self) -> tuple[int, int, int]:
        return 2 ** 62, 0, 0  # unknown here: the server's own limits apply

    def _size_failed(self, exc: Exception) -> None:  # the server may be restarting: keep the last values
        log.warning("measuring the size of %s failed: %s", self._where(), exc)

    async def _refresh_size(self) -> None:
        async with self.snapshot() as cur:
            if "mariadb" not in self.server_version.lower():  # MySQL 8 caches these for a day
                await cur.send("SET SESSION information_schema_stats_expiry = 0")
            used, free = (await cur.fetch(
                "SELECT COALESCE(SUM(data_length + index_length), 0), COALESCE(SUM(data_free), 0)"
                " FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name IN ("
                + ", ".join(["%s"] * len(TABLES)) + ")", TABLES))[0]
        self._size = (int(used) + int(free), int(used))

    @staticmethod
    def is_unavailable(exc: BaseException) -> bool:
        """True when `exc` (or what it was raised from) means the server cannot be reached or
        dropped the connection (UNAVAILABLE_CODES, socket errors, a closed writer)."""
        while exc is not None:
            if isinstance(exc, (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError)):
                return True  # ConnectionError (WriterClosed) is an OSError
            if isinstance(exc, pymysql.err.InterfaceError):
                return True  # "(0, 'Not connected')" and friends: the socket is gone
            if isinstance(exc, pymysql.err.MySQLError) and exc.args and exc.args[0] in UNAVAILABLE_CODES:
                return True
            exc = exc.__cause__ or exc.__context__
        return False

    @staticmethod
    def is_disk_full(exc: BaseException) -> bool:
        """The server refused a write for lack of space: 1021 / 1114, or an OS errno 28 (ENOSPC)
        reported through 1026 / 1030 and friends."""
        if not isinstance(exc, pymysql.err.MySQLError) or not exc.args:
            return False
        code, message = exc.args[0], " ".join(str(a) for a in exc.args[1:])
        return code in DISK_FULL_CODES or bool(ERRNO_28.search(message))

    defragment_blocks_writes = False

    async def defragment(self) -> None:
        """OPTIMIZE TABLE (InnoDB: an online rebuild + analyze) on a connection of its own:
        writes, and the lease renewals among them, go on meanwhile."""
        cur = await self._connect()
        try:
            await cur.send("OPTIMIZE TABLE " + ", ".join(TABLES))
        finally:
            await cur.close()
        await self._refresh_size()

    # ---- reads ----

    def snapshot(self):
        """`async with store.snapshot() as cur`: one consistent read-only transaction."""
        if self._pool is None:
            raise MysqlStoreError(f"the store of {self._where()} is not open")
        return _snapshot(self._pool, self.stmts)

    # ---- writes (one coroutine at a time, on the writer connection) ----

    def _writer(self) -> "_Cursor":
        w = self._w
        if w is None or w.conn.closed:
            raise WriterClosed(f"the writer connection to {self._where()} is closed: reopen the "
                               f"store before writing")
        return w

    async def begin(self) -> "_Cursor":
        w = self._writer()
        await w.send("START TRANSACTION")
        return w

    async def savepoint(self) -> None:
        await self._writer().send("SAVEPOINT request")

    async def release(self) -> None:
        await self._writer().send("RELEASE SAVEPOINT request")

    async def rollback_to_savepoint(self) -> None:
        w = self._writer()
        await w.send("ROLLBACK TO SAVEPOINT request")
        await w.send("RELEASE SAVEPOINT request")

    async def commit(self) -> None:
        await self._writer().send("COMMIT")

    async def rollback(self) -> None:
        """No-op without an open transaction; never raises: a broken connection is closed."""
        w = self._w
        if w is not None:
            await w.rollback_or_close()

    # ---- leadership (kubefabric.shard.leadership) ----

    shares_host = False  # replicas may run anywhere: the server's timeouts end silent sessions

    def write_lock_holder(self) -> int | None:
        return None  # no file lock to find: the server's timeouts end a silent writer

    async def limit_writer_silence(self, lease_s: float) -> None:
        """Bound how long the writer connection can hold locks without being heard from
        (MariaDB; MySQL 8 has only the lock wait timeout)."""
        settings = [f"innodb_lock_wait_timeout = {max(1, math.ceil(2 * lease_s))}"]
        if "mariadb" in self.server_version.lower():
            settings += [f"idle_transaction_timeout = {max(1, math.ceil(lease_s))}",
                         f"max_statement_time = {max(10.0, STATEMENT_LEASES * lease_s)}"]
        await self._writer().send("SET SESSION " + ", ".join(settings))


def upgrade_drops(statements: list[str]) -> set[str]:
    """The tables an upgrade drops (to be created again)."""
    return {sql.rsplit(" ", 1)[-1] for sql in statements if sql.startswith("DROP TABLE")}


def ssl_context(dsn: DSN) -> ssl.SSLContext | None:
    """TLS from the DSN's ssl-mode / ssl-ca / ssl-cert / ssl-key (MySQL client names).
    Without ssl-mode: VERIFY_IDENTITY when ssl-ca is given, else no TLS."""
    ca, cert, key = dsn.param("ssl-ca"), dsn.param("ssl-cert"), dsn.param("ssl-key")
    mode = (dsn.param("ssl-mode") or ("VERIFY_IDENTITY" if ca else "DISABLED")).upper()
    if mode not in SSL_MODES:
        raise DSNError(f"ssl-mode={mode} is not supported: use one of {', '.join(SSL_MODES)} "
                       f"(PREFERRED would fall back to plain text silently)")
    if mode == "DISABLED":
        return None
    try:
        ctx = ssl.create_default_context(cafile=ca)
        if cert:
            ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise DSNError(f"cannot load the TLS files of {dsn.redacted()}: {exc}") from None
    if mode == "REQUIRED" and not ca:  # encrypted, unverified (MySQL's REQUIRED)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    elif mode in ("REQUIRED", "VERIFY_CA"):  # REQUIRED with a CA verifies it, as MySQL's client
        ctx.check_hostname = False
    return ctx


def _literal(conn, value) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "_binary X'" + bytes(value).hex() + "'"
    return conn.escape(value)  # int, str, None: PyMySQL's escaping


@contextlib.asynccontextmanager
async def _snapshot(pool, stmts):
    """A pooled read connection inside START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY."""
    cur = _Cursor(await pool.acquire(), stmts)
    ok = False
    try:
        await cur.send("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        yield cur
        ok = True
    finally:
        try:
            await (cur.send("COMMIT") if ok else cur.rollback_or_close())
        except BaseException:
            cur.conn.close()
            raise
        finally:
            pool.release(cur.conn)  # the pool drops closed connections


class _Cursor(StatementCursor):
    """One statement at a time (`lock`); `busy` stays True when a statement was cancelled
    mid-flight (connection unusable)."""

    __slots__ = ("cursor", "lock", "busy")

    def __init__(self, conn, stmts):
        super().__init__(conn, stmts)
        self.cursor = aiomysql.Cursor(conn)
        self.lock = asyncio.Lock()
        self.busy = False

    async def send(self, query: str) -> list[tuple]:
        async with self.lock:
            self.busy = True
            try:
                await self.cursor.execute(query)
            except pymysql.err.Error:
                self.busy = self.conn.closed  # an error reply leaves the connection usable
                raise
            self.busy = False
            return list(await self.cursor.fetchall())

    async def fetch(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Run `sql` with its %s markers replaced by the escaped args; returns its rows."""
        return await self.send(sql % tuple(_literal(self.conn, a) for a in args))

    async def fetchval(self, sql: str, args: tuple = ()):
        rows = await self.fetch(sql, args)
        return rows[0][0] if rows else None

    async def run(self, sql: str, args: tuple) -> int:
        """Rows changed (matched, on the writer connection: CLIENT_FOUND_ROWS)."""
        await self.fetch(sql, args)
        return self.cursor.rowcount

    async def executemany(self, name: str, many: list[dict]) -> None:
        c = self.stmts.get(name)
        if not c.sql.startswith("INSERT"):
            for values in many:
                await self.fetch(c.sql, c.args(values))
            return
        head, _, row = c.sql.partition(" VALUES ")  # multi-row INSERTs of up to ~1 MB each
        row, upsert, update = row.partition(" ON DUPLICATE KEY UPDATE ")  # once, after the rows
        batch, length = [], 0
        for i, values in enumerate(many):
            batch.append(row % tuple(_literal(self.conn, a) for a in c.args(values)))
            length += len(batch[-1])
            if length >= MAX_INSERT_CHARS or i == len(many) - 1:
                await self.send(head + " VALUES " + ", ".join(batch) + upsert + update)
                batch, length = [], 0

    async def rollback_or_close(self) -> None:
        """End an open transaction; close the connection when it is mid-protocol or broken."""
        try:
            if self.busy:
                self.conn.close()
            elif not self.conn.closed and self.conn.get_transaction_status():
                await self.conn.rollback()
        except BaseException:
            self.conn.close()

    async def close(self) -> None:
        await self.rollback_or_close()
        try:
            await self.conn.ensure_closed()  # COM_QUIT: a clean goodbye in the server's log
        except Exception:
            self.conn.close()
