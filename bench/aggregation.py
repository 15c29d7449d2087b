#!/usr/bin/env python3
"""The benchmark of issue 18: 120 concurrent client-go clients each create a namespaced object and
read it back by label selector, against

  etcd-crd  kube-apiserver + etcd 3.7.3, the resource installed as a CRD;
  kf-crd    kube-apiserver + KubeFabric (`kubefabric serve`), the same CRD;
  kf-agg    the same resource served by `kubefabric aggregation` on KubeFabric, registered as an
            APIService: kube-apiserver only proxies (the clients still talk to kube-apiserver).

KubeFabric's embedded shard keeps a label index of the resource's keys (a topology rule with
`index:`), so the aggregation server's selector lists are one SQL statement; kube-apiserver
answers the CRD's from its watch cache, filtering the namespace's objects.

Two modes. Checkpoints (the default): at each count of --checkpoints the namespace is first
bulk-loaded up to that count through the storage's etcd API (bench/agg_bulk.py: the bytes the
serving API server itself stores), the API's list must show them all (kube-apiserver's watch cache
with resourceVersion=0, the aggregation server with a list), then the clients run for --window
seconds (after --warmup); the window's own objects are deleted again afterwards, so every case
measures each window from the same count. --grow: the clients alone grow the namespace to
--objects, one line per --report-every objects (slow: 60-300 objects/s here).

    uv run python bench/aggregation.py                            # 1k, 10k, 25k, 50k, 100k; ~35 min
    uv run python bench/aggregation.py --cases kf-agg --checkpoints 1000,5000 --window 20
    uv run python bench/aggregation.py --grow --objects 5000 --report-every 1000 --cases kf-agg
    uv run python bench/aggregation.py --json /tmp/agg.json --svg bench/aggregation.svg

Per window: req/s (creates + lists), p50/p99 of each, errors, the RSS of kube-apiserver, the
storage (etcd or kubefabric) and the aggregation server and, for the CRD cases, how kube-apiserver
served the lists (bench/agg_metrics.py: watch cache or etcd, cache wait, etcd latency); then a
table of the last window of each case with ratios to etcd-crd, and an SVG plot of req/s and RSS
against the object count. The load generator is bench/k8sload (client-go), built on first use.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from agg_bulk import check_readback, load, remove, stored, template, wait_counted
from agg_metrics import delta, scrape, summary
from harness.aggregation import CRDS, start_aggregation
from harness.client import Client
from harness.kubeapiserver import KubeAPIServer
from harness.servers import etcd37_binary, start_etcd, start_kubefabric

HERE = Path(__file__).resolve().parent
LOADGEN = HERE / "bin" / "k8sload"
CASES = ("etcd-crd", "kf-crd", "kf-agg")
GROUPS = {"etcd-crd": "etcd.bench.kubefabric.io", "kf-crd": "crd.bench.kubefabric.io",
          "kf-agg": "agg.bench.kubefabric.io"}


def build_loadgen() -> Path:
    src = HERE / "k8sload"
    newest = max(p.stat().st_mtime for p in src.iterdir())
    if not LOADGEN.exists() or LOADGEN.stat().st_mtime < newest:
        LOADGEN.parent.mkdir(exist_ok=True)
        subprocess.run(["go", "build", "-o", str(LOADGEN), "."], cwd=src, check=True)
    return LOADGEN


def manifest(group: str) -> dict:
    m = yaml.safe_load((CRDS / "widgets.yaml").read_text())
    m["metadata"]["name"] = f"widgets.{group}"
    m["spec"]["group"] = group
    return m


def topology(work: Path, group: str) -> Path:
    path = work / "topology.yaml"
    path.write_text(yaml.safe_dump({
        "shards": [{"name": "main", "endpoint": "embedded"}], "default": "main",
        "rules": [{"prefix": f"/registry/{group}/", "shard": "main",
                   "index": {"labels": True, "fields": ["spec.color"]}}]}))
    return path


def register(api: KubeAPIServer, group: str, port: int) -> None:
    api.apply(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "aggregation", "namespace": "default"},
         "spec": {"type": "ExternalName", "externalName": "localhost", "ports": [{"name": "https", "port": port}]}},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": f"v1.{group}"},
         "spec": {"group": group, "version": "v1", "groupPriorityMinimum": 1000, "versionPriority": 15,
                  "insecureSkipTLSVerify": True,
                  "service": {"namespace": "default", "name": "aggregation", "port": port}}})

    def available():
        s = api.kubectl_json("get", "apiservice", f"v1.{group}")
        return any(c["type"] == "Available" and c["status"] == "True"
                   for c in s.get("status", {}).get("conditions", []))
    api.wait_for(available, 180, f"APIService v1.{group} Available", 1)


def run_case(case: str, args, work: Path) -> list[dict]:
    group = GROUPS[case]
    stop = []
    try:
        if case == "etcd-crd":
            storage = start_etcd(work, binary=etcd37_binary())
        else:
            extra = ["--metrics-address", ""]
            if args.index:
                extra += ["--topology", str(topology(work, group))]
            storage = start_kubefabric(work, extra)
        stop.append(storage.stop)
        api = KubeAPIServer(work / "api", storage.url, aggregation=case == "kf-agg",
                            extra=["--enable-aggregator-routing=false"])
        api.start(timeout=600)
        stop.append(api.stop)
        pids = [f"kube-apiserver={api.proc.pid}", f"storage={storage.proc.pid}"]
        if case == "kf-agg":
            crds = work / "crds"
            crds.mkdir()
            (crds / "widgets.yaml").write_text(yaml.safe_dump(manifest(group)))
            agg = start_aggregation(work, storage.url, crd_dir=crds, extra=[
                "--auth", "delegated", "--kubeconfig", str(api.kubeconfig),
                "--requestheader-client-ca-file", str(api.front_proxy_ca.cert_file),
                "--requestheader-allowed-names", "front-proxy-client", "--event-loop", "uvloop",
                "--log-level", "warning"])
            stop.append(agg.stop)
            register(api, group, agg.port)
            pids.append(f"aggregation={agg.proc.pid}")
        else:
            api.apply(manifest(group))
            api.wait_for(lambda: "Established" in api.kubectl("get", "crd", f"widgets.{group}", "-o",
                                                              "jsonpath={.status.conditions[*].type}"),
                         120, "the CRD Established", 1)
        api.kubectl("create", "namespace", "bench")
        base = [str(LOADGEN), f"--kubeconfig={api.kubeconfig}", f"--resource=widgets.v1.{group}",
                f"--clients={args.clients}", *[f"--pid={p}" for p in pids]]
        if args.grow:
            return loadgen(case, work, base + [f"--objects={args.objects}",
                                               f"--report-every={args.report_every}"])
        client = Client(storage.endpoint)
        stop.append(client.close)
        return checkpoints(case, args, work, api, client, base)
    finally:
        for fn in reversed(stop):
            fn()


def loadgen(case: str, work: Path, argv: list[str]) -> list[dict]:
    """Run the load generator; its lines, printed as they come."""
    print(f"== {case}: {' '.join(argv[1:])}", flush=True)
    lines = []
    log = work / "k8sload.log"   # client-go's own complaints (e.g. requests cut at a window's end)
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
        for line in proc.stdout:
            row = json.loads(line)
            row["case"] = case
            lines.append(row)
            rss = ", ".join(f"{k} {v:.0f} MiB" for k, v in sorted(row["rss_mib"].items()))
            print(f"{case:9} {row['objects']:>7} objects  {row['req_per_s']:7.1f} req/s  "
                  f"create p50/p99 {row['create_p50_ms']:.1f}/{row['create_p99_ms']:.1f} ms  "
                  f"list p50/p99 {row['list_p50_ms']:.1f}/{row['list_p99_ms']:.1f} ms  "
                  f"errors {row['errors']}  {rss}", flush=True)
            for sample in row.get("error_samples", []):
                print(f"          error: {sample}", flush=True)
    if proc.wait() != 0:
        print(f"== {case}: the load generator exited with {proc.returncode}:\n"
              f"{log.read_text(errors='replace')[-2000:]}", flush=True)
    return lines


def checkpoints(case: str, args, work: Path, api: KubeAPIServer, client: Client, base: list[str]) -> list[dict]:
    """One window per checkpoint: bulk-load up to it, wait until the API lists it all, measure."""
    group, cached = GROUPS[case], case != "kf-agg"
    raw = template(api, client, group)
    bulk, rows = 0, []   # bulk objects written so far
    for i, target in enumerate(args.checkpoints):
        if i:
            # A create the load generator gave up on at the window's end can still land after
            # the window's objects were removed: remove them again, count what is there.
            remove(client, group, f"w{i - 1}-")
        have = stored(client, group)
        if target > have:
            secs = load(client, group, raw, bulk, bulk + target - have)
            print(f"{case:9} bulk-loaded {target - have} objects in {secs:.1f} s", flush=True)
            if not bulk:
                check_readback(api, group)
            bulk += target - have
            have = stored(client, group)
        caught_up = wait_counted(api, group, have, cached)
        print(f"{case:9} the API lists {have} objects (after {caught_up:.1f} s)", flush=True)
        before = scrape(api, group)
        prefix = f"w{i}-"
        window = loadgen(case, work, base + [f"--start={have}", f"--prefix={prefix}",
                                             f"--duration={args.window}s", f"--warmup={args.warmup}s"])
        for row in window:
            row.update(objects_end=row["objects"], objects=have, final=False,
                       catch_up_s=round(caught_up, 1))
            if cached:
                row["apiserver"] = summary(delta(before, scrape(api, group)))
                print(f"{case:9} kube-apiserver: {row['apiserver']}", flush=True)
        rows += window
        time.sleep(2)   # requests cut at the window's end finish on the server
        print(f"{case:9} removed the window's {remove(client, group, prefix)} objects", flush=True)
    return rows


def table(results: dict[str, list[dict]]) -> str:
    base = results.get("etcd-crd")
    base_last = [r for r in base if not r.get("final")][-1:] if base else []
    out = ["| case | objects | req/s | vs etcd-crd | create p50/p99 ms | list p50/p99 ms | errors | "
           "RSS kube-apiserver / storage / aggregation MiB |", "|---|---|---|---|---|---|---|---|"]
    for case, rows in results.items():
        windows = [r for r in rows if not r.get("final")] or rows
        last = windows[-1]
        ratio = f"{last['req_per_s'] / base_last[0]['req_per_s']:.1f}x" if base_last else ""
        rss = last["rss_mib"]
        errors = sum(r["errors"] for r in rows)
        out.append(f"| {case} | {last['objects']} | {last['req_per_s']:.0f} | {ratio} | "
                   f"{last['create_p50_ms']:.1f}/{last['create_p99_ms']:.1f} | "
                   f"{last['list_p50_ms']:.1f}/{last['list_p99_ms']:.1f} | {errors} | "
                   f"{rss.get('kube-apiserver', 0):.0f} / {rss.get('storage', 0):.0f} / "
                   f"{rss.get('aggregation', 0):.0f} |")
    return "\n".join(out)


def svg(results: dict[str, list[dict]]) -> str:
    """Two panels against the object count: req/s per case, RSS per case and process."""
    colours = {"etcd-crd": "#d62728", "kf-crd": "#1f77b4", "kf-agg": "#2ca02c"}
    dashes = {"kube-apiserver": "", "storage": "6,3", "aggregation": "2,2"}
    w, h, pad = 720, 300, 50
    rows = [r for rs in results.values() for r in rs if not r.get("final")]
    if not rows:
        return ""
    xmax = max(r["objects"] for r in rows)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{2 * h + 40}" '
             'font-family="sans-serif" font-size="12">']

    def panel(y0: int, title: str, series: list[tuple[str, str, list[tuple[float, float]]]]):
        ymax = max((y for _, _, pts in series for _, y in pts), default=1) * 1.1 or 1
        parts.append(f'<text x="{pad}" y="{y0 + 15}" font-weight="bold">{title}</text>')
        parts.append(f'<rect x="{pad}" y="{y0 + 25}" width="{w - 2 * pad}" height="{h - 60}" '
                     'fill="none" stroke="#999"/>')
        for i in range(5):
            yv = ymax * i / 4
            yy = y0 + 25 + (h - 60) * (1 - i / 4)
            parts.append(f'<text x="{pad - 5}" y="{yy:.0f}" text-anchor="end">{yv:.0f}</text>')
            xv = xmax * i / 4
            xx = pad + (w - 2 * pad) * i / 4
            parts.append(f'<text x="{xx:.0f}" y="{y0 + h - 20}" text-anchor="middle">{xv:.0f}</text>')
        for n, (label, colour, pts) in enumerate(series):
            coords = " ".join(f"{pad + (w - 2 * pad) * x / xmax:.1f},"
                              f"{y0 + 25 + (h - 60) * (1 - y / ymax):.1f}" for x, y in pts)
            dash = label.split(" ")[-1]
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                         f'stroke-dasharray="{dashes.get(dash, "")}" points="{coords}"/>')
            parts.append(f'<text x="{w - pad - 200}" y="{y0 + 40 + 14 * n}" fill="{colour}">{label}</text>')

    panel(0, "req/s (creates + label-selected lists) against objects", [
        (case, colours[case], [(r["objects"], r["req_per_s"]) for r in rs if not r.get("final")])
        for case, rs in results.items()])
    panel(h + 20, "RSS (MiB) against objects", [
        (f"{case} {proc}", colours[case], [(r["objects"], r["rss_mib"].get(proc, 0)) for r in rs
                                           if not r.get("final")])
        for case, rs in results.items() for proc in ("kube-apiserver", "storage", "aggregation")
        if any(proc in r["rss_mib"] for r in rs)])
    parts.append("</svg>")
    return "\n".join(parts)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated, in this order")
    p.add_argument("--clients", type=int, default=120)
    p.add_argument("--checkpoints", default="1000,10000,25000,50000,100000",
                   help="object counts to measure at (bulk-loaded before each window)")
    p.add_argument("--window", type=int, default=60, help="seconds measured at each checkpoint")
    p.add_argument("--warmup", type=int, default=5, help="seconds of load before each window")
    p.add_argument("--grow", action="store_true",
                   help="the old mode: the clients alone grow the namespace to --objects")
    p.add_argument("--objects", type=int, default=100_000, help="with --grow: stop at this count")
    p.add_argument("--report-every", type=int, default=10_000, help="with --grow: a line every this many")
    p.add_argument("--no-index", dest="index", action="store_false",
                   help="no label index on KubeFabric (the Query API scans the namespace)")
    p.add_argument("--json", help="write every line here")
    p.add_argument("--svg", help="write the plot here")
    args = p.parse_args()
    try:
        args.checkpoints = sorted(int(c) for c in args.checkpoints.split(",") if c)
    except ValueError:
        p.error(f"--checkpoints wants comma-separated object counts, got {args.checkpoints!r}")
    if not args.checkpoints or args.checkpoints[0] < 1 or args.window < 1:
        p.error("--checkpoints must be positive counts and --window at least 1 second")
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}: choose from {', '.join(CASES)}")
    build_loadgen()
    loadavg = {"start": os.getloadavg()}
    print(f"load average at start: {loadavg['start']}", flush=True)
    results: dict[str, list[dict]] = {}
    started = time.monotonic()
    for case in cases:
        with tempfile.TemporaryDirectory(prefix=f"kf-bench-{case}-") as work:
            results[case] = run_case(case, args, Path(work))
        if args.json:   # after every case: a later case's failure keeps the earlier ones
            Path(args.json).write_text(json.dumps({"cases": results, "load": loadavg}, indent=1))
    print()
    print(table(results))
    loadavg["end"] = os.getloadavg()
    print(f"\n{len(cases)} case(s) in {time.monotonic() - started:.0f} s; load average at start {loadavg['start']}, "
          f"at end {loadavg['end']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"cases": results, "load": loadavg}, indent=1))
    if args.svg:
        Path(args.svg).write_text(svg(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
