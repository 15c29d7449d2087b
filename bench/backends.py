"""Shard-service server kinds for bench/run.py: kv-router in front of a shard service.

    kf-sqlite-svc   kubefabric backend-sqlite (a SQLite file, synchronous=FULL)
    kf-pg           kubefabric backend-pg on a private PostgreSQL 15 (fsync on)
    kf-mysql        kubefabric backend-mysql on a private MariaDB (innodb_flush_log_at_trx_commit=1)

each with `kubefabric serve --shard grpc://...` in front; `<kind>-nogc` runs the shard service with
`--group-commit false` (one database transaction per write), `<kind>-w2` the router with
`--workers 2` (two kv-router processes on its port). A stack has the surface run.py uses
for a server (kind, endpoint, alive(), log_tail(), stop()).

    kf-hub          kf-sqlite-svc with the NATS watch path (run.py --watch): a nats-server with
                    JetStream, the shard service publishing to it (--nats-url), a `kubefabric
                    watch-hub` following it, and `kubefabric serve --shard ... --watch-hub ...`
                    serving etcd watches from the hub (kf-sqlite-svc: the router follows the
                    shard's Feed RPC itself)

start_sharded(n) (run.py --shards): n shard services, each on a database of its own, behind one
`kubefabric serve --topology FILE` whose prefix rules spread the SHARD_PREFIXES evenly over them.

PostgreSQL and MariaDB come from the test harness (tests/harness/postgres.py, mariadb.py): one
server of each per run, started on first use, with a fresh database per stack (dropped when the
stack stops); cleanup() removes the servers and their data. Needs the uv environment (grpc,
pymysql), unlike run.py itself.
"""
from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.servers import free_port, spawn as spawn_process, wait_ready, wait_shard_ready

REPO = Path(__file__).resolve().parents[1]

NOGC = "-nogc"
DATABASES = {"kf-sqlite-svc": "sqlite", "kf-pg": "postgres", "kf-mysql": "mariadb"}
SHARD_COMMANDS = {"sqlite": "backend-sqlite", "postgres": "backend-pg", "mariadb": "backend-mysql"}
ROUTER_W2 = "-w2"
KINDS = tuple(k + s for k in DATABASES for s in ("", NOGC, ROUTER_W2)) + ("kf-hub",)
# every shard service opens its batch lane, as deploy/ has them (kubefabric.shardsvc.lane)
LANE = ("--lane-address", "127.0.0.1:0")
DB_SERVERS = {"postgres": None, "mariadb": None}  # the running database servers, by kind

_names = itertools.count()


def split_kind(kind: str) -> tuple[str, bool]:
    """'kf-pg-nogc' -> ('postgres', False): the database kind and whether group commit is on."""
    base = kind.removesuffix(NOGC)
    return DATABASES[base], not kind.endswith(NOGC)


# ------------------------------------------------------------------------------- processes



@dataclass
class Proc:
    """One process of a stack; `log()`, `proc`, `endpoint`, `kind` as the harness' waiters expect."""
    kind: str
    endpoint: str
    proc: subprocess.Popen
    log_path: Path
    tls: object = None  # plaintext (the harness' waiters read server.tls)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 12.0) -> None:
        """SIGTERM its process group, SIGKILL after `timeout` (its --shutdown-grace is 10 s)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                return
            if sig == signal.SIGKILL:
                print(f"{self.kind} {self.endpoint} did not stop within {timeout:.0f}s of SIGTERM: "
                      f"killed; its log ends:\n{self.log()[-1500:]}", file=sys.stderr)
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                continue


def spawn(kind: str, args: list[str], port: int, workdir: Path, argv0: list[str] | None = None) -> Proc:
    """`python -m kubefabric.cli ARGS` (or `argv0 ARGS`) in its own session, without KUBEFABRIC_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEFABRIC_")}
    log_path = workdir / f"{kind}.log"
    argv0 = argv0 or [sys.executable, "-m", "kubefabric.cli"]
    proc = spawn_process([*argv0, *args], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                         stdout=log_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    return Proc(kind, f"127.0.0.1:{port}", proc, log_path)


def nats_server_binary() -> str:
    """nats-server from PATH, else Debian's /usr/sbin/nats-server (sbin is not on every PATH)."""
    path = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/local/sbin")
    if not path:
        raise RuntimeError("nats-server is not installed (apt-get install nats-server)")
    return path


def wait_nats_ready(nats: Proc, timeout: float) -> None:
    """Until nats-server's log says it is ready (JetStream enabled before that) and its port accepts."""
    deadline = time.monotonic() + timeout
    while True:
        if nats.proc.poll() is not None:
            raise RuntimeError(f"nats-server exited with {nats.proc.returncode}:\n{nats.log()[-2000:]}")
        if "Server is ready" in nats.log():
            try:
                host, port = nats.endpoint.rsplit(":", 1)
                socket.create_connection((host, int(port)), timeout=1).close()
                return
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nats-server not ready after {timeout:.0f}s:\n{nats.log()[-2000:]}")
        time.sleep(0.05)


# ------------------------------------------------------------------------------- databases

def database_server(db: str):
    """The run's PostgreSQL or MariaDB server, started on first use."""
    if DB_SERVERS.get(db) is None:
        if db == "postgres":
            from harness.postgres import PostgresServer as server_class
        else:
            from harness.mariadb import MariadbServer as server_class
        DB_SERVERS[db] = server_class()  # registered first: cleanup() removes a half-started one
        DB_SERVERS[db].start()
    return DB_SERVERS[db]


def fresh_dsn(db: str, workdir: Path) -> tuple[str, str]:
    """(dsn, database name) of a new, empty database of kind `db`."""
    if db == "sqlite":
        return f"sqlite://{workdir / 'shard'}", ""
    name = f"bench_{os.getpid()}_{next(_names)}"
    server = database_server(db)
    server.create_database(name)
    return server.dsn(name), name


def drop_database(db: str, name: str) -> None:
    server = DB_SERVERS.get(db)
    if name and server is not None:
        try:
            server.drop_database(name)
        except Exception as exc:  # a database left behind goes with the server at cleanup()
            print(f"dropping {name}: {exc}", file=sys.stderr)


def cleanup() -> None:
    """Stop the database servers and delete their data."""
    for db, server in list(DB_SERVERS.items()):
        if server is None:
            continue
        DB_SERVERS[db] = None
        if db == "postgres":
            server.remove()
        else:
            server.stop()
            server.cleanup()


# ---------------------------------------------------------------------------------- stacks

@dataclass
class Stack:
    kind: str
    endpoint: str
    workdir: Path
    db: str
    database: str = ""
    procs: list[Proc] = field(default_factory=list)  # shard service(s) first, router last
    databases: list[str] = field(default_factory=list)  # start_sharded: one per shard service

    def alive(self) -> bool:
        return all(p.proc.poll() is None for p in self.procs)

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(f"--- {p.kind}\n" + "\n".join(p.log().splitlines()[-n:]) for p in self.procs)

    def pids(self) -> dict[str, int]:
        return {p.kind: p.proc.pid for p in self.procs}

    def database_pid(self) -> int | None:
        """The PostgreSQL postmaster / mariadbd this stack's databases are on (None: SQLite)."""
        server = DB_SERVERS.get(self.db)
        proc = getattr(server, "proc", None)
        return proc.pid if proc is not None else None

    def stop(self) -> None:
        """Router first, then the shard service, then drop the database and remove the files."""
        for p in reversed(self.procs):
            p.stop()
        for name in [self.database, *self.databases]:
            drop_database(self.db, name)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_stack(kind: str, live: list, ready_timeout: float = 60.0,
                shard_args: tuple[str, ...] = ()) -> Stack:
    """A shard service (with `shard_args`) on a fresh database and a router in front; appended to
    `live` at once, so an interrupted start is cleaned up too."""
    if kind == "kf-hub":
        return start_hub_stack(live, ready_timeout)
    db, group_commit = split_kind(kind.removesuffix(ROUTER_W2))
    workers = ["--workers", "2"] if kind.endswith(ROUTER_W2) else []
    workdir = Path(tempfile.mkdtemp(prefix=f"kf-bench-{kind}-"))
    stack = Stack(kind, "", workdir, db)
    live.append(stack)
    dsn, stack.database = fresh_dsn(db, workdir)
    shard_port, client_port = free_port(), free_port()
    shard = spawn("shard", [SHARD_COMMANDS[db], "--dsn", dsn, "--listen-address", f"127.0.0.1:{shard_port}",
                            *LANE, "--group-commit", str(group_commit).lower(), *shard_args], shard_port, workdir)
    stack.procs.append(shard)
    wait_shard_ready(shard, ready_timeout)
    router = spawn("router", ["serve", "--listen-client-urls", f"http://127.0.0.1:{client_port}",
                              "--shard", f"grpc://{shard.endpoint}", *workers], client_port, workdir)
    stack.procs.append(router)
    wait_ready(router, ready_timeout)
    stack.endpoint = router.endpoint
    return stack


# ------------------------------------------------------------------------- sharded stacks

# The --shards load writes under these prefixes (loadgen --prefixes; key i under prefix i mod 6).
# Six, so that prefix k -> shard k mod n spreads the keys evenly for n = 1, 2, 3 (and 6): the
# load and the number of topology rules are the same whatever n is.
SHARD_PREFIXES = tuple(f"/bench/p{k}/" for k in range(6))


def topology_yaml(endpoints: list[str]) -> str:
    """Shards s0..s{n-1} at `endpoints`; SHARD_PREFIXES[k] -> s{k mod n}; default s0."""
    n = len(endpoints)
    lines = ["default: s0", "shards:"]
    lines += [f"  - name: s{i}\n    endpoint: grpc://{ep}" for i, ep in enumerate(endpoints)]
    lines.append("rules:")
    lines += [f"  - prefix: {p}\n    shard: s{k % n}" for k, p in enumerate(SHARD_PREFIXES)]
    return "\n".join(lines) + "\n"


def start_sharded(n: int, live: list, ready_timeout: float = 60.0, db: str = "sqlite",
                  kind: str | None = None) -> Stack:
    """n shard services (`db`: sqlite, postgres or mariadb; group commit on), each on a fresh
    database, and one router with a topology over them; appended to `live` at once."""
    kind = kind or f"shards-{n}"
    workdir = Path(tempfile.mkdtemp(prefix=f"kf-bench-{kind}-"))
    stack = Stack(kind, "", workdir, db)
    live.append(stack)
    shards = []
    for i in range(n):
        shard_dir = workdir / f"s{i}"
        shard_dir.mkdir()
        dsn, database = fresh_dsn(db, shard_dir)
        if database:
            stack.databases.append(database)
        port = free_port()
        shard = spawn(f"shard-s{i}", [SHARD_COMMANDS[db], "--dsn", dsn, "--name", f"s{i}",
                                      "--listen-address", f"127.0.0.1:{port}", *LANE], port, workdir)
        stack.procs.append(shard)
        shards.append(shard)
    for shard in shards:  # started together, waited for together: n shards start in about the time of one
        wait_shard_ready(shard, ready_timeout)
    topology = workdir / "topology.yaml"
    topology.write_text(topology_yaml([s.endpoint for s in shards]))
    client_port = free_port()
    router = spawn("router", ["serve", "--listen-client-urls", f"http://127.0.0.1:{client_port}",
                              "--data-dir", str(workdir / "router"), "--topology", str(topology)],
                   client_port, workdir)
    stack.procs.append(router)
    wait_ready(router, ready_timeout)
    stack.endpoint = router.endpoint
    return stack


# ---------------------------------------------------------------------- the NATS watch path

def start_hub_stack(live: list, ready_timeout: float = 60.0, kind: str = "kf-hub") -> Stack:
    """nats-server (JetStream, store in the stack's directory), `backend-sqlite --nats-url`
    publishing the shard's events to it, `watch-hub` following the shard's stream, and
    `serve --shard ... --watch-hub ...` in front; appended to `live` at once. Processes in start
    order (stop() goes router, hub, shard, nats-server)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"kf-bench-{kind}-"))
    stack = Stack(kind, "", workdir, "sqlite")
    live.append(stack)
    nats_port, shard_port, hub_port, client_port = free_port(), free_port(), free_port(), free_port()
    nats = spawn("nats", ["--jetstream", "--store_dir", str(workdir / "jetstream"), "--addr", "127.0.0.1",
                          "--port", str(nats_port)], nats_port, workdir, argv0=[nats_server_binary()])
    stack.procs.append(nats)
    wait_nats_ready(nats, ready_timeout)
    nats_url = f"nats://{nats.endpoint}"
    shard = spawn("shard", ["backend-sqlite", "--name", "default", "--dsn", f"sqlite://{workdir / 'shard'}",
                            "--listen-address", f"127.0.0.1:{shard_port}", *LANE, "--nats-url", nats_url],
                  shard_port, workdir)
    stack.procs.append(shard)
    wait_shard_ready(shard, ready_timeout)
    hub = spawn("hub", ["watch-hub", "--shard", f"grpc://{shard.endpoint}", "--shard-name", "default",
                        "--nats-url", nats_url, "--listen-address", f"127.0.0.1:{hub_port}",
                        "--metrics-address", ""], hub_port, workdir)
    stack.procs.append(hub)
    wait_shard_ready(hub, ready_timeout)  # its grpc.health.v1 "readiness"
    router = spawn("router", ["serve", "--listen-client-urls", f"http://127.0.0.1:{client_port}",
                              "--shard", f"grpc://{shard.endpoint}", "--watch-hub", f"grpc://{hub.endpoint}"],
                   client_port, workdir)
    stack.procs.append(router)
    wait_ready(router, ready_timeout)
    stack.endpoint = router.endpoint
    return stack
