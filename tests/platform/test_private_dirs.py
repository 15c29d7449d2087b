"""Databases started from a private directory (issue 14, item 8). As root, PostgreSQL runs as
the `postgres` OS user, which cannot enter a directory other users may not (a 0700 home, a
`mktemp -d` folder): the test harness's private PostgreSQL and MariaDB must still start when the
temp dir sits in one (TMPDIR in a home), each keeping its data where its OS user can reach it.
`tilt ci` from a clone inside a 0700 folder is in test_tilt.py. The dev databases' scripts also
start from a checkout deep enough to overflow a unix socket path.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from harness.mariadb import MariadbServer
from harness.postgres import OS_USER, PostgresServer, reachable_by
from harness.servers import free_port

REPO = Path(__file__).resolve().parents[2]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_harness_databases_start_with_a_private_tmpdir(monkeypatch):
    # a short path, not pytest's tmp_path: mariadbd refuses a unix socket path over 107 bytes
    home = Path(tempfile.mkdtemp(prefix="kf-home-"))
    home.chmod(0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(home / "tmp"))
    try:
        _start_both(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _start_both(home: Path) -> None:
    (home / "tmp").mkdir()
    pg = PostgresServer()
    try:
        pg.start()
        assert pg.sql("SELECT 41 + 1").strip() == "42"
        if os.geteuid() == 0:
            assert reachable_by(pg.root, pwd.getpwnam(OS_USER)), pg.root
            assert not str(pg.root).startswith(str(home)), "kept where postgres cannot enter"
    finally:
        pg.remove()
    maria = MariadbServer()
    try:
        maria.start()
        assert maria.admin("SELECT 41 + 1") == [(42,)]
    finally:
        maria.cleanup()


def test_dev_databases_start_from_a_deep_checkout():
    """hack/postgres.sh and hack/mariadb.sh (Tilt's local mode) keep their data under KF_DEV_DIR
    however deep it is: a unix socket path holds at most 107 bytes, so from a deep checkout the
    sockets go to /tmp (both servers refused to start before)."""
    top = Path(tempfile.mkdtemp(prefix="kf-deep-"))
    deep = top / ("d" * 90)
    deep.mkdir()
    for d in (top, deep):
        d.chmod(0o755)  # as root PostgreSQL runs as postgres: it must reach the data
    procs = []
    try:
        for script, var in (("postgres.sh", "KF_DEV_POSTGRES_PORT"), ("mariadb.sh", "KF_DEV_MARIADB_PORT")):
            port = free_port()
            env = {**os.environ, "KF_DEV_DIR": str(deep), var: str(port)}
            proc = subprocess.Popen(["bash", str(REPO / "hack" / script)], env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            procs.append(proc)
            deadline = time.monotonic() + 120
            while not port_open(port):
                assert proc.poll() is None, f"{script} exited {proc.returncode}:\n{proc.stdout.read()[-3000:]}"
                assert time.monotonic() < deadline, f"{script}: nothing listens on {port}"
                time.sleep(0.2)
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
            assert "too deep for a unix socket path: the socket is /tmp/" in out, out[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(top, ignore_errors=True)
