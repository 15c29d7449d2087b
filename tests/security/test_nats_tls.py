"""TLS and client certificates on the services → NATS hop, against a real nats-server that
requires TLS and verifies client certificates (harness.nats.NatsTLS), with certificates made for
this run (harness/certs.py).

- A shard service and a watch-hub with --nats-ca-file and a client certificate from the CA the
  server trusts: a put through `kubefabric serve --shard ... --watch-hub ...` arrives on a
  watch (the shard publishes it on NATS, the hub reads it from there).
- Refused, with a sentence saying what to check in the service's log, while the service keeps
  running and retrying: no client certificate, one from another CA, a server certificate the
  given CA did not sign, a plaintext nats:// URL to the TLS server; and the other way round, a
  tls:// URL to a plaintext NATS (nats-py alone would carry on in plaintext there).
- The files are re-read on reconnect: a hub refused for its certificate connects once the
  certificate at the same paths is replaced by a good one, without a restart.
- Flags or files that cannot work stop both services at start with exit 2 and one line.
"""
from __future__ import annotations

import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from harness.certs import CA, Pair

from harness.client import Client
from harness.nats import NatsServer, NatsTLS
from harness.servers import Server, start_hub, start_router, start_shard, wait_log, wait_shard_ready
from harness.stream import Stream
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

RETRYING_S = 2.0  # a refused service must still be running (and retrying) this long after


@dataclass
class PKI:
    dir: Path
    ca: CA             # signs the NATS server's certificate and the services' client certificates
    other_ca: CA
    shard: Pair        # client certificates
    hub: Pair
    stranger: Pair     # from other_ca


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    ca, other = CA.new("nats CA", d), CA.new("another CA", d)
    ca.issue("nats server", d, server=True)
    return PKI(d, ca, other, ca.issue("shard client", d), ca.issue("hub client", d),
               other.issue("stranger", d))


@pytest.fixture(scope="module")
def nats_tls(pki, tmp_path_factory) -> NatsServer:
    """nats-server with JetStream that accepts TLS only and requires a client certificate
    signed by pki.ca (tls { verify: true })."""
    server = NatsServer(tmp_path_factory.mktemp("nats-tls"), tls=NatsTLS(
        pki.dir / "nats-server.pem", pki.dir / "nats-server-key.pem", pki.ca.cert_file))
    server.start()
    yield server
    server.stop()


def nats_flags(url: str, ca: CA | None, client: Pair | None) -> list[str]:
    flags = ["--nats-url", url]
    if ca:
        flags += ["--nats-ca-file", str(ca.cert_file)]
    if client:
        flags += ["--nats-cert-file", str(client.cert_file), "--nats-key-file", str(client.key_file)]
    return flags


def hub_args(flags: list[str]) -> tuple[str, list[str]]:
    """start_hub takes the URL apart from the other flags."""
    return flags[1], flags[2:]




def assert_keeps_running(server: Server) -> None:
    time.sleep(RETRYING_S)
    assert server.proc.poll() is None, f"{server.kind} exited:\n{server.log()}"
    assert "Traceback" not in server.log(), server.log()


def hub_readiness(hub: Server) -> int:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(hub.endpoint) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="readiness"), timeout=5).status


# ---- end to end ----

def test_put_reaches_a_watch_through_tls_nats(pki, nats_tls, tmp_path):
    started = []
    try:
        shard = start_shard(tmp_path, "sqlite", f"sqlite://{tmp_path / 'data'}",
                            nats_flags(nats_tls.url, pki.ca, pki.shard), name="tlsbus")
        started.append(shard)
        url, extra = hub_args(nats_flags(nats_tls.url, pki.ca, pki.hub))
        hub = start_hub(tmp_path, url, [shard], shard_name="tlsbus", extra=extra)
        started.append(hub)
        router = start_router(tmp_path, [shard], ["--watch-hub", f"grpc://{hub.endpoint}"])
        started.append(router)
        client = Client(router.endpoint)
        watch = Stream(client.watch.Watch)
        try:
            watch.send(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"/nats-tls/w")))
            assert watch.recv().created
            put = client.put(b"/nats-tls/w", b"over tls nats")
            event = watch.recv()
            while not event.events:  # progress notifications may come first
                event = watch.recv()
            assert [(e.kv.key, e.kv.value, e.kv.mod_revision) for e in event.events] == \
                [(b"/nats-tls/w", b"over tls nats", put.header.revision)], event
        finally:
            watch.close()
            client.close()
        for s in (shard, hub):
            assert f"connected (TLS 1.2+, server certificate verified against {pki.ca.cert_file}" \
                in s.log(), s.log()
    finally:
        for s in reversed(started):
            s.stop()


# ---- refused ----

REFUSED = {
    # who: (flags, what the service logs)
    "no certificate": (lambda pki, nats: nats_flags(nats.url, pki.ca, None),
                       "the server probably requires a client certificate: give --nats-cert-file"),
    "another CA": (lambda pki, nats: nats_flags(nats.url, pki.ca, pki.stranger),
                   "the server probably refused the client certificate --nats-cert-file"),
    "wrong server CA": (lambda pki, nats: nats_flags(nats.url, pki.other_ca, pki.hub),
                        "its certificate is not trusted (unable to get local issuer certificate; "
                        "checked against --nats-ca-file"),
    "plaintext URL": (lambda pki, nats: nats_flags(nats.plain_url, None, None),
                      "requires TLS: use a tls:// URL in --nats-url or give --nats-ca-file"),
}


@pytest.mark.parametrize("who", list(REFUSED))
def test_hub_refused(pki, nats_tls, tmp_path, who):
    flags, says = REFUSED[who]
    shard = start_shard(tmp_path, "sqlite", f"sqlite://{tmp_path / 'data'}", name="refused")
    url, extra = hub_args(flags(pki, nats_tls))
    hub = start_hub(tmp_path, url, [shard], shard_name="refused", extra=extra, wait=False)
    try:
        wait_log(hub, says)
        assert_keeps_running(hub)
        from grpc_health.v1 import health_pb2
        assert hub_readiness(hub) == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        hub.stop()
        shard.stop()


@pytest.mark.parametrize("who", ["no certificate", "plaintext URL"])
def test_shard_refused_keeps_serving(pki, nats_tls, tmp_path, who):
    """The shard service keeps serving the Shard API while NATS refuses it."""
    flags, says = REFUSED[who]
    shard = start_shard(tmp_path, "sqlite", f"sqlite://{tmp_path / 'data'}", flags(pki, nats_tls),
                        name="refused")
    try:
        wait_log(shard, says)
        assert_keeps_running(shard)
        wait_shard_ready(shard, timeout=5)
    finally:
        shard.stop()


def test_tls_url_to_a_plaintext_nats_is_refused(pki, nats_server, tmp_path):
    """TLS on, server without TLS: no silent fallback to plaintext."""
    shard = start_shard(tmp_path, "sqlite", f"sqlite://{tmp_path / 'data'}", name="downgrade")
    url = nats_server.url.replace("nats://", "tls://")
    hub = start_hub(tmp_path, url, [shard], shard_name="downgrade", wait=False,
                    extra=nats_flags(url, pki.ca, pki.hub)[2:])
    try:
        wait_log(hub, "does not require TLS (no tls_required in its INFO): refusing to continue "
                      "in plaintext")
        assert_keeps_running(hub)
    finally:
        hub.stop()
        shard.stop()


def test_certificate_replaced_while_refused_is_used_on_reconnect(pki, nats_tls, tmp_path):
    """A hub refused for its certificate retries; once the files at the same paths hold a good
    certificate it connects (and becomes ready) without a restart."""
    cert, key = tmp_path / "hub.pem", tmp_path / "hub-key.pem"
    pki.stranger.write_to(cert, key)
    shard = start_shard(tmp_path, "sqlite", f"sqlite://{tmp_path / 'data'}",
                        nats_flags(nats_tls.url, pki.ca, pki.shard), name="rotated")
    hub = start_hub(tmp_path, nats_tls.url, [shard], shard_name="rotated", wait=False,
                    extra=["--nats-ca-file", str(pki.ca.cert_file), "--nats-cert-file", str(cert),
                           "--nats-key-file", str(key)])
    try:
        wait_log(hub, "the server probably refused the client certificate")
        pki.hub.write_to(cert, key)
        wait_shard_ready(hub, timeout=20)
        assert "NATS TLS files changed: reloaded for the next connection" in hub.log(), hub.log()
    finally:
        hub.stop()
        shard.stop()


def test_files_that_do_not_load_keep_the_previous_context(pki, tmp_path, caplog):
    """Half-way through a rotation (a certificate without its key): the context in use stays."""
    from kubefabric.tls.nats import NatsTLS

    caplog.set_level(logging.INFO, "kubefabric.events")
    cert, key = tmp_path / "c.pem", tmp_path / "c-key.pem"
    pki.hub.write_to(cert, key)
    tls = NatsTLS(str(pki.ca.cert_file), str(cert), str(key))
    first = tls.client_context()
    assert tls.client_context() is first  # unchanged files: not rebuilt
    cert.write_bytes(pki.stranger.cert_pem)  # the new certificate, the old key
    assert tls.client_context() is first
    assert "NATS TLS files changed but --nats-cert-file" in caplog.text
    key.write_bytes(pki.stranger.key_pem)
    assert tls.client_context() is not first
    assert "NATS TLS files changed: reloaded for the next connection" in caplog.text


# ---- start-up errors ----

def _bad_flags(pki: PKI, tmp: Path) -> dict[str, tuple[list[str], str]]:
    not_pem = tmp / "not.pem"
    not_pem.write_text("not a certificate\n")
    ca, cert, key = str(pki.ca.cert_file), str(pki.hub.cert_file), str(pki.hub.key_file)
    return {
        "cert without key": (["--nats-url", "tls://127.0.0.1:1", "--nats-cert-file", cert],
                             "--nats-cert-file is set but --nats-key-file is not: give both"),
        "missing CA": (["--nats-url", "nats://127.0.0.1:1", "--nats-ca-file", str(tmp / "nope.pem")],
                       f"cannot read --nats-ca-file {tmp / 'nope.pem'}: No such file or directory"),
        "CA not PEM": (["--nats-url", "nats://127.0.0.1:1", "--nats-ca-file", str(not_pem)],
                       f"--nats-ca-file {not_pem} holds no PEM CA certificate"),
        "key not PEM": (["--nats-url", "nats://127.0.0.1:1", "--nats-ca-file", ca,
                         "--nats-cert-file", cert, "--nats-key-file", str(not_pem)],
                        "are not a PEM certificate and its unencrypted private key"),
        "cert without TLS": (["--nats-url", "nats://127.0.0.1:1", "--nats-cert-file", cert,
                              "--nats-key-file", key],
                             "--nats-cert-file needs TLS to NATS: use tls:// URLs"),
    }


@pytest.mark.parametrize("command", ["backend-sqlite", "watch-hub"])
@pytest.mark.parametrize("case", ["cert without key", "missing CA", "CA not PEM", "key not PEM",
                                  "cert without TLS"])
def test_nats_tls_flag_errors(pki, tmp_path, command, case):
    flags, says = _bad_flags(pki, tmp_path)[case]
    target = (["--dsn", f"sqlite://{tmp_path / 'data'}", "--listen-address", "127.0.0.1:0"]
              if command == "backend-sqlite" else ["--shard", "grpc://127.0.0.1:1",
                                                   "--listen-address", "127.0.0.1:0"])
    out = subprocess.run([sys.executable, "-m", "kubefabric.cli", command, *target, *flags],
                         capture_output=True, text=True, timeout=30, cwd=tmp_path)
    text = out.stderr + out.stdout
    assert out.returncode == 2, out
    assert says in text and "Traceback" not in text, out
    assert len(text.strip().splitlines()) == 1, text


def test_shard_nats_tls_flags_need_a_url(pki, tmp_path):
    out = subprocess.run([sys.executable, "-m", "kubefabric.cli", "backend-sqlite", "--dsn",
                          f"sqlite://{tmp_path / 'data'}", "--nats-ca-file", str(pki.ca.cert_file)],
                         capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert out.returncode == 2, out
    assert "need --nats-url" in out.stderr + out.stdout, out
