"""Shared test setup.

The test helpers are one package, `harness` (tests/harness, a workspace member installed with
the dev group, so tests, bench/ and scripts import it without path edits); the server fixtures
live here so tests/differential, tests/etcdctl and tests/*.py share them.

The differential fixture: one test body, run against real etcd and against KubeFabric.

    def test_put(differential):
        def body(c: Client, record):
            record("put", c.put(b"k", b"v"))
            record("get", c.get(b"k"))
        differential(body)

Each side gets a fresh server (fresh data dir, revision 1). `record(label, value, ignore=())`
stores a normalised value; after both runs the recordings must be equal, label by label.
"""
from __future__ import annotations

import os

# Before anything loads grpc: the test process forks (subprocess, for servers that run as another
# OS user, and so not through vfork) while its grpc client threads run. With fork support on,
# grpc's fork handlers ran in those children, which now and then died in them before their exec
# (a SIGSEGV: PostgreSQL "exited during start" without a line of log). The servers start with
# this too: the zygote does, and `kubefabric serve --workers` sets it itself.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import concurrent.futures  # noqa: E402
import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.client import Client
from harness.kubeapiserver import KubeAPIServer
from harness.mariadb import mariadb_kind, mariadb_server  # noqa: F401
from harness.nats import nats_server  # noqa: F401
from harness.postgres import postgres_server, postgres_kind  # noqa: F401
from harness.servers import (HUB_THREE_SHARDS, START, THREE_SHARDS, hub_flags, shard_flags, start_hub,
                             start_router, start_shard)
from harness.normalise import compare_recordings, recording


# Where the KubeFabric side of a differential test runs: "embedded" (`kubefabric serve`),
# kv-router in front of a shard service on "sqlite", "postgres" or "mariadb" (real servers), or
# "workers": `kubefabric serve --workers 2` (the test's calls alternate between its writer process
# and its worker), "router-workers": kv-router --workers 2 (two router processes on one port,
# the calls alternating between them) in front of a SQLite shard service on its lane, "topology": kv-router on three shards (harness.servers.THREE_SHARDS: test keys use the default
# SQLite shard, while the merged watch feed and the clock sync run across all three), or "hub":
# kv-router --watch-hub, a watch-hub and a SQLite shard service publishing on NATS JetStream.
SHARD_NAMES = itertools.count()  # hub-target shards: unique per session (NATS dedupes by name:rev)
# A differential target's shard service is its shard's only replica: nobody can take over, so a
# lease longer than the 1 s default only keeps an event-loop stall on a loaded CI machine from
# ending the leader's term (headers would then say raft_term 3 where etcd says 2). Failover with
# the default lease is tested in tests/shard and tests/robustness. Flags the test gives come
# after these and win.
SOLE_REPLICA_FLAGS = ["--leader-lease", "5s"]
# The router's reads and writes reach the "postgres" and "mariadb" targets' shard service (and
# the topology's PostgreSQL shard) on its batch lane (kubefabric.shardsvc.lane), as deploy/ runs
# them; "sqlite", "hub" and the topology's MariaDB shard on gRPC streams: both carriers are
# judged by the same differential tests.
LANE = ["--lane-address", "127.0.0.1:0"]
DIFF_TARGETS = [t for t in os.environ.get("KUBEFABRIC_DIFF_TARGETS",
                                           "embedded,workers,router-workers,postgres,mariadb,"
                                           "topology,hub")
                .split(",") if t]
# targets served by `kubefabric serve` itself ("workers": --workers 2, whose two processes the
# client's calls alternate between); the others are kv-router in front of shard services
LAUNCH = {"embedded": "kubefabric", "workers": "kubefabric-w2", "router-workers": "routed-sqlite-w2"}
# the launches whose client spreads its calls over the server's processes (harness.client)
SPREAD = {"kubefabric-w2", "routed-sqlite-w2"}
# The "workers" and "router-workers" targets start two processes more per test (about 2 s on CI's
# loaded machine): by default they run the modules whose calls cross the processes in every way
# (reads after writes, txns, watches, leases, auth, compaction); KUBEFABRIC_DIFF_TARGETS naming
# them runs them everywhere.
MULTI_PROCESS_TARGETS = {"workers", "router-workers"}
WORKERS_MODULES = {"test_put_delete", "test_txn", "test_watch", "test_lease", "test_auth",
                   "test_compact"}
WORKERS_EVERYWHERE = "KUBEFABRIC_DIFF_TARGETS" in os.environ


@pytest.fixture
def say(capsys):
    """Print a line of figures to the terminal even while pytest captures output."""
    def out(line: str) -> None:
        with capsys.disabled():
            print(line, flush=True)
    return out


def sole_replica(extra) -> list[str]:
    return [*SOLE_REPLICA_FLAGS, *shard_flags(extra or [])]


@pytest.fixture
def server_factory(tmp_path, request):
    started = []

    def workdir(kind: str) -> Path:
        d = tmp_path / f"{kind}-{len(started)}"
        d.mkdir()
        return d

    def start(kind: str, extra=None):
        """kind: etcd, etcd37, kubefabric (embedded) or routed-<sqlite|postgres|mariadb|topology|hub>;
        routed-sqlite-w2: kv-router --workers 2 in front of a SQLite shard service on its lane."""
        if kind == "routed-sqlite-w2":
            return start_routed("sqlite", extra, router_processes=2)
        if kind.startswith("routed-"):
            return start_routed(kind.removeprefix("routed-"), extra)
        s = START[kind](workdir(kind), extra)
        started.append(s)
        return s

    def database(backend: str) -> str:
        db = request.getfixturevalue(f"{backend}_server")
        name = f"kf_{os.getpid()}_{len(started)}_{abs(hash(request.node.nodeid)) % 10**8}"
        db.create_database(name)
        return db.dsn(name)

    def start_three(extra=None):
        """kv-router on THREE_SHARDS: embedded SQLite (default), PostgreSQL (tenant-a pods),
        MariaDB (events)."""
        d = workdir("topology")
        tenants = start_shard(d, "postgres", database("postgres"), [*LANE, *sole_replica(extra)],
                              name="tenants")
        started.append(tenants)
        events = start_shard(d, "mariadb", database("mariadb"), sole_replica(extra), name="events")
        started.append(events)
        topology = d / "topology.yaml"
        topology.write_text(THREE_SHARDS.format(tenants=tenants.endpoint, events=events.endpoint))
        router = start_router(d, extra=extra, topology=topology)
        started.append(router)
        return router

    def start_routed(backend: str, extra=None, router_processes: int = 1):
        if backend == "topology":
            return start_three(extra)
        if backend == "hub":
            return start_hub_stack(extra).router
        d = workdir(backend)
        if backend == "sqlite":
            dsn = f"sqlite://{d / 'shard'}"
        else:
            dsn = database(backend)
        lane = LANE if backend in ("postgres", "mariadb") or router_processes > 1 else []
        shard = start_shard(d, backend, dsn, [*lane, *sole_replica(extra)])
        started.append(shard)
        workers = ["--workers", str(router_processes)] if router_processes > 1 else []
        router = start_router(d, [shard], [*workers, *(extra or [])])
        started.append(router)
        return router

    def start_hub_stack(extra=None, nats=None, three=False, hubs=1):
        """kv-router --watch-hub in front of `hubs` watch-hubs on NATS JetStream (`nats`, default
        the session's server): one SQLite shard service, or with three=True HUB_THREE_SHARDS.
        Returns a namespace: endpoint (the router's), router, hubs, shards (name -> replicas),
        nats, topology (path or None), workdir."""
        d = workdir("hub")
        nats = nats or request.getfixturevalue("nats_server")
        publish = ["--nats-url", nats.url, *shard_flags(extra or [])]
        # track: a process a test starts for the stack later (a restarted hub), stopped at the end
        stack = SimpleNamespace(workdir=d, nats=nats, shards={}, topology=None, track=started.append)
        if three:
            def shard(kind, dsn, name):
                s = start_shard(d, kind, dsn, publish, name=name)
                started.append(s)
                return s
            stack.shards["main"] = [shard("sqlite", f"sqlite://{d / 'main'}", "main")]
            tenants_db = database("postgres")
            stack.shards["tenants"] = [shard("postgres", tenants_db, "tenants") for _ in range(2)]
            stack.shards["events"] = [shard("mariadb", database("mariadb"), "events")]
            stack.topology = d / "topology.yaml"
            stack.topology.write_text(HUB_THREE_SHARDS.format(
                main=stack.shards["main"][0].endpoint, events=stack.shards["events"][0].endpoint,
                tenants=",grpc://".join(r.endpoint for r in stack.shards["tenants"])))
            stack.hubs = [start_hub(d, nats.url, topology=stack.topology, extra=hub_flags(extra or []))
                          for _ in range(hubs)]
        else:
            name = f"s{next(SHARD_NAMES)}-{os.getpid()}"  # a stream of its own on the shared NATS
            replica = start_shard(d, "sqlite", f"sqlite://{d / 'shard'}",
                                  [*SOLE_REPLICA_FLAGS, *publish], name=name)
            started.append(replica)
            stack.shards[name] = [replica]
            stack.hubs = [start_hub(d, nats.url, [replica], shard_name=name, extra=hub_flags(extra or []))
                          for _ in range(hubs)]
        started.extend(stack.hubs)
        hub_urls = ",".join(f"grpc://{h.endpoint}" for h in stack.hubs)
        replicas = None if three else stack.shards[name]
        stack.router = start_router(d, replicas, ["--watch-hub", hub_urls, *(extra or [])],
                                    topology=stack.topology)
        started.append(stack.router)
        stack.endpoint = stack.router.endpoint
        return stack

    start.routed = start_routed
    start.database = database  # a fresh database on the session's "postgres" or "mariadb" server: its DSN
    start.three_shards = start_three
    start.hub = start_hub_stack
    yield start
    # stopped together: a clean shutdown takes each about a second, and none waits for another
    with concurrent.futures.ThreadPoolExecutor(max(len(started), 1)) as pool:
        list(pool.map(lambda server: server.stop(), reversed(started)))


@pytest.fixture
def kube_apiserver_factory(server_factory, tmp_path):
    """Start real kube-apiservers (tests/harness/kubeapiserver.py), each on a fresh
    `kubefabric serve` unless etcd_url names a storage endpoint; stopped at the end.

        api = kube_apiserver_factory()                  # api.kubectl(...), api.kubeconfig
        api = kube_apiserver_factory(aggregation=True)  # front proxy, aggregator routing
        api.storage                                     # the harness Server under it (or None)
    """
    started = []

    def start(aggregation: bool = False, etcd_url: str | None = None, extra=None) -> KubeAPIServer:
        storage = None if etcd_url else server_factory("kubefabric")
        api = KubeAPIServer(tmp_path / f"kube-apiserver-{len(started)}", etcd_url or storage.url,
                            aggregation=aggregation, extra=extra)
        api.storage = storage
        started.append(api)
        api.start()
        return api

    yield start
    for api in reversed(started):
        api.stop()


@pytest.fixture
def differential(server_factory, request):
    def run(body, etcd_args=None, kubefabric_args=None, reference="etcd", targets=None,
            spans_shards=False, without=()):
        """reference: "etcd" (Debian's 3.4) or "etcd37" (3.7.3, for newer APIs). The KubeFabric
        side runs once per target (DIFF_TARGETS, or `targets` for a test that needs fewer).
        spans_shards: the body writes across the whole key space in one request (a txn or
        delete over every key), which a multi-shard topology refuses by design (DESIGN §3.6):
        not run on the "topology" target (tests/routing checks the refusal). without: targets
        left out (the test says why)."""
        sides = [("etcd", reference, etcd_args)]
        # KUBEFABRIC_DIFF_AGAINST=etcd runs the second side on etcd too: a check that a new
        # test body is deterministic before it is used to judge KubeFabric.
        if os.environ.get("KUBEFABRIC_DIFF_AGAINST") == "etcd":
            sides.append(("kubefabric", reference, etcd_args))
        else:
            for target in (targets or DIFF_TARGETS):
                if (spans_shards and target == "topology") or target in without:
                    continue
                if target in MULTI_PROCESS_TARGETS and not WORKERS_EVERYWHERE and \
                        request.module.__name__.rpartition(".")[2] not in WORKERS_MODULES:
                    continue
                launch = LAUNCH.get(target, f"routed-{target}")
                sides.append((f"kubefabric[{target}]", launch, kubefabric_args))
        results = {}
        for kind, launch, extra in sides:
            server = server_factory(launch, extra)
            # --workers: the body's calls alternate between two processes (harness.client)
            client = Client(server.endpoint, kind, spread=launch in SPREAD)
            results[kind] = recording(client, body)
        etcd = results.pop("etcd")
        if dump := os.environ.get("KUBEFABRIC_DIFF_DUMP"):  # a directory: the recordings as JSON
            Path(dump).mkdir(parents=True, exist_ok=True)
            name = request.node.nodeid.replace("/", "_").replace("::", "__")
            (Path(dump) / f"{name}.json").write_text(
                json.dumps({"etcd": etcd, **results}, indent=1, default=repr))
        for kind, ours in results.items():
            compare_recordings(etcd, ours, kind)
        return etcd

    return run
