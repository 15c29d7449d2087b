"""A private MariaDB server on loopback for tests, and the fixtures that hand out its databases.

`MariadbServer` initialises a data directory with mariadb-install-db and runs mariadbd on
127.0.0.1 and a free port, its socket and data under a temp dir. Tests connect over TCP as a
password-protected user (so DSN passwords are exercised); administration (users, databases,
KILL) goes through the socket as root. InnoDB stays durable: innodb_flush_log_at_trx_commit=1,
doublewrite on, so kill() (SIGKILL) is a real crash test. Missing binaries are an error, never a
skip: CI installs Debian's mariadb-server.

Fixtures: `mariadb_server` (one server per xdist worker for the session) and `mariadb_kind`
(per test: `store(name)` a new unopened MysqlStore on database `<test>_<name>`, created on first
use; `drop(name)`; the test's databases are dropped at its end).
"""
from __future__ import annotations

import hashlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pymysql
import pytest

from harness.databases import PerTestDatabases
from harness.servers import free_port, spawn

PACKAGE_HINT = "apt-get install mariadb-server (it provides mariadbd and mariadb-install-db)"


def _binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/usr/local/sbin")
    if not path:
        raise RuntimeError(f"{name} is not installed: {PACKAGE_HINT}")
    return path


class MariadbServer:
    USER = "kubefabric"
    PASSWORD = "kf p@ss:w/rd%?"  # every character a DSN must percent-encode

    def __init__(self, base: Path | None = None, extra_args: tuple[str, ...] = ()):
        self.extra_args = tuple(extra_args)  # for install and every start (e.g. InnoDB file limits)
        self.mariadbd = _binary("mariadbd")
        self.install_db = _binary("mariadb-install-db")
        self.base = Path(base or tempfile.mkdtemp(prefix="kf-mariadb-"))
        self.datadir = self.base / "data"
        self.socket = self.base / "mariadb.sock"
        self.log_path = self.base / "mariadb.log"
        self.port = 0
        self.proc: subprocess.Popen | None = None

    # ---- lifecycle ----

    def start(self, timeout: float = 60.0) -> None:
        fresh = not self.datadir.exists()
        if fresh:
            self._install()
        for attempt in range(3):  # a free port may be taken before mariadbd binds it
            self.port = self.port or free_port()
            self.proc = spawn(self._argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT, start_new_session=True)
            try:
                self._wait_ready(timeout)
                break
            except RuntimeError:
                if attempt == 2 or "Address already in use" not in self.log():
                    raise
                self.port = 0
        if fresh:
            self.admin(f"CREATE USER '{self.USER}'@'127.0.0.1' IDENTIFIED BY %s", (self.PASSWORD,))
            self.admin(f"GRANT ALL PRIVILEGES ON *.* TO '{self.USER}'@'127.0.0.1'")

    def _install(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        out = subprocess.run([self.install_db, "--no-defaults", "--user=root", f"--datadir={self.datadir}",
                              "--auth-root-authentication-method=normal", "--skip-test-db",
                              f"--tmpdir={self.base}",  # not /tmp: concurrent installs collide there
                              *self.extra_args],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")

    def _argv(self) -> list[str]:
        return [self.mariadbd, "--no-defaults", "--user=root", f"--datadir={self.datadir}",
                f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
                f"--pid-file={self.base / 'mariadb.pid'}", f"--log-error={self.log_path}",
                f"--tmpdir={self.base}", "--skip-name-resolve", "--skip-log-bin",
                "--character-set-server=utf8mb4", "--max-connections=1000",
                "--max-allowed-packet=64M",
                # durable: every COMMIT is on disk when it returns (crash tests rely on it)
                "--innodb-flush-log-at-trx-commit=1", "--innodb-doublewrite=1",
                # small enough for many servers on one machine, big enough for 1.5 MiB values
                "--innodb-buffer-pool-size=128M", "--innodb-log-file-size=96M",
                "--innodb-lock-wait-timeout=20", *self.extra_args]

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                self.admin("SELECT 1")
                return
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"mariadbd did not answer within {timeout}s:\n{self.log()}")
                time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL: a crash. The data directory stays; start() recovers it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except OSError:
            return ""

    # ---- administration (root over the socket) ----

    def admin(self, sql: str, args=None) -> list[tuple]:
        conn = pymysql.connect(unix_socket=str(self.socket), user="root", password="", autocommit=True,
                               connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def dsn(self, dbname: str) -> str:
        return f"mysql://{quote(self.USER, safe='')}:{quote(self.PASSWORD, safe='')}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> None:
        self.admin(f"CREATE DATABASE IF NOT EXISTS `{_identifier(name)}`")

    def drop_database(self, name: str) -> None:
        self.admin(f"DROP DATABASE IF EXISTS `{_identifier(name)}`")

    def connection_ids(self, dbname: str) -> list[int]:
        """Ids of the client connections on database `dbname` (for KILL in tests)."""
        return [r[0] for r in self.admin("SELECT id FROM information_schema.processlist WHERE db = %s",
                                         (dbname,))]


def _identifier(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", name):
        raise ValueError(f"not a test database name: {name!r}")
    return name


# ---- fixtures ----

@pytest.fixture(scope="session")
def mariadb_server():
    server = MariadbServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.cleanup()


_tests = itertools.count()


class MariadbKind(PerTestDatabases):
    """Databases of one test on the session's server: `<test prefix>_<name>`."""

    def __init__(self, server: MariadbServer, test_id: str):
        digest = hashlib.sha1(test_id.encode()).hexdigest()[:8]
        super().__init__(server, f"t{next(_tests)}_{os.getpid()}_{digest}")

    def name_of(self, name: str) -> str:
        return _identifier(f"{self.prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"[:64])

    def store(self, name: str = "db"):
        from backend_mysql.store import MysqlStore
        from kubefabric.dsn import parse_dsn
        return MysqlStore(parse_dsn(self.dsn(name)))


@pytest.fixture
def mariadb_kind(mariadb_server, request):
    kind = MariadbKind(mariadb_server, request.node.nodeid)
    yield kind
    kind.drop_all()
