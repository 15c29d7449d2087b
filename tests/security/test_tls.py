"""TLS and mTLS on the client port (kv_router/tls.py, kubefabric/tls/), with certificates made for this run (harness/certs.py).

- TLS put/get with the CA; an http:// listener beside an https:// one stays plaintext.
- --client-cert-auth (and, as in etcd, --trusted-ca-file alone): no client certificate, one from
  another CA, or an expired one is refused with UNAVAILABLE within 5 s (no hang); plaintext to a
  TLS port fails just as fast.
- etcdctl (Debian's etcd-client) with --cacert/--cert/--key.
- Rotation: new files at the same paths reach new connections without a restart (the probe reads
  the serial the server presents); a half-written rotation (new certificate, old key) keeps the
  previous certificate; open connections and client-certificate checks survive the reload.
- --cipher-suites limits TLS 1.2 suites; bad flag combinations exit 2 with one line, no traceback.
"""
from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from harness.certs import CA, Pair
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from harness.etcdctl import etcdctl_binary
from harness.servers import Server, free_port, start_kubefabric_tls as start
from kubefabric.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

FAST = 5.0  # a refused client must learn so within this many seconds


@dataclass
class PKI:
    ca: CA
    server: Pair
    client: Pair
    other_client: Pair     # signed by another CA
    expired_client: Pair


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    ca, other = CA.new("KubeFabric test CA", d), CA.new("another CA", d)
    return PKI(ca, ca.issue("server", d, server=True), ca.issue("client", d),
               other.issue("other client", d), ca.issue("expired client", d, expired=True))


def tls_flags(server: Pair, ca: CA | None = None, client_cert_auth: bool = True) -> list[str]:
    flags = ["--cert-file", str(server.cert_file), "--key-file", str(server.key_file)]
    if ca:
        flags += ["--trusted-ca-file", str(ca.cert_file)] + (["--client-cert-auth"] if client_cert_auth else [])
    return flags


@pytest.fixture
def servers(tmp_path):
    started: list[Server] = []

    def run(flags, plain_port=None) -> Server:
        started.append(start(tmp_path / f"kf-{len(started)}", flags, plain_port))
        return started[-1]

    yield run
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def tls_server(pki, tmp_path_factory):
    server = start(tmp_path_factory.mktemp("tls"), tls_flags(pki.server))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mtls_server(pki, tmp_path_factory):
    server = start(tmp_path_factory.mktemp("mtls"), tls_flags(pki.server, pki.ca))
    yield server
    server.stop()


def channel(server: Server, ca: CA, client: Pair | None = None) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(ca.pair.cert_pem, client.key_pem if client else None,
                                         client.cert_pem if client else None)
    # a channel of its own: a fresh connection, never one shared with an earlier channel
    return grpc.secure_channel(server.endpoint, creds, options=[("grpc.use_local_subchannel_pool", 1)])


def put_get(ch: grpc.Channel, key: bytes, value: bytes) -> bytes:
    kv = rpc_pb2_grpc.KVStub(ch)
    kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=FAST)
    return kv.Range(rpc_pb2.RangeRequest(key=key), timeout=FAST).kvs[0].value


def assert_refused(ch: grpc.Channel) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b"k"), timeout=2 * FAST)
    took = time.monotonic() - started
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
    assert took < FAST, f"refused only after {took:.1f}s"


def presented_serial(server: Server, ca: CA, client: Pair | None = None) -> int:
    """The serial number of the certificate the server shows a new connection."""
    ctx = ssl.create_default_context(cafile=str(ca.cert_file))
    ctx.set_alpn_protocols(["h2"])
    if client:
        ctx.load_cert_chain(client.cert_file, client.key_file)
    host, port = server.endpoint.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=FAST) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


# ---- TLS and mTLS ----

def test_put_get_over_tls_beside_a_plaintext_listener(servers, pki):
    plain = free_port()
    server = servers(tls_flags(pki.server), plain_port=plain)
    with channel(server, pki.ca) as ch:
        assert put_get(ch, b"/tls/a", b"secret") == b"secret"
    with grpc.insecure_channel(f"127.0.0.1:{plain}") as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        assert kv.Range(rpc_pb2.RangeRequest(key=b"/tls/a"), timeout=FAST).kvs[0].value == b"secret"
    assert presented_serial(server, pki.ca) == pki.server.serial


def test_client_certificate_accepted(mtls_server, pki):
    with channel(mtls_server, pki.ca, pki.client) as ch:
        assert put_get(ch, b"/mtls/ok", b"1") == b"1"


@pytest.mark.parametrize("who", ["no certificate", "another CA", "expired"])
def test_client_certificate_refused(mtls_server, pki, who):
    client = {"no certificate": None, "another CA": pki.other_client, "expired": pki.expired_client}[who]
    with channel(mtls_server, pki.ca, client) as ch:
        assert_refused(ch)


def test_trusted_ca_alone_requires_client_certificates_as_etcd(servers, pki):
    # etcd's security guide: --trusted-ca-file "will also automatically enable client cert
    # authentication no matter what value is set for --client-cert-auth" (checked on etcd 3.4)
    server = servers(tls_flags(pki.server, pki.ca, client_cert_auth=False))
    with channel(server, pki.ca) as ch:
        assert_refused(ch)
    with channel(server, pki.ca, pki.client) as ch:
        assert put_get(ch, b"/mtls/ca-only", b"1") == b"1"


def test_plaintext_to_the_tls_port_fails_fast(tls_server):
    with grpc.insecure_channel(tls_server.endpoint) as ch:
        assert_refused(ch)


def test_etcdctl_with_client_certificates(mtls_server, pki):
    def etcdctl(*args, client: Pair | None = pki.client, timeout: str = "5s"):
        tls = ["--cacert", str(pki.ca.cert_file)]
        if client:
            tls += ["--cert", str(client.cert_file), "--key", str(client.key_file)]
        return subprocess.run([etcdctl_binary(), "--endpoints", f"https://{mtls_server.endpoint}",
                               "--command-timeout", timeout, "--dial-timeout", timeout, *tls, *args],
                              capture_output=True, text=True, timeout=30,
                              env={**os.environ, "ETCDCTL_API": "3"})

    put = etcdctl("put", "/etcdctl/tls", "hello")
    assert (put.returncode, put.stdout.strip()) == (0, "OK"), put.stderr
    get = etcdctl("get", "/etcdctl/tls")
    assert (get.returncode, get.stdout.split()) == (0, ["/etcdctl/tls", "hello"]), get.stderr
    refused = etcdctl("get", "/etcdctl/tls", client=None, timeout="2s")
    assert refused.returncode != 0 and "hello" not in refused.stdout


# ---- rotation without restart ----

def wait_for(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return result


def test_rotated_certificate_reaches_new_connections(servers, pki, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "server.pem", live / "server-key.pem"
    pki.server.write_to(cert, key)
    server = servers(["--cert-file", str(cert), "--key-file", str(key),
                      "--trusted-ca-file", str(pki.ca.cert_file), "--client-cert-auth"])
    old = channel(server, pki.ca, pki.client)
    assert put_get(old, b"/rotate/a", b"before") == b"before"
    assert presented_serial(server, pki.ca, pki.client) == pki.server.serial

    rotated = pki.ca.issue("server rotated", tmp_path, server=True)
    # half-way: the new certificate is in place, its key not yet; the old pair keeps serving
    tmp = cert.with_name("cert.new")
    tmp.write_bytes(rotated.cert_pem)
    tmp.replace(cert)
    assert presented_serial(server, pki.ca, pki.client) == pki.server.serial
    wait_for(lambda: "keeping the previous certificate" in server.log())
    with channel(server, pki.ca, pki.client) as ch:
        assert put_get(ch, b"/rotate/b", b"half") == b"half"

    rotated.write_to(cert, key)
    wait_for(lambda: presented_serial(server, pki.ca, pki.client) == rotated.serial)
    assert "TLS certificate reloaded" in server.log()
    with channel(server, pki.ca, pki.client) as ch:
        assert put_get(ch, b"/rotate/c", b"after") == b"after"
    with channel(server, pki.ca) as ch:  # client certificates are still required
        assert_refused(ch)
    with channel(server, pki.ca, pki.expired_client) as ch:
        assert_refused(ch)
    # the connection made before the rotation still works, and nothing restarted
    assert rpc_pb2_grpc.KVStub(old).Range(rpc_pb2.RangeRequest(key=b"/rotate/c"), timeout=FAST).count == 1
    old.close()
    assert server.proc.poll() is None and server.log().count("serving the etcd v3 API") == 1


# ---- cipher suites ----

def handshake(server: Server, ca: CA, ciphers: str | None = None, tls12: bool = True) -> tuple:
    ctx = ssl.create_default_context(cafile=str(ca.cert_file))
    ctx.set_alpn_protocols(["h2"])
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers:
        ctx.set_ciphers(ciphers)
    host, port = server.endpoint.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=FAST) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            return tls.version(), tls.cipher()[0]


def test_cipher_suites_limit_tls12(servers, pki):
    server = servers(tls_flags(pki.server) + [
        "--cipher-suites", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_AES_128_GCM_SHA256"])
    assert handshake(server, pki.ca, "ECDHE-ECDSA-AES128-GCM-SHA256") == (
        "TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256")
    with pytest.raises(ssl.SSLError):
        handshake(server, pki.ca, "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305")
    assert handshake(server, pki.ca, tls12=False)[0] == "TLSv1.3"  # TLS 1.3 suites stay on
    with channel(server, pki.ca) as ch:
        assert put_get(ch, b"/cipher", b"1") == b"1"


# ---- flags ----

_NOISE = re.compile(r"^\S+ \S+ (INFO|DEBUG) |^[IWE]\d{4} \d\d:\d\d:\d\d")  # our INFO, gRPC core's


def refused(tmp_path: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "kubefabric.cli", "serve",
                           "--data-dir", str(tmp_path / "data"), *args],
                          capture_output=True, text=True, timeout=30, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert proc.returncode == 2, f"exit {proc.returncode}, want 2:\n{out}"
    lines = [ln for ln in out.splitlines() if ln.strip() and not _NOISE.search(ln)]
    assert len(lines) == 1, f"want one line:\n{out}"
    assert not (tmp_path / "data").exists(), "the data directory was touched before the flags were checked"
    return lines[0]


BAD_FLAGS = {  # case → (flags after --listen-client-urls https://…, words the error line must name)
    "https without files": ([], ["https://", "--cert-file", "--key-file"]),
    "cert without key": (["--cert-file", "{server}"], ["--cert-file", "--key-file"]),
    "client-cert-auth without CA": (["{pair}", "--client-cert-auth"],
                                    ["--client-cert-auth", "--trusted-ca-file"]),
    "RC4 suite": (["{pair}", "--cipher-suites",
                   "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_RSA_WITH_RC4_128_SHA"],
                  ["--cipher-suites", "TLS_RSA_WITH_RC4_128_SHA"]),
    "unknown suite": (["{pair}", "--cipher-suites", "TLS_NO_SUCH_SUITE"], ["TLS_NO_SUCH_SUITE"]),
    "TLS 1.3 suites only": (["{pair}", "--cipher-suites", "TLS_AES_128_GCM_SHA256"],
                            ["TLS 1.3", "TLS 1.2"]),
    "TLS1.3 only": (["{pair}", "--tls-min-version", "TLS1.3"], ["--tls-min-version", "TLS1.3"]),
    "TLS1.0": (["{pair}", "--tls-min-version", "TLS1.0"], ["TLS1.0", "TLS1.2"]),
    "missing cert": (["--cert-file", "{tmp}/missing.pem", "--key-file", "{server_key}"],
                     ["missing.pem"]),
    "wrong key": (["--cert-file", "{server}", "--key-file", "{client_key}"],
                  ["--key-file", "client-key.pem"]),
    "CA file without a certificate": (["{pair}", "--trusted-ca-file", "{client_key}"],
                                      ["--trusted-ca-file"]),
    "encrypted key": (["--cert-file", "{server}", "--key-file", "{tmp}/encrypted-key.pem"],
                      ["encrypted-key.pem", "encrypted"]),
}


@pytest.mark.parametrize("case", BAD_FLAGS)
def test_bad_flag_combination(tmp_path, pki, case):
    (tmp_path / "encrypted-key.pem").write_bytes(pki.server.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    values = {"server": str(pki.server.cert_file), "server_key": str(pki.server.key_file),
              "client_key": str(pki.client.key_file), "tmp": str(tmp_path)}
    flags, names = BAD_FLAGS[case]
    args = ["--listen-client-urls", f"https://127.0.0.1:{free_port()}"]
    for flag in flags:
        args += tls_flags(pki.server) if flag == "{pair}" else [flag.format(**values)]
    line = refused(tmp_path, *args)
    for name in names:
        assert name in line, f"the error does not name {name}: {line}"


def test_help_says_what_grpc_cannot_enforce():
    out = subprocess.run([sys.executable, "-m", "kubefabric.cli", "serve", "--help"],
                         capture_output=True, text=True, timeout=30).stdout
    flat = " ".join(out.split())
    for flag in ("--cert-file", "--key-file", "--trusted-ca-file", "--client-cert-auth",
                 "--cipher-suites", "--tls-min-version"):
        assert flag in flat
    assert "cannot be limited to TLS 1.3" in flat
