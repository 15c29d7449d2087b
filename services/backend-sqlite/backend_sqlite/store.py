"""The SQLite store (a kubefabric.store.contract.Store): one write connection owned by the shard
writer, one read connection used from the event loop.

Invariants:
- No call on the event loop waits for another process. WAL mode lets reads run while any writer
  commits, so reads are synchronous calls on the event-loop thread (a point read costs
  microseconds; a thread hop would cost more); their busy timeout is short (READ_BUSY_MS: only
  an exclusive lock or a WAL recovery makes a WAL reader wait). The write lock is waited for
  without blocking the loop: BEGIN IMMEDIATE with no busy timeout, retried after short sleeps
  for up to WRITE_LOCK_WAIT_S (another process may hold it: a backup, a tool, a replica). The
  writer's COMMIT (fsync) and VACUUM run in the store's own thread (_WriteThread), opening in
  the loop's executor.
- At most one thread call on the write connection at a time; rollback() waits for one still
  running (a cancelled COMMIT), so the connection is never used by two threads at once.
- Leadership is the lease row (kubefabric.shard.leadership). Replicas of a file share this host
  (`shares_host`); `write_lock_holder()` names the process holding the write lock (F_GETLK on the
  WAL index), so a new leader can stop a frozen one that keeps it (kubefabric.shard.holder).
"""
from __future__ import annotations

import asyncio
import ctypes
import fcntl
import os
import queue
import sqlite3
import threading
import time
from pathlib import Path

from kubefabric.store import schema
from kubefabric.store.cursor import StatementCursor

from .dialect import statements

DB_FILE = "kubefabric.db"
OPEN_BUSY_MS = 10_000      # opening (schema, WAL mode) runs in a thread: it may wait
READ_BUSY_MS = 200         # reads run on the loop: a WAL reader waits only in rare cases
WRITE_LOCK_WAIT_S = 10.0   # how long begin() waits for another process's write lock
WAL_WRITE_LOCK = 120       # byte of the -shm file SQLite's unix VFS locks for the WAL writer


class _Flock(ctypes.Structure):
    """struct flock (Linux): what F_GETLK fills in."""
    _fields_ = [("l_type", ctypes.c_short), ("l_whence", ctypes.c_short),
                ("l_start", ctypes.c_int64), ("l_len", ctypes.c_int64), ("l_pid", ctypes.c_int32)]


def _busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY or "database is locked" in str(exc))


class SqliteStore:
    dialect_name = "sqlite"
    shares_host = True  # every replica of a file runs on its host (kubefabric.shard.leadership)
    max_key_bytes: int | None = None  # SQLite's b-trees hold keys of any length
    reads_interleave_commits = False  # reads run synchronously on the loop (see read_head)

    @classmethod
    def for_service(cls, dsn, args) -> "SqliteStore":
        """The store `kubefabric backend-sqlite` serves: the file the DSN names."""
        return cls(dsn.database)

    def __init__(self, data_dir: str | os.PathLike, synchronous: str = "FULL"):
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_FILE
        self._db_path, self._db_dir = str(self.path), str(self.data_dir)
        self._wal_path = self._db_path + "-wal"
        self._page_bytes = 0  # PRAGMA page_size, read on first use
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"SQLite synchronous mode must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.synchronous = synchronous
        self.stmts = statements()
        self._w: sqlite3.Connection | None = None
        self._r: sqlite3.Connection | None = None
        self._thread = _WriteThread()  # runs COMMIT and VACUUM on the write connection
        # the read connection outside a transaction (isolation_level=None: autocommit), where
        # each statement reads a snapshot of its own; set by open()
        self.single_statement_reads: _Cursor | None = None

    # ---- lifecycle ----

    def _connect(self, busy_ms: int) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               cached_statements=256)
        conn.execute(f"PRAGMA busy_timeout={OPEN_BUSY_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA cache_size=-65536")
        # FAST: erase deleted content on pages that are written anyway. Debian's default (ON)
        # rewrites every freed page, so a delete can need more free disk than the data it frees.
        conn.execute("PRAGMA secure_delete=FAST")
        # keep the WAL short: checkpoint every 1,000 pages and truncate the file afterwards
        conn.execute(f"PRAGMA wal_autocheckpoint={self.WAL_CHECKPOINT_PAGES}")
        conn.execute("PRAGMA journal_size_limit=67108864")
        conn.execute(f"PRAGMA busy_timeout={busy_ms}")
        return conn

    def _open(self) -> None:
        """In a worker thread: connect, create or upgrade the schema."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        w = self._connect(OPEN_BUSY_MS)
        try:
            for ddl in self.stmts.ddl():
                w.execute(ddl)
            c = self.stmts.get("meta_all")
            version = dict(w.execute(c.sql, c.args({})).fetchall()).get(schema.META_SCHEMA_VERSION, 0)
            if version > schema.SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} holds schema version {version}; this KubeFabric "
                                   f"knows up to {schema.SCHEMA_VERSION}: upgrade it")
            if upgrade := schema.upgrade_statements(version):
                w.execute("BEGIN IMMEDIATE")
                for ddl in [*upgrade, *self.stmts.ddl()]:
                    w.execute(ddl)
                c = self.stmts.get("upsert_meta")
                w.execute(c.sql, c.args({"name": schema.META_SCHEMA_VERSION, "value": schema.SCHEMA_VERSION}))
                w.execute("COMMIT")
            w.execute("PRAGMA busy_timeout=0")  # begin() waits for the write lock itself
            self._r = self._connect(READ_BUSY_MS)
        except BaseException:
            w.close()
            raise
        self._w = w

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._open)
        self._writer_cursor = _Cursor(self._w, self.stmts)
        self._snapshot = _Snapshot(_Cursor(self._r, self.stmts))
        self.single_statement_reads = self._snapshot.cur  # never used inside a snapshot: reads
                                                          # do not suspend

    async def close(self) -> None:
        await self._thread.idle()
        self._thread.stop()
        for conn in (self._r, self._w):
            if conn is not None:
                conn.close()
        self._r = self._w = None
        self.single_statement_reads = None

    async def limit_writer_silence(self, lease_s: float) -> None:
        """Nothing to set: SQLite has no server side (see kubefabric.shard.leadership)."""

    def write_lock_holder(self) -> int | None:
        """The PID of another process holding the database's write lock, if any."""
        try:
            fd = os.open(self.path.with_name(DB_FILE + "-shm"), os.O_RDONLY)
        except OSError:
            return None
        try:
            probe = _Flock(fcntl.F_WRLCK, os.SEEK_SET, WAL_WRITE_LOCK, 1, 0)
            found = _Flock.from_buffer_copy(fcntl.fcntl(fd, fcntl.F_GETLK, bytes(probe)))
        except OSError:
            return None
        finally:
            os.close(fd)
        return found.l_pid if found.l_type != fcntl.F_UNLCK and found.l_pid > 0 else None

    WAL_CHECKPOINT_PAGES = 1000

    # size() and disk_space() run on the event loop after every commit: one statement each
    # (SQLite's table-valued pragmas), stat calls on str paths, the page size read once (it is
    # fixed when the database is created; VACUUM keeps it)

    def size(self) -> tuple[int, int]:
        """(bytes allocated on disk, bytes in use) of the database."""
        pages, free = self._r.execute(
            "SELECT page_count, freelist_count FROM pragma_page_count(), pragma_freelist_count()").fetchone()
        try:
            wal_size = os.stat(self._wal_path).st_size
        except FileNotFoundError:
            wal_size = 0
        return os.stat(self._db_path).st_size + wal_size, self._page_size() * (pages - free)

    def disk_space(self) -> tuple[int, int, int]:
        """(bytes the database can still write, bytes it must keep free, filesystem size).
        Writable: free filesystem space plus the database's own free pages. Kept free: what the
        next WAL checkpoint may add to the database file."""
        st = os.statvfs(self._db_dir)
        free_pages, = self._r.execute("PRAGMA freelist_count").fetchone()
        page_size = self._page_size()
        writable = st.f_bavail * st.f_frsize + free_pages * page_size
        return writable, self.WAL_CHECKPOINT_PAGES * page_size, st.f_blocks * st.f_frsize

    def _page_size(self) -> int:
        if not self._page_bytes:
            self._page_bytes, = self._r.execute("PRAGMA page_size").fetchone()
        return self._page_bytes

    @staticmethod
    def is_unavailable(exc: BaseException) -> bool:
        """A local file has no connection to lose: every failure is reported as it is."""
        return False

    @staticmethod
    def is_disk_full(exc: BaseException) -> bool:
        """True when SQLite refused a write for lack of space (SQLITE_FULL)."""
        return isinstance(exc, sqlite3.OperationalError) and (
            getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            or "database or disk is full" in str(exc))

    defragment_blocks_writes = True  # VACUUM holds the write lock (kubefabric.shard.core)

    async def defragment(self) -> None:
        """Return free pages to the filesystem and truncate the WAL (writer must be idle)."""
        def vacuum() -> None:
            self._w.execute(f"PRAGMA busy_timeout={OPEN_BUSY_MS}")
            try:
                self._w.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._w.execute("VACUUM")
                self._w.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._w.execute("PRAGMA busy_timeout=0")
        await self._thread.run(vacuum)

    # ---- reads (snapshot on the read connection) ----

    def snapshot(self) -> "_Snapshot":
        """`async with store.snapshot() as cur`: one consistent read transaction."""
        return self._snapshot


    def data_version(self) -> int:
        """SQLite's data_version of the read connection: it changes when another connection (of
        this process or another) commits."""
        return self._r.execute("PRAGMA data_version").fetchone()[0]

    def read_now(self, *names: str) -> list[list]:
        """The rows of statements (without parameters) on the read connection, at once (not a
        coroutine), all in one read transaction: the one open on the connection, or their own."""
        conn = self._r
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN")
        try:
            out = []
            for name in names:
                c = self.stmts.get(name)
                out.append(conn.execute(c.sql, c.args({})).fetchall())
            return out
        finally:
            if own:
                conn.execute("COMMIT")

    # ---- writes (the writer's transaction) ----

    async def begin(self) -> "_Cursor":
        """BEGIN IMMEDIATE, waiting for another process's write lock without blocking the loop
        (sleeps of 1 ms growing to 20 ms, like SQLite's own busy handler, for at most
        WRITE_LOCK_WAIT_S; cancelling the wait leaves nothing behind)."""
        deadline = time.monotonic() + WRITE_LOCK_WAIT_S
        pause = 0.001
        while True:
            try:
                self._w.execute("BEGIN IMMEDIATE")
                return self._writer_cursor
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() + pause > deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.02)

    async def savepoint(self) -> None:
        self._w.execute("SAVEPOINT request")

    async def release(self) -> None:
        self._w.execute("RELEASE request")

    async def rollback_to_savepoint(self) -> None:
        self._w.execute("ROLLBACK TO request")
        self._w.execute("RELEASE request")

    async def commit(self) -> None:
        await self._thread.run(self._w.execute, "COMMIT")

    async def rollback(self) -> None:
        await self._thread.idle()
        if self._w is not None and self._w.in_transaction:
            self._w.execute("ROLLBACK")


def _hand_over(result: asyncio.Future, done: asyncio.Future, value, exc) -> None:
    """On the event loop: a _WriteThread call ended."""
    done.set_result(None)
    if result.done():  # its caller was cancelled
        return
    if exc is None:
        result.set_result(value)
    else:
        result.set_exception(exc)


class _WriteThread:
    """One thread for the write connection's blocking calls (COMMIT's fsync, VACUUM), started on
    first use. A call costs a queue put and one call_soon_threadsafe back: a batch paid several
    times that in run_in_executor's plumbing (a concurrent.futures.Future with its condition, a
    work item, the pool's bookkeeping, a chained asyncio future: py-spy --gil put ~10 % of the
    GIL-holding samples of 16-client puts there, bench/README.md).

    One call at a time (run() first waits for the previous one): `idle()` waits until the thread
    no longer uses the connection, also after a caller stopped waiting (a cancelled COMMIT)."""

    def __init__(self):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._done: asyncio.Future | None = None  # resolved when the current call ended

    async def run(self, fn, *args):
        await self.idle()
        loop = asyncio.get_running_loop()
        result, self._done = loop.create_future(), loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="sqlite-writer", daemon=True)
            self._thread.start()
        self._jobs.put((loop, result, self._done, fn, args))
        return await result

    async def idle(self) -> None:
        done = self._done
        if done is not None and not done.done():
            await asyncio.shield(done)  # nobody else waits on it: a cancelled caller leaves it be

    def stop(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, result, done, fn, args = job
            value = exc = None
            try:
                value = fn(*args)
            except BaseException as e:  # handed to the caller
                exc = e
            try:
                loop.call_soon_threadsafe(_hand_over, result, done, value, exc)
            except RuntimeError:  # the loop was closed meanwhile: nobody is waiting
                pass


class _Snapshot:
    """Read transaction on the read connection. Reads never suspend (sqlite3 calls are
    synchronous), so one reusable instance serves every read without interleaving."""

    __slots__ = ("cur",)

    def __init__(self, cur: "_Cursor"):
        self.cur = cur

    async def __aenter__(self) -> "_Cursor":
        self.cur.conn.execute("BEGIN")
        return self.cur

    async def __aexit__(self, *exc) -> None:
        self.cur.conn.execute("COMMIT")


class _Cursor(StatementCursor):
    """sqlite3's calls are synchronous: no statement suspends the event loop's other tasks."""

    __slots__ = ()

    async def fetch(self, sql: str, args: tuple) -> list[tuple]:
        return self.conn.execute(sql, args).fetchall()

    async def fetchval(self, sql: str, args: tuple):
        row = self.conn.execute(sql, args).fetchone()
        return row[0] if row else None

    async def run(self, sql: str, args: tuple) -> int:
        return self.conn.execute(sql, args).rowcount

    async def run_many(self, sql: str, many: list[tuple]) -> None:
        self.conn.executemany(sql, many)
