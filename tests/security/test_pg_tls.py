"""TLS on the shard service → PostgreSQL hop, against a private PostgreSQL 15 server (not the
session's) with `ssl = on`, a certificate from a CA made for this run (harness/certs.py), and pg_hba
rules that accept TCP over TLS only (`hostssl`), so a plaintext connection is refused:

- `backend-pg --dsn ...?sslmode=verify-full&sslrootcert=<CA>` becomes ready, serves a put and a
  get through `kubefabric serve --shard`, and its connections are encrypted (pg_stat_ssl);
- verify-full with a CA that did not sign the server's certificate, and sslmode=disable (refused
  by the server), each log one line saying why, keep retrying and never become ready;
- client certificates (sslcert/sslkey) on a database whose pg_hba rule is `cert`: accepted from
  the CA the server trusts (ssl_ca_file), refused without one;
- a TLS file that does not exist, an unknown sslmode, sslkey without sslcert stop the service
  at start with one line and exit code 2.

The DSN carries the role's password (URL-special characters): it must never reach the log.
"""
from __future__ import annotations

import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import grpc
import pytest
from harness.certs import CA, Pair

from harness.client import Client
from harness.postgres import PASSWORD, ROLE, PostgresServer
from harness.servers import Server, start_router, start_shard, wait_log

RETRYING_S = 2.0  # a refused service must still be running (and not ready) this long after


@dataclass
class PKI:
    dir: Path
    ca: CA           # signs the server's certificate and the accepted client certificate
    other_ca: CA     # signs nothing the server presents or trusts
    client: Pair     # CN = the role's name, as pg_hba's `cert` method requires
    stranger: Pair   # a client certificate from other_ca


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    ca, other = CA.new("postgres CA", d), CA.new("another CA", d)
    ca.issue("postgres server", d, server=True)  # SANs 127.0.0.1 and localhost
    return PKI(d, ca, other, ca.issue(ROLE, d), other.issue(f"{ROLE} stranger", d))


@pytest.fixture(scope="module")
def pg_tls(pki) -> PostgresServer:
    """TCP over TLS only: database `mtls` needs a client certificate (`cert`), the others the
    role's password; both over TLS. The unix socket (administration) stays plaintext."""
    server = PostgresServer(settings={"ssl": "on"}, hba=[
        "hostssl mtls all 127.0.0.1/32 cert",
        "hostssl all all 127.0.0.1/32 scram-sha-256",
    ])
    files = {"ssl_cert_file": ("server.crt", (pki.dir / "postgres-server.pem").read_bytes()),
             "ssl_key_file": ("server.key", (pki.dir / "postgres-server-key.pem").read_bytes()),
             "ssl_ca_file": ("clients-ca.crt", pki.ca.pair.cert_pem)}
    for setting, (name, data) in files.items():
        server.settings[setting] = str(server.put_file(name, data))
    try:
        server.start()
        server.create_database("tls")
        server.create_database("mtls")
        yield server
    finally:
        server.remove()


def dsn(server: PostgresServer, db: str, **params: str) -> str:
    return server.dsn(db) + "?" + "&".join(f"{k}={quote(str(v), safe='/')}" for k, v in params.items())


def readiness(shard: Server) -> int:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(shard.endpoint) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="readiness"), timeout=5).status




def assert_clean_log(server: Server) -> None:
    log = server.log()
    assert PASSWORD not in log and quote(PASSWORD, safe="") not in log, log
    assert "Traceback" not in log, log


def assert_refused(shard: Server, *lines: str) -> None:
    """Still running, never ready, and each of `lines` in one log line (no stack trace)."""
    from grpc_health.v1 import health_pb2

    log = wait_log(shard, lines[0])
    line = next(ln for ln in log.splitlines() if lines[0] in ln)
    for text in lines[1:]:
        assert text in line, line
    time.sleep(RETRYING_S)
    assert shard.proc.poll() is None, f"{shard.kind} exited:\n{shard.log()}"
    assert readiness(shard) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert_clean_log(shard)


def ssl_connections(server: PostgresServer, db: str) -> list[str]:
    """(ssl, client certificate's CN) of the sessions on database `db`."""
    rows = server.sql("SELECT s.ssl || ' ' || coalesce(s.client_dn, '') FROM pg_stat_ssl s "
                      f"JOIN pg_stat_activity a USING (pid) WHERE a.datname = '{db}'")
    return rows.splitlines()


def stop_all(started: list[Server]) -> None:
    for s in reversed(started):
        s.stop()


# ---- end to end ----

def put_get_through_router(tmp_path, shard: Server, key: bytes, value: bytes) -> Server:
    """A put and a get through `kubefabric serve --shard`; returns the router (to stop)."""
    router = start_router(tmp_path, [shard])
    client = Client(router.endpoint)
    try:
        client.put(key, value)
        assert client.get(key).kvs[0].value == value
    finally:
        client.close()
    return router


def test_verify_full_serves_through_the_router(pki, pg_tls, tmp_path):
    started = []
    try:
        shard = start_shard(tmp_path, "postgres", dsn(pg_tls, "tls", sslmode="verify-full",
                                                      sslrootcert=pki.ca.cert_file), name="pgtls")
        started.append(shard)
        started.append(put_get_through_router(tmp_path, shard, b"/tls/k", b"over TLS"))
        sessions = ssl_connections(pg_tls, "tls")
        assert sessions and all(s.startswith("true") for s in sessions), sessions
        assert_clean_log(shard)
    finally:
        stop_all(started)


def test_client_certificate_for_cert_auth(pki, pg_tls, tmp_path):
    started = []
    try:
        shard = start_shard(tmp_path, "postgres", dsn(
            pg_tls, "mtls", sslmode="verify-full", sslrootcert=pki.ca.cert_file,
            sslcert=pki.client.cert_file, sslkey=pki.client.key_file), name="pgmtls")
        started.append(shard)
        started.append(put_get_through_router(tmp_path, shard, b"/mtls/k", b"with a client certificate"))
        sessions = ssl_connections(pg_tls, "mtls")
        assert sessions and all(s == f"true /CN={ROLE}" for s in sessions), sessions
        assert_clean_log(shard)
    finally:
        stop_all(started)


# ---- refused: one line in the log, retrying, never ready ----

def test_verify_full_with_another_ca_is_refused(pki, pg_tls, tmp_path):
    shard = start_shard(tmp_path, "postgres", dsn(pg_tls, "tls", sslmode="verify-full",
                                                  sslrootcert=pki.other_ca.cert_file),
                        name="pgwrongca", wait=False)
    try:
        assert_refused(shard, "database unavailable: cannot connect to PostgreSQL",
                       "certificate verify failed")
    finally:
        shard.stop()


def test_plaintext_is_refused_by_the_server(pg_tls, tmp_path):
    shard = start_shard(tmp_path, "postgres", dsn(pg_tls, "tls", sslmode="disable"),
                        name="pgplain", wait=False)
    try:
        assert_refused(shard, "database unavailable: cannot connect to PostgreSQL",
                       "no pg_hba.conf entry", "no encryption")
    finally:
        shard.stop()


@pytest.mark.parametrize("client", [None, "stranger"])
def test_cert_auth_without_a_trusted_client_certificate_is_refused(pki, pg_tls, tmp_path, client):
    params = {"sslmode": "verify-full", "sslrootcert": pki.ca.cert_file}
    if client:
        pair = getattr(pki, client)
        params.update(sslcert=pair.cert_file, sslkey=pair.key_file)
    shard = start_shard(tmp_path, "postgres", dsn(pg_tls, "mtls", **params),
                        name=f"pgmtls-{client}", wait=False)
    try:
        # without a certificate PostgreSQL says so; one from another CA: the server ends the
        # TLS 1.3 session after the handshake, asyncpg sees a closed connection, the log says
        # what to check
        assert_refused(shard, "database unavailable: cannot connect to PostgreSQL",
                       "connection requires a valid client certificate" if client is None else
                       "did the server refuse the client certificate sslcert?")
    finally:
        shard.stop()


# ---- the DSN's mapping (no server) ----

def test_client_certificate_keeps_the_verification_of_the_mode(pki):
    from backend_pg.store import ssl_option
    from kubefabric.dsn import DSNError, parse_dsn

    def opt(**params):
        return ssl_option(parse_dsn("postgres://u:p@h/db?" + "&".join(f"{k}={v}" for k, v in params.items())))
    cert = {"sslcert": pki.client.cert_file, "sslkey": pki.client.key_file}
    # no sslrootcert: verify-ca and verify-full verify against the system's roots (never CERT_NONE)
    assert opt(sslmode="verify-ca", **cert).verify_mode == ssl.CERT_REQUIRED
    assert opt(sslmode="verify-full", **cert).check_hostname
    assert opt(sslmode="require", **cert).verify_mode == ssl.CERT_NONE  # libpq's require
    with pytest.raises(DSNError, match="sslkey needs sslcert"):
        opt(sslmode="require", sslkey=pki.client.key_file)
    with pytest.raises(DSNError, match=f"sslcert={pki.stranger.cert_file}, sslkey={pki.client.key_file}"):
        opt(sslmode="require", sslcert=pki.stranger.cert_file, sslkey=pki.client.key_file)  # not its key


# ---- settings that cannot work: exit 2 at start ----

@pytest.mark.parametrize("params, says", [
    ({"sslmode": "verify-full", "sslrootcert": "/nonexistent/ca.pem"},
     "cannot load the TLS files of the PostgreSQL DSN (sslrootcert=/nonexistent/ca.pem)"),
    ({"sslmode": "sometimes"}, "sslmode='sometimes' is not one of"),
    ({"sslmode": "require", "sslkey": "/nonexistent/key.pem"}, "sslkey needs sslcert"),
])
def test_unusable_tls_settings_stop_the_start(pg_tls, tmp_path, params, says):
    done = subprocess.run([sys.executable, "-m", "kubefabric.cli", "backend-pg",
                           "--dsn", dsn(pg_tls, "tls", **params), "--listen-address", "127.0.0.1:0",
                           "--metrics-address", ""],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert says in out and "Traceback" not in out, out
    assert PASSWORD not in out and quote(PASSWORD, safe="") not in out, out
