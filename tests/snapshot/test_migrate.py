"""`kubefabric migrate` (issue 20 point 3): etcd 3.7.3 -> `etcdctl snapshot save` -> migrate ->
KubeFabric serves the same keys with the same create/mod revisions, versions, history above
the compaction point and lease as etcd did, and goes on from etcd's revision; then back:
KubeFabric's Maintenance.Snapshot -> `etcdutl snapshot restore` -> a real etcd again.

Embedded (one SQLite shard: HashKV equal to etcd's, so every imported row is etcd's) and into
a topology of three shards (SQLite embedded, PostgreSQL and MariaDB shard services), where each
key lands on the shard its rule picks. Bad files are refused with one line, nothing written.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import subprocess
import sys
import time

from pathlib import Path

import grpc
import pytest

from harness.certs import CA

from harness.client import Client
from harness.servers import (THREE_SHARDS, etcd37_binary, etcdctl37_binary, etcdutl_binary, free_port, start_kubefabric,
                             start_router, start_shard)
from harness.snapshots import (KEYS, LEASE, LEASED, hash_kv, kvs, ok, put_op, restore, run, same_history,
                               save, write_history)
from kubefabric.proto.authpb import auth_pb2 as authpb
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.etcdserverpb import rpc_pb2_grpc as rpc
from kubefabric.proto.mvccpb.kv_pb2 import KeyValue
from kubefabric.snapshot import schema, take
from kubefabric.snapshot.load import open_snapshot

MIGRATE = [sys.executable, "-m", "kubefabric.cli", "migrate"]


@pytest.fixture
def etcd_snapshot(server_factory, tmp_path):
    """(etcd 3.7.3 with write_history, its client, compact revision, head, the saved file)."""
    etcd = server_factory("etcd37")
    e = Client(etcd.endpoint)
    compact = write_history(e)
    head = kvs(e)[0]
    path = tmp_path / "etcd.db"
    assert save(etcd.endpoint, path)["revision"] == head
    yield e, compact, head, path
    e.close()


def test_etcd_to_kubefabric_and_back(etcd_snapshot, tmp_path):
    e, compact, head, path = etcd_snapshot
    run(*MIGRATE, path, "--data-dir", tmp_path / "kf-data")
    workdir = tmp_path / "kf"
    workdir.mkdir()
    kf = start_kubefabric(workdir, data_dir=tmp_path / "kf-data")
    k = Client(kf.endpoint)
    back = None
    try:
        same_history(e, k, compact, head)
        assert hash_kv(k, head) == hash_kv(e, head)  # every imported row, as etcd hashes them
        # writes go on from etcd's revision, on an imported key as on a new one
        for c in (e, k):
            assert ok(c.put(KEYS[0], b"after")).header.revision == head + 1
        assert kvs(k, head + 1) == kvs(e, head + 1)
        # and back to etcd through KubeFabric's snapshot
        save(kf.endpoint, tmp_path / "kf.db")
        back = restore(tmp_path / "kf.db", tmp_path / "back")
        b = Client(back.endpoint)
        same_history(e, b, compact, head + 1)
        b.close()
    finally:
        k.close()
        kf.stop()
        if back:
            back.stop()


def test_etcd_to_a_topology(etcd_snapshot, server_factory, tmp_path):
    e, compact, head, path = etcd_snapshot
    d = tmp_path / "topology"
    d.mkdir()
    dsns = {"tenants": server_factory.database("postgres"), "events": server_factory.database("mariadb")}
    ports = {name: free_port() for name in dsns}
    topology = d / "topology.yaml"
    topology.write_text(THREE_SHARDS.format(tenants=f"127.0.0.1:{ports['tenants']}",
                                            events=f"127.0.0.1:{ports['events']}"))
    # the router's embedded shard lives under its --data-dir (harness.servers.start_router)
    run(*MIGRATE, path, "--data-dir", d / "router-data", "--topology", topology,
        "--shard-dsn", ",".join(f"{n}={dsn}" for n, dsn in dsns.items()))
    started = []
    try:
        for name, kind in (("tenants", "postgres"), ("events", "mariadb")):
            started.append(start_shard(d, kind, dsns[name], name=name, port=ports[name]))
        router = start_router(d, topology=topology)
        started.append(router)
        k = Client(router.endpoint)
        # the router reads each key from the shard its rule picks: a key imported elsewhere
        # would be missing here
        same_history(e, k, compact, head)
        assert ok(k.put(KEYS[1], b"after")).header.revision == head + 1  # on the tenants shard
        k.close()
    finally:
        for s in reversed(started):
            s.stop()


def _file(tmp_path, sha: bool = False):
    """A small snapshot written by KubeFabric's own writer (with etcd's SHA-256 appended)."""
    contents = schema.Contents(4, -1)
    contents.buckets = {name: [] for name in schema.ALL_BUCKETS}
    contents.buckets[schema.KEY] = [
        (schema.rev_key(i + 2, 0), KeyValue(key=b"k%d" % i, create_revision=i + 2, mod_revision=i + 2,
                                            version=1, value=b"v").SerializeToString())
        for i in range(3)]
    contents.buckets[schema.META] = schema.meta_entries(4, -1, 2)
    path = tmp_path / "small.db"
    with open(path, "w+b") as f:
        take.write(contents, f)
    if sha:
        data = path.read_bytes()
        path.write_bytes(data + hashlib.sha256(data).digest())
    return path


def _damaged(path, damage: str) -> None:
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        del data[5000:]
    elif damage == "meta checksums":  # a byte of both meta pages' fields
        data[40] ^= 1  # the root bucket's page id
        data[4096 + 40] ^= 1
    elif damage == "sha256":
        data[3 * 4096 + 100] ^= 1
    else:
        data[:] = b"hello\n" * 2000
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage,message", [
    ("truncated", "cut short"),
    ("meta checksums", "both meta pages are unusable: meta page checksum mismatch"),
    ("sha256", "SHA-256 mismatch"),
    ("text", "not a bbolt file"),
])
def test_bad_files_are_refused_with_one_line(tmp_path, damage, message):
    path = _file(tmp_path, sha=damage == "sha256")
    _damaged(path, damage)
    p = run(*MIGRATE, path, "--data-dir", tmp_path / "target", ok_rc=False)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    errors = [line for line in p.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and message in errors[0], p.stderr
    assert not (tmp_path / "target").exists()  # nothing written


def test_reader_reads_what_the_writer_wrote(tmp_path):
    """The bbolt writer and reader agree, and the file is etcd's (etcdutl snapshot status)."""
    path = _file(tmp_path, sha=True)
    snap = open_snapshot(path)
    try:
        assert [(c.rev, c.key, c.deleted) for c in snap.changes()] == [(2, b"k0", False), (3, b"k1", False),
                                                                       (4, b"k2", False)]
        assert (snap.revision, snap.compact_rev, snap.changes_count) == (4, -1, 3)
    finally:
        snap.close()
    status = json.loads(run(etcdutl_binary(), "snapshot", "status", path, "-w", "json").stdout)
    assert (status["revision"], status["totalKey"]) == (4, 3)


@contextlib.contextmanager
def live_migration(args: list, log: Path):
    """`migrate --from-etcd` with `args`, once it logs that it follows etcd's changes live (60 s
    at most); killed on the way out if it still runs."""
    proc = subprocess.Popen([*MIGRATE, "--from-etcd", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=log.open("wb"))
    try:
        deadline = time.monotonic() + 60
        while "caught up" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()


def stop_migration(proc: subprocess.Popen, log: Path, sig: int, head: int) -> None:
    """`sig` ends a live migration cleanly, with etcd's revision of that moment imported."""
    proc.send_signal(sig)
    assert proc.wait(60) == 0, log.read_text()
    assert f"imported up to revision {head}" in log.read_text()


def test_from_a_live_etcd_until_stopped(etcd_snapshot, tmp_path):
    """--from-etcd: etcd's history, then changes made while it follows, then SIGTERM: the
    import ends at etcd's revision of that moment."""
    e, compact, head, _ = etcd_snapshot
    log = tmp_path / "migrate.log"
    with live_migration([f"http://{e.endpoint}", "--data-dir", tmp_path / "kf-data"], log) as proc:
        ok(e.put(b"/registry/configmaps/default/followed", b"1", lease=LEASE))
        ok(e.txn(success=[put_op(KEYS[0], b"in a txn"), put_op(KEYS[2], b"in a txn")]))
        ok(e.delete(KEYS[1]))
        head = ok(e.put(KEYS[1], b"re-created")).header.revision
        stop_migration(proc, log, signal.SIGTERM, head)
    workdir = tmp_path / "kf"
    workdir.mkdir()
    kf = start_kubefabric(workdir, data_dir=tmp_path / "kf-data")
    k = Client(kf.endpoint)
    try:
        leased = sorted([*LEASED, b"/registry/configmaps/default/followed"])
        same_history(e, k, compact, head, leased)
        assert hash_kv(k, head) == hash_kv(e, head)
        assert ok(k.put(b"/next", b"1")).header.revision == head + 1
    finally:
        k.close()
        kf.stop()


def start_tls_etcd(workdir: Path, ca: CA):
    """etcd 3.7.3 serving https:// and requiring client certificates signed by `ca`, as a
    kube-apiserver's etcd usually does; (process, endpoint, client certificate pair)."""
    server = ca.issue("etcd", workdir, server=True)
    client, peer = free_port(), free_port()
    proc = subprocess.Popen(
        [etcd37_binary(), "--data-dir", str(workdir / "etcd-data"), "--log-level", "error",
         "--listen-client-urls", f"https://127.0.0.1:{client}",
         "--advertise-client-urls", f"https://127.0.0.1:{client}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"default=http://127.0.0.1:{peer}",
         "--cert-file", str(server.cert_file), "--key-file", str(server.key_file),
         "--trusted-ca-file", str(ca.cert_file), "--client-cert-auth"],
        stdout=subprocess.DEVNULL, stderr=(workdir / "etcd.log").open("wb"))
    return proc, f"127.0.0.1:{client}", ca.issue("migrate", workdir)


def test_from_an_etcd_with_client_certificates(tmp_path):
    ca = CA.new("etcd-ca", tmp_path)
    proc, endpoint, pair = start_tls_etcd(tmp_path, ca)
    creds = grpc.ssl_channel_credentials(ca.pair.cert_pem, pair.key_pem, pair.cert_pem)
    channel = grpc.secure_channel(endpoint, creds)
    kv = rpc.KVStub(channel)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                head = kv.Put(pb.PutRequest(key=b"/registry/a", value=b"1"), timeout=2).header.revision
                break
            except grpc.RpcError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "etcd.log").read_text()
                time.sleep(0.2)
        url = f"https://{endpoint}"
        refused = run(*MIGRATE, "--from-etcd", url, "--from-etcd-ca-file", ca.cert_file,
                      "--from-etcd-cert-file", pair.cert_file, "--data-dir", tmp_path / "x", ok_rc=False)
        assert refused.returncode == 2 and "give both" in refused.stderr, refused.stderr
        log = tmp_path / "migrate.log"
        with live_migration([url, "--from-etcd-ca-file", ca.cert_file, "--from-etcd-cert-file", pair.cert_file,
                             "--from-etcd-key-file", pair.key_file, "--data-dir", tmp_path / "kf-data"],
                            log) as migrate:
            head = kv.Put(pb.PutRequest(key=b"/registry/b", value=b"2"), timeout=5).header.revision
            stop_migration(migrate, log, signal.SIGINT, head)
    finally:
        channel.close()
        proc.terminate()
        proc.wait(20)


def test_auth_store_goes_both_ways(server_factory, tmp_path):
    """Users (bcrypt hashes), roles and the enabled flag: etcd -> snapshot -> migrate ->
    KubeFabric enforces them; KubeFabric's snapshot -> etcdutl restore -> etcd enforces them."""
    etcd = server_factory("etcd37")
    e = Client(etcd.endpoint)
    for req in (pb.AuthUserAddRequest(name="root", password="rootpw"),
                pb.AuthRoleAddRequest(name="root"),
                pb.AuthUserGrantRoleRequest(user="root", role="root"),
                pb.AuthUserAddRequest(name="alice", password="alicepw"),
                pb.AuthRoleAddRequest(name="reader"),
                pb.AuthRoleGrantPermissionRequest(name="reader", perm=authpb.Permission(
                    permType=authpb.Permission.READ, key=b"/registry/", range_end=b"/registry0")),
                pb.AuthUserGrantRoleRequest(user="alice", role="reader")):
        ok(e.call(getattr(e.auth, type(req).__name__.removeprefix("Auth").removesuffix("Request")), req))
    ok(e.put(b"/registry/a", b"1"))
    ok(e.call(e.auth.AuthEnable, pb.AuthEnableRequest()))
    path = tmp_path / "etcd.db"
    run(etcdctl37_binary(), f"--endpoints={etcd.endpoint}", "--user", "root:rootpw", "snapshot", "save", path)
    run(*MIGRATE, path, "--data-dir", tmp_path / "kf-data")
    workdir = tmp_path / "kf"
    workdir.mkdir()
    kf = start_kubefabric(workdir, data_dir=tmp_path / "kf-data")
    back = None
    try:
        enforced(kf.endpoint)
        run(etcdctl37_binary(), f"--endpoints={kf.endpoint}", "--user", "root:rootpw", "snapshot", "save",
            tmp_path / "kf.db")
        back = restore(tmp_path / "kf.db", tmp_path / "back")
        enforced(back.endpoint)
    finally:
        e.close()
        kf.stop()
        if back:
            back.stop()


def enforced(endpoint: str) -> None:
    """Auth is on, alice reads with her password and may not write, a wrong password fails."""
    c = Client(endpoint)
    try:
        assert c.get(b"/registry/a").details == "etcdserver: user name is empty"
        assert c.call(c.auth.Authenticate, pb.AuthenticateRequest(name="alice", password="nope")).details == \
            "etcdserver: authentication failed, invalid user ID or password"
        token = ok(c.call(c.auth.Authenticate, pb.AuthenticateRequest(name="alice", password="alicepw"))).token
        md = [("token", token)]
        assert c.kv.Range(pb.RangeRequest(key=b"/registry/a"), metadata=md, timeout=10).kvs[0].value == b"1"
        with pytest.raises(grpc.RpcError) as err:
            c.kv.Put(pb.PutRequest(key=b"/registry/a", value=b"2"), metadata=md, timeout=10)
        assert err.value.details() == "etcdserver: permission denied"
    finally:
        c.close()
