"""TLS and mTLS on the kv-router → shard service hop and between a shard's replicas, with
certificates made for this run (harness/certs.py).

- kv-router with --shard-ca-file/--shard-cert-file/--shard-key-file in front of a shard service
  that requires client certificates (--trusted-ca-file): put, get and watch through the router,
  whose reads, writes and commit feed ride the shard's batch lane with the same TLS.
- Refused: the router's shard client (RemoteShard, with the credentials the router builds from
  its --shard-* flags) without a client certificate, with one from another CA, with an expired
  one, with a CA that did not sign the shard's certificate, or in plaintext: the call fails with
  UNAVAILABLE within FAST seconds (a refused handshake, not a hang). A router process started
  that way never becomes ready (its start-up waits for a replica), so the call is made directly.
  The batch lane refuses the same clients: the stream fails to open with UNAVAILABLE.
- Bad TLS flag combinations stop a shard service at start with exit 2 and one line.
- Two replicas with TLS only: a write sent to the replica is forwarded to the leader over TLS
  with the replica's own certificate (the leader has no plaintext port, so a plaintext forward
  would fail); a replica whose certificate comes from another CA cannot forward: the leader
  refuses it, and the write fails with UNAVAILABLE ("not leader", which routers retry elsewhere).
"""
from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from harness.certs import CA, Pair

from harness.client import Client, Failure
from harness.servers import Server, free_port, start_router, start_shard, wait_shard_ready
from harness.stream import Stream
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb
from kubefabric.shardsvc.client import RemoteShard
from kubefabric.shardsvc.lane import lane_stub
from kubefabric.tls import ClientTLS

FAST = 5.0  # a refused client must learn so within this many seconds


@dataclass
class PKI:
    dir: Path
    ca: CA
    other_ca: CA
    replicas: list[Pair]   # server + client certificates (replicas present theirs to the leader)
    router: Pair           # the router's client certificate
    other_client: Pair     # signed by another CA
    expired_client: Pair
    other_replica: Pair    # a replica certificate from the other CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    ca, other = CA.new("shard CA", d), CA.new("another CA", d)
    return PKI(d, ca, other, [ca.issue(f"replica {i}", d, peer=True) for i in range(2)],
               ca.issue("router", d), other.issue("other client", d),
               ca.issue("expired router", d, expired=True), other.issue("other replica", d, peer=True))


def shard_tls_flags(cert: Pair, ca: CA) -> list[str]:
    return ["--cert-file", str(cert.cert_file), "--key-file", str(cert.key_file),
            "--trusted-ca-file", str(ca.cert_file)]


def router_tls(pki: PKI, client: Pair | None = None) -> ClientTLS:
    client = client or pki.router
    return ClientTLS(str(pki.ca.cert_file), str(client.cert_file), str(client.key_file))


def router_flags(tls: ClientTLS) -> list[str]:
    return ["--shard-ca-file", tls.ca_file, "--shard-cert-file", tls.cert_file,
            "--shard-key-file", tls.key_file]


@pytest.fixture(scope="module")
def shard(pki, tmp_path_factory) -> Server:
    """One SQLite shard service serving the Shard API and its batch lane with mTLS only."""
    d = tmp_path_factory.mktemp("shard")
    server = start_shard(d, "sqlite", f"sqlite://{d / 'data'}",
                         [*shard_tls_flags(pki.replicas[0], pki.ca), "--lane-address", "127.0.0.1:0"],
                         tls=router_tls(pki))
    yield server
    server.stop()


# ---- router → shard ----

def test_router_over_mtls_put_get_watch(pki, shard, tmp_path):
    router = start_router(tmp_path, [shard], extra=router_flags(router_tls(pki)))
    client = Client(router.endpoint)
    watch = Stream(client.watch.Watch)
    try:
        watch.send(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"/tls/w")))
        created = watch.recv()
        assert created.created, created
        put = client.put(b"/tls/w", b"over mtls")
        assert put.header.revision > 0, put
        got = client.get(b"/tls/w")
        assert [(kv.key, kv.value) for kv in got.kvs] == [(b"/tls/w", b"over mtls")], got
        event = watch.recv()
        assert [(e.kv.key, e.kv.value) for e in event.events] == [(b"/tls/w", b"over mtls")], event
        assert f"go on the batch lane at 127.0.0.1:{lane_port(shard)} (TLS)" in router.log(), router.log()
    finally:
        watch.close()
        client.close()
        router.stop()


def refused_within_fast(endpoint: str, tls: ClientTLS | None) -> grpc.aio.AioRpcError:
    """The router's shard client (the channel RemoteShard builds from `tls`) calls Status once."""
    async def call():
        remote = RemoteShard([endpoint], tls=tls)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await remote.stubs[0].Status(spb.StatusRequest(), timeout=2 * FAST)
            return err.value
        finally:
            await remote.close()

    started = time.monotonic()
    err = asyncio.run(call())
    took = time.monotonic() - started
    assert err.code() == grpc.StatusCode.UNAVAILABLE, err
    assert took < FAST, f"refused only after {took:.1f}s"
    return err


@pytest.mark.parametrize("who", ["no certificate", "another CA", "expired", "wrong server CA",
                                 "plaintext"])
def test_router_refused(pki, shard, who):
    ca, other = str(pki.ca.cert_file), str(pki.other_ca.cert_file)
    tls = {"no certificate": ClientTLS(ca),
           "another CA": ClientTLS(ca, str(pki.other_client.cert_file), str(pki.other_client.key_file)),
           "expired": ClientTLS(ca, str(pki.expired_client.cert_file), str(pki.expired_client.key_file)),
           "wrong server CA": ClientTLS(other, str(pki.router.cert_file), str(pki.router.key_file)),
           "plaintext": None}[who]
    refused_within_fast(shard.endpoint, tls)
    # the same credentials work once they are right: the refusal was the certificate's doing
    ok = asyncio.run(_status(shard.endpoint, router_tls(pki)))
    assert ok.role == "leader"


def lane_port(shard: Server) -> int:
    found = re.search(r"batch lane on 127\.0\.0\.1:0 \(advertised as :(\d+)\)", shard.log())
    assert found, shard.log()
    return int(found[1])


@pytest.mark.parametrize("who", ["no certificate", "another CA", "wrong server CA", "plaintext"])
def test_the_lane_refuses_what_the_shard_api_refuses(pki, shard, who):
    ca, other = str(pki.ca.cert_file), str(pki.other_ca.cert_file)
    tls = {"no certificate": ClientTLS(ca),
           "another CA": ClientTLS(ca, str(pki.other_client.cert_file), str(pki.other_client.key_file)),
           "wrong server CA": ClientTLS(other, str(pki.router.cert_file), str(pki.router.key_file)),
           "plaintext": None}[who]
    endpoint, advertised = shard.endpoint, f":{lane_port(shard)}"

    async def open_stream(tls):
        call = lane_stub(endpoint, advertised, tls).ReadBatches()
        try:
            await call.initial_metadata()
        finally:
            call.cancel()

    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        asyncio.run(open_stream(tls))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
    assert time.monotonic() - started < FAST
    asyncio.run(open_stream(router_tls(pki)))  # the right certificate opens it


async def _status(endpoint: str, tls: ClientTLS) -> spb.StatusResponse:
    remote = RemoteShard([endpoint], tls=tls)
    try:
        return await remote.stubs[0].Status(spb.StatusRequest(), timeout=FAST)
    finally:
        await remote.close()


@pytest.mark.parametrize("flags, says", [
    (["--cert-file", "x.pem"], "--cert-file is set but --key-file is not"),
    (["--trusted-ca-file", "ca.pem"], "--trusted-ca-file needs --cert-file"),
    (["--cert-file", "missing.pem", "--key-file", "missing-key.pem"], "cannot read --cert-file"),
])
def test_shard_tls_flag_errors(tmp_path, flags, says):
    out = subprocess.run([sys.executable, "-m", "kubefabric.cli", "backend-sqlite", "--dsn",
                          f"sqlite://{tmp_path / 'data'}", "--listen-address", "127.0.0.1:0", *flags],
                         capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert out.returncode == 2, out
    assert says in out.stderr + out.stdout and "Traceback" not in out.stderr + out.stdout, out


def test_router_shard_flag_errors(pki, tmp_path):
    out = subprocess.run([sys.executable, "-m", "kubefabric.cli", "serve", "--listen-client-urls",
                          "http://127.0.0.1:0", "--data-dir", str(tmp_path / "d"),
                          "--shard", "grpc://127.0.0.1:1", "--shard-cert-file", str(pki.router.cert_file)],
                         capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert out.returncode == 2, out
    assert "--shard-cert-file is set but --shard-key-file is not" in out.stderr + out.stdout, out


@pytest.mark.parametrize("who", ["no certificate", "wrong server CA", "plaintext"])
def test_router_refused_by_a_shard_stops_at_once(pki, shard, tmp_path, who):
    """`serve` whose TLS settings the shard refuses exits within seconds with a sentence naming
    the TLS handshake (it does not wait 30 s as for a shard that is down)."""
    ca, other = str(pki.ca.cert_file), str(pki.other_ca.cert_file)
    flags = {"no certificate": ["--shard-ca-file", ca],
             "wrong server CA": router_flags(ClientTLS(other, str(pki.router.cert_file), str(pki.router.key_file))),
             "plaintext": []}[who]
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "kubefabric.cli", "serve", "--listen-client-urls",
                          f"http://127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "d"),
                          "--metrics-address", "", "--shard", f"grpc://{shard.endpoint}", *flags],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    took = time.monotonic() - started
    assert out.returncode == 2, out
    assert "TLS handshake" in out.stderr + out.stdout, out
    assert "Traceback" not in out.stderr + out.stdout, out
    assert took < 15, f"gave up only after {took:.1f}s"


def test_router_client_certificate_reloads(pki, shard, tmp_path):
    """The router re-reads its client certificate files when they change: swapped for an expired
    certificate the shard refuses, writes fail; swapped back, they work again, no restart."""
    cert, key = tmp_path / "router.pem", tmp_path / "router-key.pem"

    def install(pair) -> None:
        for src, dst in ((pair.cert_file, cert), (pair.key_file, key)):
            tmp = dst.with_suffix(".new")
            tmp.write_bytes(Path(src).read_bytes())
            tmp.replace(dst)  # atomically, as a Secret volume or cert-manager does
    install(pki.router)
    router = start_router(tmp_path, [shard], extra=router_flags(
        ClientTLS(str(pki.ca.cert_file), str(cert), str(key))))
    client = Client(router.endpoint)
    try:
        assert not isinstance(client.put(b"/rotate/a", b"1"), Failure)
        install(pki.expired_client)
        deadline = time.monotonic() + 20
        while not isinstance(client.call(client.kv.Put, pb.PutRequest(key=b"/rotate/b", value=b"2"), timeout=3), Failure):
            assert time.monotonic() < deadline, "the expired certificate was never used"
            time.sleep(0.5)
        install(pki.router)
        deadline = time.monotonic() + 20
        while isinstance(client.call(client.kv.Put, pb.PutRequest(key=b"/rotate/c", value=b"3"), timeout=3), Failure):
            assert time.monotonic() < deadline, "the renewed certificate was never used"
            time.sleep(0.5)
        assert "TLS files changed" in router.log()
    finally:
        client.close()
        router.stop()


# ---- replica → leader ----

def test_replica_forwards_writes_to_the_leader_over_tls(pki, tmp_path):
    dsn = f"sqlite://{tmp_path / 'data'}"
    tls = router_tls(pki)
    leader = start_shard(tmp_path, "sqlite", dsn, shard_tls_flags(pki.replicas[0], pki.ca),
                         name="leader", tls=tls)
    replica = start_shard(tmp_path, "sqlite", dsn, shard_tls_flags(pki.replicas[1], pki.ca),
                          name="replica", tls=tls, wait=False)
    # a replica that trusts the leader but whose certificate (another CA's) the leader refuses
    other_tls = ClientTLS(str(pki.other_ca.cert_file), str(pki.router.cert_file),
                          str(pki.router.key_file))
    stranger = start_shard(tmp_path, "sqlite", dsn, shard_tls_flags(pki.other_replica, pki.ca),
                           name="stranger", tls=other_tls, wait=False)
    try:
        for s in (replica, stranger):  # started together: the leader is already elected
            wait_shard_ready(s)

        async def run():
            put = spb.PutRequest(put=pb.PutRequest(key=b"/fwd/k", value=b"via replica"))
            async with grpc.aio.secure_channel(replica.endpoint, tls.credentials()) as ch:
                stub = _stub(ch)
                assert (await stub.Status(spb.StatusRequest(), timeout=FAST)).role == "replica"
                written = await stub.Put(put, timeout=FAST)  # only the leader can write: forwarded
            async with grpc.aio.secure_channel(leader.endpoint, tls.credentials()) as ch:
                stub = _stub(ch)
                assert (await stub.Status(spb.StatusRequest(), timeout=FAST)).role == "leader"
                got = await stub.Range(spb.RangeRequest(range=pb.RangeRequest(key=b"/fwd/k")),
                                       timeout=FAST)
            async with grpc.aio.secure_channel(stranger.endpoint, other_tls.credentials()) as ch:
                stub = _stub(ch)
                assert (await stub.Status(spb.StatusRequest(), timeout=FAST)).role == "replica"
                started = time.monotonic()
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.Put(spb.PutRequest(put=pb.PutRequest(key=b"/fwd/no", value=b"x")),
                                   timeout=2 * FAST)
                took = time.monotonic() - started
            return written, got, refused.value, took

        written, got, refused, took = asyncio.run(run())
        assert written.committed_rev > 1
        assert [(kv.key, kv.value, kv.mod_revision) for kv in got.range.kvs] == \
            [(b"/fwd/k", b"via replica", written.put.header.revision)]
        assert refused.code() == grpc.StatusCode.UNAVAILABLE, refused
        assert "not leader" in refused.details(), refused
        assert took < FAST, f"refused only after {took:.1f}s"
    finally:
        for s in (stranger, replica, leader):
            s.stop()


def _stub(channel):
    from kubefabric.proto.kubefabric.shard.v1 import shard_pb2_grpc

    return shard_pb2_grpc.ShardStub(channel)

