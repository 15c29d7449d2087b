"""The SQLite store (a kubefabric.store.contract.Store): one write connection owned by the shard
writer, one read connection used from the event loop.

WAL mode lets reads run while the writer commits. Reads are synchronous calls on the event-loop
thread (a point read costs microseconds; a thread hop would cost more); the writer's COMMIT,
which waits for fsync, runs in a worker thread so the loop keeps serving while it syncs.
"""
from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from pathlib import Path

from .sqlite_dialect import statements

DB_FILE = "kubefabric.db"
LOCK_FILE = "kubefabric.lock"


class SqliteStore:
    dialect_name = "sqlite"
    max_key_bytes: int | None = None  # SQLite's b-trees hold keys of any length
    reads_interleave_commits = False  # reads run synchronously on the loop (see read_head)

    def __init__(self, data_dir: str | os.PathLike, synchronous: str = "FULL"):
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_FILE
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"SQLite synchronous mode must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.synchronous = synchronous
        self.stmts = statements()
        self._w: sqlite3.Connection | None = None
        self._r: sqlite3.Connection | None = None
        self._lock_fd: int | None = None

    # ---- lifecycle ----

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               cached_statements=256)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA cache_size=-65536")
        # FAST: erase deleted content on pages that are written anyway. Debian's default (ON)
        # rewrites every freed page, so a delete can need more free disk than the data it frees.
        conn.execute("PRAGMA secure_delete=FAST")
        # keep the WAL short: checkpoint every 1,000 pages and truncate the file afterwards
        conn.execute(f"PRAGMA wal_autocheckpoint={self.WAL_CHECKPOINT_PAGES}")
        conn.execute("PRAGMA journal_size_limit=67108864")
        return conn

    async def open(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._w = self._connect()
        self._writer_cursor = _Cursor(self._w, self.stmts)
        for ddl in self.stmts.ddl():
            self._w.execute(ddl)
        self._r = self._connect()
        self._snapshot = _Snapshot(_Cursor(self._r, self.stmts))

    async def close(self) -> None:
        for conn in (self._r, self._w):
            if conn is not None:
                conn.close()
        self._r = self._w = None
        await self.unlock_leader()

    # ---- leadership: an exclusive flock on the data directory's lock file ----
    # Held by the open file description for the life of the process (released by the kernel when
    # it dies), so two processes never write one SQLite store.

    async def try_lock_leader(self) -> bool:
        if self._lock_fd is not None:
            return True
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    async def unlock_leader(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def writer_alive(self) -> bool:
        return self._w is not None

    WAL_CHECKPOINT_PAGES = 1000

    def size(self) -> tuple[int, int]:
        """(bytes allocated on disk, bytes in use) of the database."""
        page_size, = self._r.execute("PRAGMA page_size").fetchone()
        pages, = self._r.execute("PRAGMA page_count").fetchone()
        free, = self._r.execute("PRAGMA freelist_count").fetchone()
        wal = self.path.with_name(DB_FILE + "-wal")
        wal_size = wal.stat().st_size if wal.exists() else 0
        return self.path.stat().st_size + wal_size, page_size * (pages - free)

    def disk_space(self) -> tuple[int, int, int]:
        """(bytes the database can still write, bytes it must keep free, filesystem size).
        Writable: free filesystem space plus the database's own free pages. Kept free: what the
        next WAL checkpoint may add to the database file."""
        st = os.statvfs(self.data_dir)
        page_size, = self._r.execute("PRAGMA page_size").fetchone()
        free_pages, = self._r.execute("PRAGMA freelist_count").fetchone()
        writable = st.f_bavail * st.f_frsize + free_pages * page_size
        return writable, self.WAL_CHECKPOINT_PAGES * page_size, st.f_blocks * st.f_frsize

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

    async def defragment(self) -> None:
        """Return free pages to the filesystem and truncate the WAL (writer must be idle)."""
        self._w.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._w.execute("VACUUM")
        self._w.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ---- reads (snapshot on the read connection) ----

    def snapshot(self) -> "_Snapshot":
        """`async with store.snapshot() as cur`: one consistent read transaction."""
        return self._snapshot


    # ---- writes (the writer's transaction) ----

    async def begin(self) -> "_Cursor":
        self._w.execute("BEGIN IMMEDIATE")
        return self._writer_cursor

    async def savepoint(self) -> None:
        self._w.execute("SAVEPOINT request")

    async def release(self) -> None:
        self._w.execute("RELEASE request")

    async def rollback_to_savepoint(self) -> None:
        self._w.execute("ROLLBACK TO request")
        self._w.execute("RELEASE request")

    async def commit(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._w.execute, "COMMIT")

    async def rollback(self) -> None:
        if self._w.in_transaction:
            self._w.execute("ROLLBACK")


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


class _Cursor:
    """Runs cached statements on one connection; the same surface for snapshots and the writer."""

    __slots__ = ("conn", "stmts")

    def __init__(self, conn: sqlite3.Connection, stmts):
        self.conn = conn
        self.stmts = stmts

    async def rows(self, name: str, values: dict, shape: str = "", limited: bool = False) -> list:
        c = self.stmts.get(name, shape, limited)
        return self.conn.execute(c.sql, c.args(values)).fetchall()

    async def scalar(self, name: str, values: dict, shape: str = ""):
        c = self.stmts.get(name, shape, False)
        row = self.conn.execute(c.sql, c.args(values)).fetchone()
        return row[0] if row else None

    async def execute(self, name: str, values: dict) -> None:
        c = self.stmts.get(name)
        self.conn.execute(c.sql, c.args(values))

    async def executemany(self, name: str, many: list[dict]) -> None:
        if many:
            c = self.stmts.get(name)
            self.conn.executemany(c.sql, [c.args(v) for v in many])
