"""A private NATS server with JetStream on loopback for tests (Debian's nats-server).

    server = NatsServer(workdir)   # nothing runs yet
    server.start()                 # 127.0.0.1:<free port>, JetStream files under workdir
    server.url                     # nats://127.0.0.1:<port>
    server.kill(); server.start()  # crash and restart on the same port with the same streams
    server.stop()                  # SIGTERM and wait

    NatsServer(workdir, tls=NatsTLS(cert, key, ca))  # TLS only (a generated config file's tls
                                   # block); with ca, client certificates are required (verify)
    server.url                     # then tls://127.0.0.1:<port>; server.plain_url is nats://

Fixture `nats_server`: one server per test session (per xdist worker). Tests that restart NATS
make their own.
"""
from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.servers import free_port, spawn


class NatsNotInstalled(RuntimeError):
    pass


@dataclass(frozen=True)
class NatsTLS:
    """The server's TLS files: its certificate (SANs covering 127.0.0.1) and key, and the CA of
    client certificates (None: clients are not asked for one)."""
    cert_file: Path
    key_file: Path
    ca_file: Path | None = None


class NatsServer:
    def __init__(self, workdir: Path, port: int | None = None, tls: NatsTLS | None = None):
        self.binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(self.binary).exists():
            raise NatsNotInstalled("nats-server is not installed: apt-get install nats-server")
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.store = self.workdir / f"nats-{self.port}"
        self.log = self.workdir / f"nats-{self.port}.log"
        self.tls = tls
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"tls://127.0.0.1:{self.port}" if self.tls else self.plain_url

    @property
    def plain_url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        if self.tls:
            argv = [self.binary, "--config", str(self._write_config())]
        else:
            argv = [self.binary, "--jetstream", "--store_dir", str(self.store), "--addr", "127.0.0.1",
                    "--port", str(self.port), "--server_name", f"kf-test-{self.port}"]
        self.proc = spawn(argv, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log.read_text()[-2000:]}")
            if "Server is ready" in self.log.read_text(errors="replace") and self._accepts():
                return
            time.sleep(0.05)
        raise RuntimeError(f"nats-server not ready in {timeout}s: {self.log.read_text()[-2000:]}")

    def _write_config(self) -> Path:
        """The command line has no flag for requiring client certificates: a config file."""
        q = json.dumps  # a JSON string is a quoted string in NATS' config syntax
        tls = [f"cert_file: {q(str(self.tls.cert_file))}", f"key_file: {q(str(self.tls.key_file))}",
               "timeout: 5"]  # seconds for the TLS handshake: generous, for loaded test hosts
        if self.tls.ca_file:
            tls += [f"ca_file: {q(str(self.tls.ca_file))}", "verify: true"]
        conf = self.workdir / f"nats-{self.port}.conf"
        conf.write_text("\n".join([
            "listen: " + q(f"127.0.0.1:{self.port}"),
            "server_name: " + q(f"kf-test-{self.port}"),
            "jetstream { store_dir: " + q(str(self.store)) + " }",
            "tls {", *(f"  {line}" for line in tls), "}", ""]))
        return conf

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory):
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()
