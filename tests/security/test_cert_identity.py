"""A client certificate is an identity (etcd's rule, issue 20 point 1): with --client-cert-auth
and auth enabled, a request that carries no token acts as the user its certificate's CN names.
The same etcdctl script runs against Debian's etcd and `kubefabric serve`, both over mTLS with
certificates made for this run; every command's outcome must be the same."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from harness.certs import CA, Pair

from harness.etcdctl import etcdctl_binary
from harness.servers import etcd_binary, free_port, spawn, start_kubefabric_tls, stop_process


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki-cn")
    ca = CA.new("identity test CA", d)
    return SimpleNamespace(ca=ca, server=ca.issue("server", d, server=True),
                           **{cn: ca.issue(cn, d) for cn in ("root", "alice", "bob", "carol")})


def tls_flags(pki) -> list[str]:
    return ["--cert-file", str(pki.server.cert_file), "--key-file", str(pki.server.key_file),
            "--trusted-ca-file", str(pki.ca.cert_file), "--client-cert-auth"]


def start_etcd_tls(workdir: Path, pki):
    client, peer = free_port(), free_port()
    argv = [etcd_binary(), "--name", "default", "--data-dir", str(workdir / "etcd-data"),
            "--listen-client-urls", f"https://127.0.0.1:{client}",
            "--advertise-client-urls", f"https://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer}", "--log-level", "error",
            *tls_flags(pki)]
    proc = spawn(argv, stdout=(workdir / "etcd.log").open("wb"), stderr=subprocess.STDOUT)
    return f"127.0.0.1:{client}", proc


def etcdctl(endpoint: str, pki, who: Pair, *args: str) -> tuple[int, str]:
    out = subprocess.run([etcdctl_binary(), "--endpoints", f"https://{endpoint}",
                          "--cacert", str(pki.ca.cert_file), "--cert", str(who.cert_file),
                          "--key", str(who.key_file), "--command-timeout", "5s",
                          "--dial-timeout", "5s", *args],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "ETCDCTL_API": "3"})
    errors = [m.group(0) for m in re.finditer(r"Error: .*", out.stderr)]
    return out.returncode, out.stdout.strip() + "".join(f"\n{e}" for e in errors)


def wait_serving(endpoint: str, pki) -> None:
    for _ in range(100):
        if etcdctl(endpoint, pki, pki.root, "endpoint", "health")[0] == 0:
            return
    raise AssertionError(f"{endpoint} never answered over mTLS")


def script(endpoint: str, pki) -> list[tuple[str, str, tuple[int, str]]]:
    steps = [
        ("root", "user add root:rootpw --interactive=false"),
        ("root", "user grant-role root root"),
        ("root", "role add tenant"),
        ("root", "role grant-permission tenant readwrite /a/ --prefix=true"),
        ("root", "user add alice:alicepw --interactive=false"),
        ("root", "user grant-role alice tenant"),
        ("root", "user add bob:bobpw --interactive=false"),
        ("root", "auth enable"),
        ("alice", "put /a/x 1"),          # her role's prefix
        ("alice", "get /a/x --print-value-only"),
        ("alice", "put /b 1"),            # outside it
        ("bob", "get /a/x"),              # a user without the role
        ("carol", "get /a/x"),            # a certificate whose CN is no user
        ("root", "put /b 2"),
        ("root", "get /b --print-value-only"),
        ("alice", "user list"),           # admin only
        ("root", "user list"),
        ("root", "auth disable"),
        ("carol", "get /b --print-value-only"),  # auth off: any trusted certificate
    ]
    return [(who, cmd, etcdctl(endpoint, pki, getattr(pki, who), *cmd.split())) for who, cmd in steps]


def test_certificate_cn_is_the_user_as_in_etcd(pki, tmp_path):
    (tmp_path / "etcd").mkdir()
    etcd_endpoint, etcd = start_etcd_tls(tmp_path / "etcd", pki)
    kf = start_kubefabric_tls(tmp_path / "kf", tls_flags(pki))
    try:
        wait_serving(etcd_endpoint, pki)
        wait_serving(kf.endpoint, pki)
        theirs, ours = script(etcd_endpoint, pki), script(kf.endpoint, pki)
    finally:
        stop_process(etcd)
        kf.stop()
    outcome = {cmd: res for _, cmd, res in theirs}
    assert outcome["put /a/x 1"] == (0, "OK") and "permission denied" in outcome["put /b 1"][1], \
        f"the reference did not behave as expected: {theirs}"
    differ = [f"{who}: etcdctl {cmd}\n  etcd:       {t}\n  kubefabric: {o}"
              for (who, cmd, t), (_, _, o) in zip(theirs, ours) if t != o]
    assert not differ, "\n".join(differ)
