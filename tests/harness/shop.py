"""The example app (examples/shop) on the whole platform, as local processes: what its tests and
bench/shop_scale.py run.

    stack = ShopStack(workdir, postgres_server, events=True)
    stack.start()                          # shards, (NATS, watch-hub,) kv-router, kube-apiserver,
                                           # the Order CRD
    stack.api.kubectl("get", "orders", "-A")
    fn = stack.start_function()            # `shop function` on a free port: fn.url
    op = stack.start_operator("a")         # `shop operator --identity a`
    tr = stack.start_trigger()             # `kubefabric trigger` on the HTTPTrigger objects stored
    agg = stack.start_reports()            # `kubefabric aggregation` serving OrderReports (APIService)
    stack.stop()                           # everything it started, in reverse order
    order("o1", "acme", [("widget", 2)])    # an Order manifest (dict); wait_for(pred, timeout, what)

The routing is the example's own topology (examples/shop/deploy/platform/topology.yaml) with
loopback endpoints: Orders on shard "orders" (backend-pg on a database of its own), everything
else on shard "main" (a SQLite shard service). events=True adds what the trigger and the
aggregation service need: both shards publish to a private NATS JetStream, a watch-hub follows
them and kv-router serves Watch from it (DESIGN §5). `env` (e.g. OTEL_* variables) is added to
every process's environment. No kube-controller-manager: the operator's finalizer deletes
the invoices itself (the garbage collector is not needed; building it would cost CI minutes).
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.aggregation import Aggregation, start_aggregation
from harness.kubeapiserver import KubeAPIServer, local_ip
from harness import zygote
from harness.nats import NatsServer
from harness.waiting import wait_for, wait_logged  # noqa: F401  (wait_for: re-exported to the shop's tests)
from harness.servers import (REPO, Server, free_port, spawn, start_hub, start_router,
                             start_shard, stop_process)

SHOP = REPO / "examples" / "shop"
CRD = SHOP / "crd" / "order.yaml"
REPORTS = SHOP / "reports"   # the REST layer: CRDs and hooks for `kubefabric aggregation`
TRIGGER_CRD = REPO / "deploy" / "crds" / "httptriggers.triggers.kubefabric.io.yaml"
TOPOLOGY = SHOP / "deploy" / "platform" / "topology.yaml"
DATABASES = itertools.count()


def example_topology(path: Path, endpoints: dict[str, str]) -> Path:
    """The example's topology with its shards' endpoints replaced (name -> host:port)."""
    topology = yaml.safe_load(TOPOLOGY.read_text())
    for shard in topology["shards"]:
        shard["endpoint"] = f"grpc://{endpoints[shard['name']]}"
    path.write_text(yaml.safe_dump(topology, sort_keys=False))
    return path


@dataclass
class ShopProcess:
    """One of the example app's processes (`shop function`, `shop operator`)."""
    name: str
    proc: subprocess.Popen
    log_path: Path
    url: str = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text: str, timeout: float = 60.0) -> str:
        return wait_logged(text, self.log, self.proc, self.name, timeout)

    def stop(self, sig: int = 15, timeout: float = 20.0) -> int | None:
        return stop_process(self.proc, sig, timeout)


class ShopStack:
    def __init__(self, workdir: Path, postgres, events: bool = False, env: dict[str, str] | None = None,
                 apiserver_flags: list[str] | None = None):
        self.workdir, self.postgres, self.events = Path(workdir), postgres, events
        self.env = dict(env or {})
        self.apiserver_flags = list(apiserver_flags or [])
        self.database = f"shop_{os.getpid()}_{next(DATABASES)}"
        self.started: list = []
        self.shards: dict = {}
        self.nats = self.hub = self.router = self.api = None
        self.collector = None   # the tests' OTLP collector (harness.otlp) when `env` points at one
        self._names = itertools.count()

    def start(self) -> "ShopStack":
        saved = dict(os.environ)
        os.environ.update(self.env)   # the harness's start_* inherit this process's environment
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return self

    def _start(self) -> None:
        w = self.workdir
        self.postgres.create_database(self.database)
        publish: list[str] = ["--metrics-address", ""]   # no fixed metrics ports: stacks run side by side
        if self.events:
            self.nats = NatsServer(w)
            self.nats.start()
            self.started.append(self.nats)
            publish += ["--nats-url", self.nats.url]
        # the topology first: the shard services read it too (--topology), for their index rules
        ports = {"main": free_port(), "orders": free_port()}
        self.topology = example_topology(w / "topology.yaml", {n: f"127.0.0.1:{p}" for n, p in ports.items()})
        shard_flags = [*publish, "--topology", str(self.topology)]
        main = self._track(start_shard(w, "sqlite", f"sqlite://{w / 'main'}", shard_flags, name="main",
                                       port=ports["main"]))
        orders = self._track(start_shard(w, "postgres", self.postgres.dsn(self.database), shard_flags,
                                         name="orders", port=ports["orders"]))
        self.shards = {"main": main, "orders": orders}
        router_flags: list[str] = ["--metrics-address", ""]
        if self.events:
            self.hub = self._track(start_hub(w, self.nats.url, topology=self.topology))
            router_flags += ["--watch-hub", f"grpc://{self.hub.endpoint}"]
        self.router = self._track(start_router(w, extra=router_flags, topology=self.topology))
        self.api = self._track(KubeAPIServer(w / "kube", f"http://{self.router.endpoint}", aggregation=True,
                                           extra=self.apiserver_flags))
        self.api.start()
        self.api.kubectl("apply", "-f", str(CRD))
        self.wait_established("orders.shop.example.com")
        wait_for(lambda: self.api.raw("/apis/shop.example.com/v1/orders")[0] == 200, 60,
                 "orders.shop.example.com to be served")

    def wait_established(self, crd: str, timeout: float = 60) -> None:
        """Until the CRD is Established (not `kubectl wait`: it fails on a CRD whose status has no
        conditions yet, as just after its creation)."""
        def established() -> bool:
            conditions = self.api.kubectl_json("get", "crd", crd).get("status", {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)
        wait_for(established, timeout, f"CRD {crd} to be Established")

    def _track(self, process):
        self.started.append(process)
        return process

    def stop(self) -> None:
        for p in reversed(self.started):
            p.stop()
        self.started.clear()
        try:
            self.postgres.drop_database(self.database)
        except Exception:  # noqa: BLE001 - never created, or the server is gone: nothing to drop
            pass

    # -- the example app's processes -------------------------------------------------------
    def start_shop(self, kind: str, *args: str, name: str | None = None) -> ShopProcess:
        name = name or f"{kind}-{next(self._names)}"
        log = self.workdir / f"{name}.log"
        env = {**os.environ, **self.env, "KUBECONFIG": str(self.api.kubeconfig), "OTEL_SERVICE_NAME": f"shop-{kind}"}
        proc = spawn([sys.executable, "-m", "shop.cli", kind, *args], stdout=log.open("ab"),
                     stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        return self._track(ShopProcess(name, proc, log))

    def start_operator(self, identity: str, *extra: str, archive: Path | None = None,
                       lease_duration: float = 15) -> ShopProcess:
        archive = archive or self.workdir / "archive"
        return self.start_shop("operator", "--identity", identity, "--archive-dir", str(archive),
                               "--lease-duration", str(lease_duration), *extra, name=f"operator-{identity}")

    def start_trigger(self, name: str = "trigger") -> Server:
        """`kubefabric trigger` through kv-router, running the HTTPTrigger objects applied with
        kubectl (its CRD is applied here); returns once /readyz answers 200."""
        self.api.kubectl("apply", "-f", str(TRIGGER_CRD))
        self.wait_established("httptriggers.triggers.kubefabric.io")
        listen = f"127.0.0.1:{free_port()}"
        argv = [sys.executable, "-m", "kubefabric.cli", "trigger", "--endpoints", f"http://{self.router.endpoint}",
                "--cluster-triggers", "true", "--replica-name", name, "--listen-address", listen,
                "--checkpoint-interval", "200ms", "--lease-ttl", "3"]
        log = self.workdir / f"{name}.log"
        env = {**os.environ, **self.env, "OTEL_SERVICE_NAME": "kubefabric-trigger"}
        proc = zygote.popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        server = self._track(Server("trigger", listen, proc, self.workdir, log, argv))
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"trigger exited ({proc.returncode}):\n{server.log()[-3000:]}"
            try:
                if urllib.request.urlopen(f"http://{listen}/readyz", timeout=2).status == 200:
                    return server
            except OSError:
                pass
            assert time.monotonic() < deadline, f"trigger not ready after 60s:\n{server.log()[-3000:]}"
            time.sleep(0.2)

    def start_reports(self) -> Aggregation:
        """`kubefabric aggregation --crd-dir examples/shop/reports` (auth none: the stack's only
        user is the admin) registered for reports.shop.example.com/v1alpha1; returns once
        kube-apiserver reports the APIService Available."""
        # all interfaces: kube-apiserver refuses loopback endpoints for an APIService (it dials
        # local_ip()), the harness's client checks readiness on 127.0.0.1
        agg = self._track(start_aggregation(self.workdir, f"http://{self.router.endpoint}", crd_dir=REPORTS,
                                            host="0.0.0.0", env=self.env))
        self.api.register_apiservice("reports.shop.example.com", "v1alpha1", agg.port, host=local_ip())
        return agg

    def start_function(self) -> ShopProcess:
        port = free_port()
        fn = self.start_shop("function", "--listen", f"127.0.0.1:{port}")
        fn.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert fn.proc.poll() is None, f"function exited:\n{fn.log()}"
            try:
                urllib.request.urlopen(fn.url + "/healthz", timeout=2).read()
                return fn
            except OSError:
                assert time.monotonic() < deadline, f"function not serving after 30s:\n{fn.log()}"
                time.sleep(0.1)


def price_trigger(namespace: str, url: str, concurrency: int = 1, delivery: dict | None = None) -> dict:
    """The HTTPTrigger that wires the pricing function (examples/shop/deploy/app/trigger.yaml
    with a static URL): each Order ADDED in `namespace` (the trigger's own) goes to `url` as a
    CloudEvent; the function's own status patches (MODIFIED)
    do not come back to it. concurrency: orders delivered in parallel (one order's events never are);
    delivery: spec.delivery (timeout, retries, ...), the trigger's defaults when None."""
    spec = {"resource": {"apiVersion": "shop.example.com/v1", "kind": "Order"},
            "namespaces": [namespace], "eventTypes": ["ADDED"], "concurrency": concurrency,
            "url": {"static": url}}
    if delivery:
        spec["delivery"] = delivery
    return {"apiVersion": "triggers.kubefabric.io/v1", "kind": "HTTPTrigger",
            "metadata": {"name": "price-orders", "namespace": namespace}, "spec": spec}


def trigger_ready(api, namespace: str, name: str = "price-orders") -> bool:
    status = api.kubectl_json("get", "httptrigger", name, "-n", namespace).get("status") or {}
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def order(name: str, customer: str = "acme", items=(("widget", 2),), labels: dict | None = None) -> dict:
    return {"apiVersion": "shop.example.com/v1", "kind": "Order",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"customer": customer, "items": [{"sku": s, "quantity": q} for s, q in items]}}
