#!/usr/bin/env python3
"""Kubernetes-level throughput (issue 21, point 5): what the store costs a user of a real
kube-apiserver (v1.37.2), on etcd 3.7.3 and on KubeFabric, in one run.

    uv run python bench/kube.py                                  # every store, resource and op: ~12 min
    uv run python bench/kube.py --stores etcd,kubefabric --objects 1000 --duration 10
    uv run python bench/kube.py --json /tmp/kube.json

For each store (`etcd` 3.7.3, `kubefabric` = `kubefabric serve`, `kubefabric-w2` = the same with
--workers 2), one after another, each fresh: a kube-apiserver on it, the bench CRD (Widget) and
a namespace; then, for each resource (ConfigMaps, core v1, stored as protobuf; Widgets, a custom
resource, stored as JSON), the load generator bench/k8sload (client-go, --clients connections):

  create  --objects objects (the whole run is measured);
  update  read-modify-write of random objects (Get + Update with the read resourceVersion,
          conflicts retried as client-go's retry.RetryOnConflict does), for --duration;
  get     random objects, for --duration;
  list    the whole namespace, pages of 500 (continue tokens), for --duration, from
          --list-clients clients.

--warmup seconds of each timed op are not counted. During each measured window the CPU time of
the store's processes (with every descendant: --workers' processes) and of kube-apiserver is read
from /proc at the window's start and end (k8sload --mark-window), so the table shows, per op,
ops/s, p50/p99, errors, conflicts, CPU µs per op of the store and of kube-apiserver, and the
ratio of ops/s to etcd's. The load generator runs on the same cores (its CPU is not counted).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agg_metrics import delta, scrape, summary
from harness.kubeapiserver import KubeAPIServer
from harness.servers import Server, etcd37_binary, start_etcd, start_kubefabric

import run as bench  # bench/run.py: tree_cpu_seconds (the script's folder is on sys.path)


def _bench_aggregation():
    """bench/aggregation.py, loaded by its path: in a test process `aggregation` may already
    be the aggregation service's package (services/aggregation), imported by an earlier test."""
    name = "kf_bench_aggregation"
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("aggregation.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module   # before it runs: its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


_aggregation = _bench_aggregation()
build_loadgen, manifest = _aggregation.build_loadgen, _aggregation.manifest

STORES = ("etcd", "kubefabric", "kubefabric-w2")
GROUP = "kube.bench.kubefabric.io"
# name -> (k8sload --resource, --kind)
RESOURCES = {"configmaps": ("configmaps.v1", "ConfigMap"), "widgets": (f"widgets.v1.{GROUP}", "Widget")}
OPS = ("create", "update", "get", "list")
NAMESPACE = "bench"


def start_store(kind: str, work: Path) -> Server:
    if kind == "etcd":
        return start_etcd(work, binary=etcd37_binary())
    workers = ["--workers", "2"] if kind == "kubefabric-w2" else []
    return start_kubefabric(work, ["--log-level", "warning", "--metrics-address", "", *workers])


def prepare(api: KubeAPIServer, resources=tuple(RESOURCES)) -> None:
    """The namespace and, if widgets are measured, the bench CRD served, on a running kube-apiserver."""
    api.kubectl("create", "namespace", NAMESPACE)
    if "widgets" not in resources:
        return
    api.apply(manifest(GROUP))
    api.wait_for(lambda: "Established" in api.kubectl("get", "crd", f"widgets.{GROUP}", "-o",
                                                      "jsonpath={.status.conditions[*].type}"),
                 120, "the bench CRD Established", 0.5)
    # the CRD's REST endpoint may answer a moment after the Established condition
    api.wait_for(lambda: api.raw(f"/apis/{GROUP}/v1/namespaces/{NAMESPACE}/widgets")[0] == 200,
                 60, "the bench CRD served", 0.5)


def run_op(kubeconfig: Path, roots: dict[str, list[int]], resource: str, op: str, args) -> dict:
    """One k8sload --op run; its JSON line plus `cpu_us_per_op` of each of `roots`' process trees
    over the measured window."""
    gvr, kind = RESOURCES[resource]
    argv = [str(build_loadgen()), f"--kubeconfig={kubeconfig}", f"--namespace={NAMESPACE}",
            f"--resource={gvr}", f"--kind={kind}", f"--op={op}",
            f"--clients={args.list_clients if op == 'list' else args.clients}",
            f"--objects={args.objects}", "--prefix=o", "--mark-window"]
    if op != "create":
        argv += [f"--duration={args.duration}s", f"--warmup={args.warmup}s"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marks: dict[str, dict[str, float]] = {}
    stderr: list[str] = []
    for line in proc.stderr:  # stdout is one JSON line at the end: it cannot fill its pipe
        text = line.rstrip("\n")
        if text in ("k8sload: measured window starts", "k8sload: measured window ends"):
            marks[text.rsplit(" ", 1)[1]] = {name: bench.tree_cpu_seconds(pids) for name, pids in roots.items()}
        else:
            stderr.append(text)
    out = proc.stdout.read()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.wait() != 0 or not lines:
        raise RuntimeError(f"k8sload --op {op} --resource {gvr} exited with {proc.returncode}: "
                           f"{(lines or [''])[-1]} {' '.join(stderr)[-1500:]}")
    row = json.loads(lines[-1])
    row["resource"] = resource
    if {"starts", "ends"} <= marks.keys() and row["ops"]:
        row["cpu_us_per_op"] = {name: round(1e6 * (marks["ends"][name] - marks["starts"][name]) / row["ops"])
                                for name in roots}
    return row


def measure(api: KubeAPIServer, store_pid: int, args, store: str = "") -> list[dict]:
    """Every resource x op of args against a prepared kube-apiserver (prepare()): their rows."""
    roots = {"store": [store_pid], "kube-apiserver": [api.proc.pid]}
    rows = []
    for resource in args.resources:
        for op in args.ops:
            # kube-apiserver's own account (bench/agg_metrics.py): its lists from the watch cache
            # or from the store, its store requests; the series naming the resource
            series = f'resource="{resource}"'
            before = scrape(api, series)
            row = run_op(api.kubeconfig, roots, resource, op, args)
            row["store"] = store
            row["apiserver"] = summary(delta(before, scrape(api, series)))
            cpu = row.get("cpu_us_per_op", {})
            bench.log(f"[{store}] {resource:10} {op:6} {row['ops_per_s']:8,.0f} ops/s  p50 {row['p50_ms']:.1f} "
                      f"p99 {row['p99_ms']:.1f} ms  errors {row['errors']}  conflicts {row['conflicts']}  "
                      f"CPU/op store {cpu.get('store', '-')} us, kube-apiserver {cpu.get('kube-apiserver', '-')} us")
            bench.log(f"    kube-apiserver: {row['apiserver']}")
            for sample in row.get("error_samples", []):
                bench.log(f"    error: {sample}")
            rows.append(row)
    return rows


def run_store(store: str, args) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix=f"kf-bench-kube-{store}-") as tmp:
        work = Path(tmp)
        storage = start_store(store, work)
        api = KubeAPIServer(work / "api", storage.url)
        try:
            api.start(timeout=600)
            prepare(api, args.resources)
            return measure(api, storage.proc.pid, args, store)
        finally:
            api.stop()
            storage.stop()


COLUMNS = ("resource", "op", "store", "ops/s", "vs etcd", "p50/p99 ms", "errors", "conflicts",
           "store CPU µs/op", "kube-apiserver CPU µs/op")


def num(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}" if v < 10 else f"{v:,.0f}"


def table(rows: list[dict]) -> str:
    """A row per resource, op, store (and round, if more than one): the ratio is to etcd's rate
    of the same round."""
    rounds = len({r.get("round", 1) for r in rows}) > 1
    columns = COLUMNS[:3] + ("round",) * rounds + COLUMNS[3:]
    etcd = {(r["resource"], r["op"], r.get("round", 1)): r["ops_per_s"] for r in rows if r["store"] == "etcd"}
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in sorted(rows, key=lambda r: (list(RESOURCES).index(r["resource"]), OPS.index(r["op"]),
                                     r.get("round", 1))):
        base = etcd.get((r["resource"], r["op"], r.get("round", 1)))
        ratio = f"{r['ops_per_s'] / base:.2f}x" if base else "-"
        cpu = r.get("cpu_us_per_op", {})
        cells = [r["resource"], r["op"], r["store"], *([str(r.get("round", 1))] * rounds),
                 num(r["ops_per_s"]), ratio, f"{r['p50_ms']:.1f}/{r['p99_ms']:.1f}", str(r["errors"]),
                 str(r["conflicts"]), num(cpu.get("store")), num(cpu.get("kube-apiserver"))]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module's text as written, the flags with their defaults."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--stores", default=",".join(STORES), help="comma-separated, of " + ", ".join(STORES))
    p.add_argument("--resources", default=",".join(RESOURCES), help="comma-separated, of " + ", ".join(RESOURCES))
    p.add_argument("--ops", default=",".join(OPS), help="comma-separated, in this order (update, get and "
                   "list need the objects create makes)")
    p.add_argument("--clients", type=int, default=32, help="concurrent client-go clients, a connection each")
    p.add_argument("--list-clients", type=int, default=8, help="clients of the list op (a full list of "
                   "--objects takes kube-apiserver 0.1-0.4 s of CPU: 32 at once outlast a window)")
    p.add_argument("--objects", type=int, default=5000, help="objects created per resource")
    p.add_argument("--duration", type=float, default=20, help="seconds measured of update, get and list")
    p.add_argument("--warmup", type=float, default=3, help="seconds of load before each measured window")
    p.add_argument("--rounds", type=int, default=1, help="run the stores this many times, every other "
                   "round in reverse order (other load on the machine drifts: compare within a round)")
    p.add_argument("--json", help="write the rows and the load average here")
    args = p.parse_args(argv)
    for name, known in (("stores", STORES), ("resources", tuple(RESOURCES)), ("ops", OPS)):
        chosen = [v for v in getattr(args, name).split(",") if v]
        if unknown := [v for v in chosen if v not in known]:
            p.error(f"--{name}: unknown {', '.join(unknown)}: choose from {', '.join(known)}")
        if not chosen:
            p.error(f"--{name} is empty")
        setattr(args, name, chosen)
    if args.ops[0] != "create":
        p.error("--ops must start with create: the other ops work on the objects it makes")
    if min(args.clients, args.list_clients, args.objects, args.rounds) < 1 or args.duration <= 0 or args.warmup < 0:
        p.error("--clients, --list-clients, --objects and --rounds must be at least 1, --duration above 0, "
                "--warmup not negative")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    build_loadgen()
    load = {"start": os.getloadavg()}
    bench.log(f"load average at start: {load['start']}")
    rows: list[dict] = []
    started = time.monotonic()
    for rnd in range(1, args.rounds + 1):
        for store in (args.stores if rnd % 2 else args.stores[::-1]):
            load_at_start = round(os.getloadavg()[0], 1)
            bench.log(f"round {rnd}, {store}: load average {load_at_start}")
            for row in run_store(store, args):
                rows.append({**row, "round": rnd, "load_average_at_start": load_at_start})
            if args.json:  # after every store: a later store's failure keeps the earlier ones
                Path(args.json).write_text(json.dumps({"rows": rows, "load": load}, indent=1))
    load["end"] = os.getloadavg()
    print(table(rows))
    print(f"\n{len(args.stores)} store(s) x {args.rounds} round(s) in {time.monotonic() - started:.0f} s; "
          f"{args.clients} clients ({args.list_clients} for lists), {args.objects} objects per resource, "
          f"{args.duration:g} s windows after {args.warmup:g} s; "
          f"load average at start {load['start']}, at end {load['end']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "load": load}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
