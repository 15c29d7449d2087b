"""Start real servers on loopback for tests: the reference etcd and `kubefabric serve`.

Every server gets fresh ports and a fresh data directory, is waited on until it answers
Maintenance.Status, and is killed (and its log printed on failure) at teardown. A missing binary is
an error, never a skip: CI installs them all.
"""
from __future__ import annotations

import concurrent.futures
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from kubefabric.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2, shard_pb2_grpc

from . import zygote
from .topology import topology_yaml
from .waiting import wait_logged

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Every server process of the harness is forked by this one thread, which lives as long as the
# process. PR_SET_PDEATHSIG fires when the *thread* that forked a child ends, not the process:
# a server restarted from a fault-injection thread (threading.Timer) was SIGKILLed the moment
# that thread returned, so "NATS restarted" really meant "NATS down for good".
_SPAWNER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="harness-spawner")
_SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"  # util-linux, in every Debian


def spawn(argv: list[str], **popen_kwargs) -> subprocess.Popen:
    """subprocess.Popen(argv, **popen_kwargs) for a child that gets SIGKILL when this process
    dies (no leaked servers when pytest or a benchmark is killed). setpriv sets the signal
    between fork and exec, so no Python code runs in the child (Python then forks with vfork:
    neither a preexec_fn nor gRPC's fork handlers run in a process with gRPC threads, which
    once made a restarted nats-server die before its exec)."""
    if not os.path.exists(_SETPRIV):
        raise RuntimeError("setpriv is not installed (util-linux): apt-get install util-linux")
    argv = [_SETPRIV, "--pdeathsig", "KILL", "--", *map(str, argv)]
    return _SPAWNER.submit(subprocess.Popen, argv, **popen_kwargs).result()


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, not yet reaped by its parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
    """Send sig (if it still runs), wait up to timeout, then SIGKILL; its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def stop_process_group(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM to the process group of `proc` (started with start_new_session=True), if it still
    runs; SIGKILL to the group after `timeout` seconds."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def log_tail(path: Path, n: int = 40) -> str:
    """The last `n` lines of a log file ("" when it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def etcd_binary() -> str:
    """The reference etcd: $KUBEFABRIC_TEST_ETCD, else Debian's etcd-server (/usr/bin/etcd)."""
    path = os.environ.get("KUBEFABRIC_TEST_ETCD") or shutil.which("etcd")
    if not path:
        raise RuntimeError("etcd is not installed: apt-get install etcd-server (or set KUBEFABRIC_TEST_ETCD)")
    return path


@dataclass
class Server:
    kind: str                 # "etcd" or "kubefabric"
    endpoint: str             # host:port of the etcd v3 API
    proc: subprocess.Popen   # or a harness.zygote.ZygoteProcess (the same interface)
    data_dir: Path
    log_path: Path
    argv: list[str] = field(default_factory=list)
    tls: object = None        # how a client reaches it with TLS: ca_file, cert_file, key_file (a
                              # kubefabric.tls.ClientTLS, say); None: plaintext

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        return stop_process(self.proc, sig, timeout)


def wait_ready(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    channel = grpc.insecure_channel(server.endpoint, options=WAIT_OPTIONS)
    stub = rpc_pb2_grpc.MaintenanceStub(channel)
    try:
        while True:
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.kind} exited with {server.proc.returncode}:\n{server.log()}")
            try:
                stub.Status(rpc_pb2.StatusRequest(), timeout=1)
                return
            except grpc.RpcError as err:
                if err.details() == "etcdserver: user name is empty":
                    return  # auth is enabled (a restored or migrated store): it answered
                if time.monotonic() > deadline:
                    server.stop()   # nobody else holds it: it must not outlive the failure
                    raise RuntimeError(f"{server.kind} not ready after {timeout}s:\n{server.log()}")
                time.sleep(0.05)
    finally:
        channel.close()


@functools.cache
def etcd37_binary() -> str:
    """etcd v3.7.3 (newer behaviour, e.g. KV.RangeStream): $KUBEFABRIC_TEST_ETCD37, else built
    once by ../shared/tools/etcd/build.sh (cached in ~/.cache/kubefabric-tools)."""
    if path := os.environ.get("KUBEFABRIC_TEST_ETCD37"):
        return path
    script = REPO.parent / "shared" / "tools" / "etcd" / "build.sh"
    if not script.exists():
        raise RuntimeError(f"{script} is missing: etcd 3.7.3 cannot be built (set KUBEFABRIC_TEST_ETCD37)")
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"building etcd 3.7.3 failed:\n{out.stderr[-3000:]}")
    return str(Path(out.stdout.strip().splitlines()[-1]) / "etcd")


@functools.cache
def etcdutl_binary() -> str:
    """etcdutl v3.7.3 (snapshot status and restore): $KUBEFABRIC_TEST_ETCDUTL, else built once
    by tests/tools/etcdutl/build.sh (cached next to etcd 3.7.3)."""
    if path := os.environ.get("KUBEFABRIC_TEST_ETCDUTL"):
        return path
    out = subprocess.run(["bash", str(REPO / "tests" / "tools" / "etcdutl" / "build.sh")],
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"building etcdutl 3.7.3 failed:\n{out.stderr[-3000:]}")
    return out.stdout.strip().splitlines()[-1]


def etcdctl37_binary() -> str:
    """etcdctl v3.7.3, built with etcd 3.7.3 (etcd37_binary)."""
    return str(Path(etcd37_binary()).parent / "etcdctl")


def start_etcd(workdir: Path, extra: list[str] | None = None, binary: str | None = None) -> Server:
    client, peer = free_port(), free_port()
    data = workdir / "etcd-data"
    log = workdir / "etcd.log"
    argv = [binary or etcd_binary(), "--name", "default", "--data-dir", str(data),
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer}",
            "--log-level", "error", *(extra or [])]
    proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    server = Server("etcd", f"127.0.0.1:{client}", proc, data, log, argv)
    wait_ready(server)
    return server


def start_kubefabric_tls(workdir: Path, flags: list[str], plain_port: int | None = None) -> Server:
    """`kubefabric serve` on https://127.0.0.1:<free port> (plus http:// on plain_port); flags:
    its TLS flags (--cert-file, ...)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    urls = f"https://127.0.0.1:{port}" + (f",http://127.0.0.1:{plain_port}" if plain_port else "")
    log = workdir / "kubefabric.log"
    argv = [sys.executable, "-m", "kubefabric.cli", "serve", "--listen-client-urls", urls,
            "--data-dir", str(workdir / "data"), *flags]
    proc = zygote.popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=workdir)
    server = Server("kubefabric", f"127.0.0.1:{port}", proc, workdir / "data", log, argv)
    deadline = time.monotonic() + 20
    while "serving the etcd v3 API" not in server.log():
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"kubefabric did not start (exit {proc.returncode}):\n{server.log()}")
        time.sleep(0.05)
    return server


def start_kubefabric(workdir: Path, extra: list[str] | None = None, data_dir: Path | None = None) -> Server:
    client = free_port()
    data = data_dir or workdir / "kf-data"
    log = workdir / "kubefabric.log"
    argv = [sys.executable, "-m", "kubefabric.cli", "serve",
            "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--data-dir", str(data), *(extra or [])]
    proc = zygote.popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=workdir)
    server = Server("kubefabric", f"127.0.0.1:{client}", proc, data, log, argv)
    wait_ready(server)
    return server


def start_kubefabric_workers(workdir: Path, extra: list[str] | None = None) -> Server:
    """`kubefabric serve --workers 2`: the writer process and one worker on the same port."""
    return start_kubefabric(workdir, ["--workers", "2", *(extra or [])])


START = {"etcd": start_etcd, "kubefabric": start_kubefabric, "kubefabric-w2": start_kubefabric_workers,
         "etcd37": lambda workdir, extra=None: start_etcd(workdir, extra, etcd37_binary())}


# ---- shard services and a router in front of them ----

# The three-shard topology of the routing tests (issue 4): the router's embedded SQLite shard is
# the default, PostgreSQL holds the pods of namespace tenant-a, MariaDB holds events.
THREE_SHARDS_SHARDS = {"main": "embedded", "tenants": "grpc://{tenants}", "events": "grpc://{events}"}
THREE_SHARDS_RULES = [{"namespace": "tenant-a", "resources": ["pods"], "shard": "tenants"},
                      {"prefix": "/registry/events/", "shard": "events"}]
THREE_SHARDS = topology_yaml(THREE_SHARDS_SHARDS, THREE_SHARDS_RULES, default="main")

# THREE_SHARDS with every shard a service, for a watch-hub (which follows shard services only):
# main is a SQLite shard service, tenants two replicas on one PostgreSQL database (leader
# failover), events on MariaDB.
HUB_THREE_SHARDS = THREE_SHARDS.replace("endpoint: embedded", "endpoint: grpc://{main}")

SHARD_COMMANDS = {"sqlite": "backend-sqlite", "postgres": "backend-pg", "mariadb": "backend-mysql"}
# flags of `kubefabric serve` that the shard core applies, so a routed setup gets them too
SHARD_FLAGS = ("--max-txn-ops", "--quota-backend-bytes", "--max-request-bytes")


# flags of `kubefabric serve` that a watch-hub applies (with --watch-hub the router does not)
HUB_FLAGS = ("--watch-progress-notify-interval", "--watch-stream-buffer-bytes",
             "--max-watchers-per-stream")


def shard_flags(extra: list[str], names: tuple[str, ...] = SHARD_FLAGS) -> list[str]:
    """The flags among `extra` (a router's) named in `names`, with their values."""
    out = []
    for i, arg in enumerate(extra):
        name = arg.split("=", 1)[0]
        if name in names:
            out.append(arg)
            if "=" not in arg and i + 1 < len(extra):
                out.append(extra[i + 1])
    return out


def hub_flags(extra: list[str]) -> list[str]:
    return shard_flags(extra, HUB_FLAGS)


# Waiting for a server that is still starting: grpc's reconnect backoff grows to minutes, so a
# server that took 20 s to start on a loaded machine would be seen tens of seconds late.
WAIT_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 500)]


def client_channel(endpoint: str, tls=None, options: list | None = None) -> grpc.Channel:
    """A (blocking) channel to `endpoint`: plaintext, or TLS with `tls`'s ca_file, cert_file,
    key_file (client certificate) and server_name (all optional)."""
    options = list(options or [])
    if tls is None:
        return grpc.insecure_channel(endpoint, options=options)

    def read(path):
        return Path(path).read_bytes() if path else None
    creds = grpc.ssl_channel_credentials(read(tls.ca_file), read(getattr(tls, "key_file", None)),
                                         read(getattr(tls, "cert_file", None)))
    name = getattr(tls, "server_name", None)
    return grpc.secure_channel(endpoint, creds,
                               options=options + ([("grpc.ssl_target_name_override", name)] if name else []))


def wait_log(server: Server, text: str, timeout: float = 30.0) -> str:
    """Until `text` is in the server's log (which is returned); fails if it exits first."""
    return wait_logged(text, server.log, server.proc, server.kind, timeout)


def wait_shard_ready(server: Server, timeout: float = 60.0, tls=None) -> None:
    """Until the replica's readiness health check says SERVING (database up, role known). tls
    (default: server.tls): how to reach a shard service that serves TLS (see client_channel)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with client_channel(server.endpoint, tls or getattr(server, "tls", None), WAIT_OPTIONS) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.kind} exited with {server.proc.returncode}:\n{server.log()}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(service="readiness"), timeout=1).status == \
                        health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.kind} not ready after {timeout}s:\n{server.log()}")
            time.sleep(0.05)


def start_shard(workdir: Path, kind: str, dsn: str, extra: list[str] | None = None,
                name: str = "shard", wait: bool = True, port: int | None = None,
                tls=None) -> Server:
    """One replica of a shard service (kind: sqlite, postgres or mariadb) on `dsn` (on `port`, to
    restart a replica where its router expects it). tls: how clients reach it when `extra` gives
    it --cert-file etc. (ca_file, cert_file, key_file: see client_channel); kept as server.tls."""
    port = port or free_port()
    log = workdir / f"{name}-{port}.log"
    argv = [sys.executable, "-m", "kubefabric.cli", SHARD_COMMANDS[kind], "--dsn", dsn,
            "--listen-address", f"127.0.0.1:{port}", "--name", name, *(extra or [])]
    proc = zygote.popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=workdir)
    server = Server(f"{SHARD_COMMANDS[kind]}", f"127.0.0.1:{port}", proc, workdir, log, argv, tls)
    if wait:
        wait_shard_ready(server)
    return server


def start_hub(workdir: Path, nats_url: str, shards: list[Server] | None = None,
              topology: Path | None = None, shard_name: str = "shard", port: int | None = None,
              extra: list[str] | None = None, wait: bool = True) -> Server:
    """`kubefabric watch-hub` following the given replicas (named shard_name) or a topology."""
    port = port or free_port()
    log = workdir / f"hub-{port}.log"
    target = ["--topology", str(topology)] if topology else [
        "--shard", ",".join(f"grpc://{s.endpoint}" for s in shards), "--shard-name", shard_name]
    argv = [sys.executable, "-m", "kubefabric.cli", "watch-hub", "--nats-url", nats_url,
            "--listen-address", f"127.0.0.1:{port}", "--metrics-address", "", *target, *(extra or [])]
    proc = zygote.popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=workdir)
    server = Server("watch-hub", f"127.0.0.1:{port}", proc, workdir, log, argv)
    if wait:
        wait_shard_ready(server)
    return server


def start_router(workdir: Path, shards: list[Server] | None = None, extra: list[str] | None = None,
                 topology: Path | None = None) -> Server:
    """`kubefabric serve --shard ...` in front of the given replicas, or `--topology FILE`."""
    client = free_port()
    log = workdir / "router.log"
    target = ["--topology", str(topology)] if topology else [
        "--shard", ",".join(f"grpc://{s.endpoint}" for s in shards)]
    argv = [sys.executable, "-m", "kubefabric.cli", "serve",
            "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--data-dir", str(workdir / "router-data"), *target, *(extra or [])]
    proc = zygote.popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=workdir)
    server = Server("kubefabric", f"127.0.0.1:{client}", proc, workdir, log, argv)
    wait_ready(server)
    return server


def shard_role(endpoint: str, timeout: float = 2.0) -> str:
    """A shard service replica's role ("leader", "replica", ...) from its Status call; "down"
    when it does not answer within `timeout`."""
    with grpc.insecure_channel(endpoint) as ch:
        try:
            return shard_pb2_grpc.ShardStub(ch).Status(shard_pb2.StatusRequest(), timeout=timeout).role
        except grpc.RpcError:
            return "down"
