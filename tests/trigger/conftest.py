"""Trigger test fixtures: a recording receiver and `kubefabric trigger` processes."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from harness import zygote
from harness.servers import Server, free_port
from receiver import Receiver


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def wait_http(url: str, proc, log: Path, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"trigger exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"trigger not ready after {timeout}s:\n{log.read_text()}")


@pytest.fixture
def start_trigger(tmp_path):
    started: list[Server] = []

    def start(endpoint: str, triggers=None, name: str = "r0", extra=(), cluster: bool = False,
              wait: bool = True) -> Server:
        """`kubefabric trigger` against `endpoint` with `triggers` (HTTPTrigger dicts, written to
        a file) as replica `name`; waits for /readyz."""
        d = tmp_path / f"trigger-{name}-{len(started)}"
        d.mkdir()
        argv = [sys.executable, "-m", "kubefabric.cli", "trigger", "--endpoints", f"http://{endpoint}",
                "--replica-name", name, "--listen-address", f"127.0.0.1:{free_port()}",
                "--checkpoint-interval", "200ms", "--lease-ttl", "3",
                "--cluster-triggers", "true" if cluster else "false", *extra]
        if triggers:
            f = d / "triggers.yaml"
            f.write_text(yaml.safe_dump_all(triggers))
            argv += ["--triggers", str(f)]
        log = d / "trigger.log"
        proc = zygote.popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=d)
        s = Server("trigger", argv[argv.index("--listen-address") + 1], proc, d, log, argv)
        started.append(s)
        if wait:
            wait_http(f"http://{s.endpoint}/readyz", proc, log)
        return s

    yield start
    for s in started:
        s.stop()
        if s.proc.returncode not in (0, -9, None) or os.environ.get("KF_TRIGGER_LOGS"):
            print(f"trigger exited {s.proc.returncode}:\n{s.log()[-4000:]}")
