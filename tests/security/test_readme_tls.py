"""The README's TLS section, run as a new user would (issue 14, item 7): its openssl recipe makes
the CA, server and client certificates in an empty directory, then its `kubefabric serve` and
`etcdctl` commands (on a free port instead of 2379) serve and read over mutual TLS. Go's etcdctl
checks the server certificate's subjectAltName, so a recipe without one fails here.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from harness.etcdctl import etcdctl_binary
from harness.servers import free_port

README = Path(__file__).resolve().parents[2] / "README.md"


def sh_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)


def commands(block: str) -> list[str]:
    """The block's commands, continuation lines joined, comments dropped."""
    return [c.strip() for c in block.replace("\\\n", " ").splitlines()
            if c.strip() and not c.strip().startswith("#")]


def test_readme_certificate_recipe_serves_mutual_tls(tmp_path):
    blocks = sh_blocks()
    recipe = next(b for b in blocks if b.startswith("openssl req -x509"))
    usage = next(b for b in blocks if "./kubefabric serve --listen-client-urls https://" in b)
    made = subprocess.run(["bash", "-euo", "pipefail", "-c", recipe], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    for name in ("ca.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem"):
        assert (tmp_path / name).exists(), name

    port = free_port()
    serve, ctl = commands(usage)
    serve_argv = shlex.split(serve.replace("127.0.0.1:2379", f"127.0.0.1:{port}"))
    assert serve_argv[:2] == ["./kubefabric", "serve"], serve_argv
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "kubefabric.cli", *serve_argv[1:],
                             "--data-dir", str(tmp_path / "data"), "--metrics-address", ""],
                            cwd=tmp_path, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while b"serving the etcd v3 API" not in log.read_bytes():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        ctl_argv = shlex.split(ctl.replace("127.0.0.1:2379", f"127.0.0.1:{port}"))
        assert ctl_argv[:2] == ["ETCDCTL_API=3", "etcdctl"], ctl_argv
        env = {**os.environ, "ETCDCTL_API": "3"}
        base = [etcdctl_binary(), *ctl_argv[2:-2]]  # without `get /hello`
        put = subprocess.run([*base, "put", "/hello", "world"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
        assert put.returncode == 0 and put.stdout.strip() == "OK", put.stderr
        got = subprocess.run([etcdctl_binary(), *ctl_argv[2:]], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
        assert got.returncode == 0 and got.stdout.split() == ["/hello", "world"], got.stderr
        anonymous = subprocess.run([etcdctl_binary(), f"--endpoints=https://127.0.0.1:{port}",
                                    "--cacert", "ca.pem", "--dial-timeout=3s", "--command-timeout=5s",
                                    "get", "/hello"], cwd=tmp_path, env=env, capture_output=True,
                                   text=True, timeout=60)
        assert anonymous.returncode != 0, "a client without a certificate was served"
    finally:
        proc.terminate()
        proc.wait(30)
