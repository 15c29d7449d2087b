"""Databases started from a private directory (issue 14, item 8). As root, PostgreSQL runs as
the `postgres` OS user, which cannot enter a directory other users may not (a 0700 home, a
`mktemp -d` folder): the test harness's private PostgreSQL and MariaDB must still start when the
temp dir sits in one (TMPDIR in a home), each keeping its data where its OS user can reach it.
`tilt ci` from a clone inside a 0700 folder is in test_tilt.py.
"""
from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

from harness.mariadb import MariadbServer
from harness.postgres import OS_USER, PostgresServer, reachable_by


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
