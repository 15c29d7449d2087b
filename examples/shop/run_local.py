#!/usr/bin/env python3
"""The shop on the whole platform on this machine, no Docker and no cluster, until Ctrl-C:

    uv run python examples/shop/run_local.py [--dir DIR]

It starts, on free loopback ports: PostgreSQL, the shop's two shards (Orders on backend-pg, the
rest on a SQLite shard; examples/shop/deploy/platform/topology.yaml), NATS and watch-hub,
kv-router, a real kube-apiserver storing in kv-router (built once from Go modules by
tests/conformance/kube-apiserver/build.sh: 10-15 minutes the first time, cached afterwards),
`kubefabric trigger` with the HTTPTrigger that calls the pricing function on each Order ADDED in
namespace shop-demo, the function, the invoice operator, and `kubefabric aggregation` serving
OrderReports behind an APIService. Then it prints the KUBECONFIG to use.

The processes are the test suite's (tests/harness/shop.py: the end-to-end test runs this same
stack); everything is stopped and the data directory removed on exit unless --dir is given.
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import tempfile
import threading
from pathlib import Path

from harness.postgres import PostgresServer
from harness.shop import ShopStack, price_trigger, trigger_ready, wait_for

NAMESPACE = "shop-demo"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, help="keep the processes' data and logs here (default: a temporary directory)")
    args = ap.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="kf-shop-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)   # PostgreSQL runs as the postgres OS user when we are root
    postgres = PostgresServer().start()
    stack = ShopStack(work / "stack", postgres, events=True)
    (work / "stack").mkdir(exist_ok=True)
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    try:
        print("starting the platform (the first run builds kube-apiserver: 10-15 minutes)...", flush=True)
        stack.start()
        stack.api.kubectl("create", "namespace", NAMESPACE)
        fn = stack.start_function()
        stack.start_operator("local")
        stack.start_trigger()
        stack.api.kubectl("apply", "-f", "-", input=json.dumps(price_trigger(NAMESPACE, fn.url + "/", 8)))
        wait_for(lambda: trigger_ready(stack.api, NAMESPACE), 60, "the HTTPTrigger to be Ready")
        stack.start_reports()
        print(f"""
ready. In another shell:
    export KUBECONFIG={stack.api.kubeconfig}
    kubectl -n {NAMESPACE} apply -f examples/shop/order.yaml
    kubectl -n {NAMESPACE} get orders,configmaps
    uv run shop demo --count 100
    kubectl get --raw '/apis/reports.shop.example.com/v1alpha1/namespaces/{NAMESPACE}/orderreports/-/query?customer=acme&minTotal=10000'
    ETCDCTL_API=3 etcdctl --endpoints {stack.router.endpoint} get --prefix --keys-only /registry/shop.example.com/orders/
logs: {stack.workdir}/*.log   (Ctrl-C stops everything)""", flush=True)
        stopped.wait()
    finally:
        stack.stop()
        postgres.remove()
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
