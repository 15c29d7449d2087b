"""A private PostgreSQL 15 server on loopback for tests (Debian's postgresql-15 binaries).

    server = PostgresServer()      # nothing runs yet
    server.start()                 # initdb on first start, then the postmaster on 127.0.0.1:<free port>
    server.create_database("t1")   # owned by the password-protected role the DSNs use
    server.dsn("t1")               # postgres://kubefabric:<quoted password>@127.0.0.1:<port>/t1
    server.kill(); server.start()  # crash (SIGKILL) and crash recovery; restart() = stop + start
    server.remove()                # stop and delete the data directory

A private server with other settings and pg_hba rules (the TLS tests):

    server = PostgresServer(settings={"ssl": "on", "ssl_cert_file": ...},
                            hba=["hostssl all all 127.0.0.1/32 scram-sha-256"])
    key = server.put_file("server.key", pem)   # in its root, owned by `postgres`, mode 0600

`settings` are added to (or override) SETTINGS; `hba` replaces initdb's pg_hba.conf, after the
line `local all all trust` the administration needs. Give them before the first start.

The server runs as the `postgres` OS user (PostgreSQL refuses to run as root), in its own process
group with its data directory and unix socket in a private temp dir that user can reach (the temp
dir, or /tmp or /var/tmp when TMPDIR sits in a directory it may not enter, like a 0700 home). fsync stays on: the tests
check durability. Only initdb skips its final sync (a crashed *process* loses no page cache, so
the files initdb wrote are safe for every test here). Administration (roles, databases, killing
backends) goes through psql over the unix socket as the superuser `postgres` (trust auth on the
socket only); TCP connections need the role's password (scram-sha-256).

Fixtures: `postgres_server` (one server per test session, i.e. per xdist worker) and
`postgres_kind` (per test: stores on databases private to the test, dropped at its end).
"""
from __future__ import annotations

import grp
import hashlib
import itertools
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest

PG_BIN = Path(os.environ.get("KUBEFABRIC_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
OS_USER = "postgres"
ROLE = "kubefabric"
# URL-special characters on purpose: the DSN must quote them and parse_dsn unquote them.
PASSWORD = "kf:p@ss/w%rd?#1"
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "on",
    "max_connections": "300",      # stores hold a writer + up to 8 readers; tests open several
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
    "log_line_prefix": "%m [%p] %d ",
}


from harness.databases import PerTestDatabases  # noqa: E402
from harness.servers import free_port, spawn  # noqa: E402


class PostgresNotInstalled(RuntimeError):
    pass


def _binary(name: str) -> str:
    path = PG_BIN / name
    if not path.exists():
        raise PostgresNotInstalled(f"{path} is missing: install the Debian package postgresql-15 "
                                   "(apt-get install postgresql-15) or set KUBEFABRIC_TEST_PG_BIN")
    return str(path)




def reachable_by(path: Path, pw) -> bool:
    """Whether OS user `pw` (a pwd entry) may enter every directory on the way to `path`."""
    groups = {pw.pw_gid, *(g.gr_gid for g in grp.getgrall() if pw.pw_name in g.gr_mem)}
    for d in [*reversed(Path(path).resolve().parents), Path(path).resolve()]:
        st = os.stat(d)
        if st.st_uid == pw.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def private_root(prefix: str, pw) -> Path:
    """A new private directory the server's OS user can reach: in the temp dir, unless that sits
    under a directory the user may not enter (TMPDIR in a 0700 home, say): then in /tmp or
    /var/tmp, which every user may enter."""
    if pw is None:
        return Path(tempfile.mkdtemp(prefix=prefix))
    for parent in (tempfile.gettempdir(), "/tmp", "/var/tmp"):
        if os.path.isdir(parent) and reachable_by(Path(parent), pw):
            return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    raise RuntimeError(f"no temp directory the {pw.pw_name} OS user can reach (tried "
                       f"{tempfile.gettempdir()}, /tmp, /var/tmp)")


class PostgresServer:
    def __init__(self, root: Path | None = None, settings: dict[str, str] | None = None,
                 hba: list[str] | None = None):
        """root: the server's directory (default: a new one its OS user can reach; as root the
        server runs as `postgres`, which cannot enter a 0700 home)."""
        pw = pwd.getpwnam(OS_USER) if os.geteuid() == 0 else None
        self._as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []} if pw else {}
        self.root = Path(root) if root else private_root("kf-pg-", pw)
        if pw is not None and not reachable_by(self.root.parent, pw):
            raise RuntimeError(f"PostgreSQL runs as the {OS_USER} OS user, which cannot enter "
                               f"{self.root.parent}: give a root it can reach")
        self.settings = {**SETTINGS, **(settings or {})}
        self.hba = hba
        self.data = self.root / "data"
        self.socket_dir = self.root
        self.log_path = self.root / "postgres.log"
        self.port = 0
        self.proc: subprocess.Popen | None = None

    # ---- lifecycle ----

    def start(self, timeout: float = 60.0) -> "PostgresServer":
        if self.running():
            return self
        first = not (self.data / "PG_VERSION").exists()
        if first:
            self._initdb()
        for attempt in range(3):  # a free port may be taken by another worker before we bind it
            self.port = self.port if (self.port and attempt == 0 and not first) else free_port()
            if self._launch(timeout):
                break
        else:
            raise RuntimeError(f"PostgreSQL did not start:\n{self.log()}")
        if first:
            self.sql(f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}'")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): open sessions are rolled back, then a checkpoint."""
        if self.running():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        """Crash: SIGKILL the postmaster and every backend (its process group) at once."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._wait_group_gone(self.proc.pid)
        self.proc = None

    def restart(self) -> "PostgresServer":
        self.stop()
        return self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # ---- addresses and administration ----

    def dsn(self, dbname: str, password: str = PASSWORD) -> str:
        return f"postgres://{ROLE}:{quote(password, safe='')}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> None:
        self.sql(f'CREATE DATABASE "{_identifier(name)}" OWNER {ROLE}')

    def drop_database(self, name: str) -> None:
        self.sql(f'DROP DATABASE IF EXISTS "{_identifier(name)}" WITH (FORCE)')

    def put_file(self, name: str, data: bytes) -> Path:
        """Write a file the server reads (a key, a certificate) into its root: owned by the
        `postgres` OS user, mode 0600 (PostgreSQL refuses a key file others can read)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / name
        path.write_bytes(data)
        path.chmod(0o600)
        if self._as:
            os.chown(path, self._as["user"], self._as["group"])
        return path

    def sql(self, statement: str, dbname: str = "postgres") -> str:
        """Run one statement as the superuser over the unix socket; its output, unaligned."""
        argv = [_binary("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
                "-p", str(self.port), "-U", "postgres", "-d", dbname, "-c", statement]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed ({statement}): {done.stderr.strip()}")
        return done.stdout.strip()

    # ---- internals ----

    def _initdb(self) -> None:
        initdb = _binary("initdb")
        _binary("postgres")
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        if self._as:
            os.chown(self.root, self._as["user"], self._as["group"])
        argv = [initdb, "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
                "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]
        done = subprocess.run(argv, capture_output=True, text=True, cwd=self.root, timeout=120, **self._as)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        if self.hba is not None:  # the file initdb wrote belongs to `postgres`: keep it so
            (self.data / "pg_hba.conf").write_text("\n".join(["local all all trust", *self.hba]) + "\n")

    def _launch(self, timeout: float) -> bool:
        """Start the postmaster; True once it accepts connections, False if the port was taken."""
        argv = [_binary("postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.socket_dir)]
        for name, value in self.settings.items():
            argv += ["-c", f"{name}={value}"]
        with open(self.log_path, "ab") as log:
            self.proc = spawn(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                              start_new_session=True, **self._as)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                if "could not bind" in self.log() or "Address already in use" in self.log():
                    return False
                raise RuntimeError(f"PostgreSQL exited during start (exit status {rc}):\n{self.log()[-3000:]}")
            if self._ready():
                return True
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"PostgreSQL did not become ready within {timeout:.0f}s:\n{self.log()}")

    def _ready(self) -> bool:
        """postmaster.pid's 8th line is the server status ("ready" once it accepts connections)."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready" and lines[0].strip() == str(self.proc.pid)

    @staticmethod
    def _wait_group_gone(pgid: int, timeout: float = 10.0) -> None:
        """A new postmaster refuses to start while backends of the old one still exist."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.01)


def _identifier(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"not a plain database name: {name!r}")
    return name


# ---- pytest fixtures ----

_tests = itertools.count()


class PostgresKind(PerTestDatabases):
    """Stores for one test, on databases named `<test prefix>_<name>`, created on first use."""

    def name_of(self, name: str) -> str:
        return _database_name(self.prefix, name)

    def store(self, name: str, **kw):
        from backend_pg.store import PostgresStore
        from kubefabric.dsn import parse_dsn
        return PostgresStore(parse_dsn(self.dsn(name)), **kw)



def _database_name(prefix: str, name: str) -> str:
    plain = re.sub(r"[^a-z0-9_]", "_", name.lower())
    db = f"{prefix}_{plain}"
    if len(db) > 63:
        db = f"{prefix}_{hashlib.sha1(name.encode()).hexdigest()[:16]}"
    return db


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def postgres_kind(postgres_server):
    if not postgres_server.running():  # a crash test left it down
        postgres_server.start()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    kind = PostgresKind(postgres_server, f"t_{worker}_{next(_tests)}")
    yield kind
    kind.drop_all()
