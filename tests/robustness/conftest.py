"""Fixtures of the robustness tests: servers that are always killed at teardown, and a way to
print per-test figures even when pytest captures output. Helpers live in harness.workload."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from harness.servers import start_kubefabric


def _own_children(marker: str) -> list[int]:
    """Pids of our child processes whose command line mentions `marker` (a tmp dir)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and marker in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def kf(tmp_path):
    """start(data_dir=None, extra=None) -> Server, started in tmp_path; every server (including one
    that never became ready) is SIGKILLed at teardown."""
    started = []

    def start(data_dir: Path | None = None, extra: list[str] | None = None):
        server = start_kubefabric(tmp_path, extra, data_dir=data_dir)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
    for pid in _own_children(str(tmp_path)):
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


@pytest.fixture
def database(request, tmp_path):
    """dsn_for(backend, name) -> the DSN of a fresh database `name` on a real server of `backend`
    (sqlite: a directory `name` in tmp_path)."""
    def dsn_for(backend: str, name: str = "shard") -> str:
        if backend == "sqlite":
            return f"sqlite://{tmp_path / name}"
        server = request.getfixturevalue(f"{backend}_server")
        database = f"{name}_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
        server.create_database(database)
        return server.dsn(database)
    return dsn_for
