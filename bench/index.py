"""The label index (issue 17): list-by-label latency and put throughput, with and without it.

    uv run python bench/index.py                              # 10k and 100k objects, ~15 min
    uv run python bench/index.py --sizes 10000,100000,1000000 --plot bench/index.png --json out.json
    uv run python bench/index.py --only puts --clients 16,64   # put throughput only
    # the parts in separate runs, then one table and plot:
    uv run python bench/index.py --sizes 1000000 --only lists --json 1m.json
    uv run python bench/index.py --only puts --rounds 3 --json puts.json
    uv run python bench/index.py --only none --add 1m.json --add puts.json --plot bench/index.png

For each size N: `kubefabric serve --topology` (embedded SQLite) whose rule for the custom
resource widgets.bench.example.com has `index: {labels: true, fields: [spec.customer]}`, and
etcd 3.7.3, both loaded with the same N objects of 1 KiB (loadgen --workload load --value k8s:
labels app=a<i mod 100>, so `app=a7` matches 1%). Then, each timed from the client:
- index: Query API `app=a7` on the widgets range (answered from the index);
- scan: the same selector on the group's range, which no index covers, so the shard reads
  every object and filters (what the index saves);
- etcd range: etcd's full range of the N objects in pages of 1,000 (what kube-apiserver reads
  to filter in memory), and KubeFabric's for comparison.
Put throughput: loadgen put of 1 KiB objects over 100,000 keys on two fresh servers, one whose
topology indexes them and one without index (target: indexing costs <= 15 %).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc

from kubefabric.proto.etcdserverpb import rpc_pb2
from kubefabric.proto.kubefabric.query.v1 import query_pb2, query_pb2_grpc

import run as bench  # noqa: E402 - bench/run.py (loadgen, servers): the script's folder is on sys.path

GROUP = "/registry/bench.example.com/"
PREFIX = GROUP + "widgets"          # loadgen appends /<workload>/
TOPOLOGY = """\
shards: [{{name: main, endpoint: embedded}}]
rules:
  - customresource: {{group: bench.example.com, resource: widgets}}
    shard: main{index}
"""
INDEX = "\n    index: {labels: true, fields: [spec.customer]}"
PAGE = 1000
VAL_SIZE = 1024
# Both servers refuse writes past 2 GiB by default (etcd's quota); 1M objects of 1 KiB take
# about 5.4 GB in SQLite (log, kv and index rows, WAL) and about 1.5 GB in etcd.
QUOTA = ["--quota-backend-bytes", str(8 << 30)]


def key(workload: str, i: int) -> bytes:
    return f"{PREFIX}/{workload}/{i:08d}".encode()


def prefix_end(p: bytes) -> bytes:
    return p[:-1] + bytes([p[-1] + 1])


TOPOLOGY_DIRS: list[Path] = []  # removed at exit, after the servers that read them stopped


def kubefabric(indexed: bool, extra: list[str] | None = None):
    workdir = Path(tempfile.mkdtemp(prefix="kf-bench-index-"))
    TOPOLOGY_DIRS.append(workdir)
    topology = workdir / "topology.yaml"
    topology.write_text(TOPOLOGY.format(index=INDEX if indexed else ""))
    return bench.start_server("kubefabric", None, 120.0,
                              ["--topology", str(topology), *QUOTA, *(extra or [])])


def raw(channel: grpc.Channel, method: str, request_cls) -> grpc.UnaryUnaryMultiCallable:
    """A unary call whose response stays bytes (the client does not parse what it times)."""
    return channel.unary_unary(method, request_serializer=request_cls.SerializeToString,
                               response_deserializer=None)


def timed(fn, repeat: int) -> dict:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"p50_ms": statistics.median(times), "max_ms": times[-1], "runs": repeat}


def full_range(endpoint: str, n: int) -> int:
    """Every object, PAGE keys per Range (as a paginated list); returns the bytes received."""
    with grpc.insecure_channel(endpoint, options=[("grpc.max_receive_message_length", -1)]) as ch:
        call = raw(ch, "/etcdserverpb.KV/Range", rpc_pb2.RangeRequest)
        total = 0
        for lo in range(0, n, PAGE):
            end = key("load", lo + PAGE) if lo + PAGE < n else prefix_end(key("load", 0)[:-8])
            total += len(call(rpc_pb2.RangeRequest(key=key("load", lo), range_end=end), timeout=600))
        return total


def label_query(endpoint: str, start: bytes) -> tuple[int, bool]:
    req = query_pb2.QueryRequest(key=start, range_end=prefix_end(start), labels=[
        query_pb2.LabelRequirement(key="app", operator=query_pb2.LabelRequirement.EQUALS,
                                   values=["a7"])])
    with grpc.insecure_channel(endpoint, options=[("grpc.max_receive_message_length", -1)]) as ch:
        resp = query_pb2_grpc.QueryStub(ch).Query(req, timeout=1200)
    return len(resp.kvs), resp.indexed


def load(endpoint: str, n: int) -> float:
    t0 = time.monotonic()
    # the load workload ignores --duration; run_loadgen's watchdog allows 3 x duration + 1 min
    r = bench.run_loadgen(endpoint, "load", 64, 3600, 0, [
        "--range-keys", str(n), "--value", "k8s", "--val-size", str(VAL_SIZE), "--prefix", PREFIX,
        "--max-time", "3h"])
    if "failed" in r:
        raise RuntimeError(f"loading {n} objects failed: {r['failed']}")
    return time.monotonic() - t0


def lists(n: int, bins: Path, repeat: int) -> dict:
    out: dict = {"objects": n}
    kf = kubefabric(indexed=True)
    try:
        out["load_average"] = [round(os.getloadavg()[0], 1)]
        out["kubefabric_load_s"] = load(kf.endpoint, n)
        bench.log(f"{n}: loaded kubefabric in {out['kubefabric_load_s']:.0f} s; waiting for the index")
        wait_ready(kf.endpoint)
        matches, indexed = label_query(kf.endpoint, f"{PREFIX}/".encode())
        assert indexed and matches == n // 100, (matches, indexed)
        out["index"] = timed(lambda: label_query(kf.endpoint, f"{PREFIX}/".encode()), repeat)
        matches, indexed = label_query(kf.endpoint, GROUP.encode())
        assert not indexed and matches == n // 100, (matches, indexed)
        out["scan"] = timed(lambda: label_query(kf.endpoint, GROUP.encode()), max(2, repeat // 10))
        out["kubefabric_range"] = timed(lambda: full_range(kf.endpoint, n), max(2, repeat // 10))
    finally:
        bench.stop_server(kf)
    etcd = bench.start_server("etcd", bins, 60.0, QUOTA)
    try:
        out["etcd_load_s"] = load(etcd.endpoint, n)
        out["etcd_range"] = timed(lambda: full_range(etcd.endpoint, n), max(2, repeat // 10))
    finally:
        bench.stop_server(etcd)
    out["load_average"].append(round(os.getloadavg()[0], 1))
    bench.log(f"{n}: index {out['index']['p50_ms']:.1f} ms, scan {out['scan']['p50_ms']:.0f} ms, "
              f"kubefabric range {out['kubefabric_range']['p50_ms']:.0f} ms, etcd range "
              f"{out['etcd_range']['p50_ms']:.0f} ms")
    return out


def wait_ready(endpoint: str, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(endpoint) as ch:
        stub = query_pb2_grpc.QueryStub(ch)
        while True:
            st = stub.Indexes(query_pb2.IndexesRequest(), timeout=30).indexes
            if st and all(s.ready for s in st):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"index not ready after {timeout} s")
            time.sleep(0.5)


def puts(clients: list[int], duration: float, warmup: float, rounds: int) -> list[dict]:
    """Put throughput of 1 KiB objects, indexed and not, alternating which goes first."""
    out = []
    for r in range(rounds):
        for indexed in ((True, False) if r % 2 == 0 else (False, True)):
            server = kubefabric(indexed)
            try:
                for c in clients:
                    res = bench.run_loadgen(server.endpoint, "put", c, duration, warmup, [
                        "--value", "k8s", "--val-size", str(VAL_SIZE), "--prefix", PREFIX,
                        "--key-space", "100000"], cpu_roots=bench.server_pids(server))
                    res.update(indexed=indexed, round=r, load=os.getloadavg()[0])
                    out.append(res)
                    bench.log(f"put, {c} clients, {'indexed' if indexed else 'no index'}: "
                              f"{res.get('ops_per_sec', 0):.0f} ops/s, {res.get('cpu_us_per_op', 0):.0f} us CPU/put "
                              f"(load {res['load']:.1f}) {res.get('failed', '')}")
            finally:
                bench.stop_server(server)
    return out


def put_medians(results: list[dict], c: int, indexed: bool) -> tuple[float, float]:
    """(median puts/s, median server CPU us per put) of the rounds of one case."""
    runs = [r for r in results if r["clients"] == c and r["indexed"] == indexed and "failed" not in r]
    if not runs:
        return 0.0, float("nan")
    return (statistics.median(r.get("ops_per_sec", 0) for r in runs),
            statistics.median(r.get("cpu_us_per_op", float("nan")) for r in runs))


def put_table(results: list[dict], clients: list[int]) -> str:
    """Medians over the rounds; CPU per put is the figure to compare on a shared machine."""
    lines = ["| clients | no index: CPU us/put | indexed: CPU us/put | CPU cost | no index: puts/s "
             "| indexed: puts/s | throughput cost | load average |", "|---|---|---|---|---|---|---|---|"]
    for c in clients:
        (ops0, cpu0), (ops1, cpu1) = put_medians(results, c, False), put_medians(results, c, True)
        loads = [r["load"] for r in results if r["clients"] == c and "load" in r]
        load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "?"
        lines.append(f"| {c} | {cpu0:,.0f} | {cpu1:,.0f} | {cpu1 / cpu0 - 1:+.0%} | {ops0:,.0f} | "
                     f"{ops1:,.0f} | {1 - ops1 / ops0 if ops0 else float('nan'):.0%} | {load} |")
    return "\n".join(lines)


def list_table(results: list[dict]) -> str:
    lines = ["| objects | index query | range + filter (scan) | KubeFabric full range | etcd full range |",
             "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['objects']:,} | {r['index']['p50_ms']:.1f} ms | {r['scan']['p50_ms']:,.0f} ms | "
                     f"{r['kubefabric_range']['p50_ms']:,.0f} ms | {r['etcd_range']['p50_ms']:,.0f} ms |")
    return "\n".join(lines)


def plot(lists_out: list[dict], puts_out: list[dict], clients: list[int], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    sizes = [r["objects"] for r in lists_out]
    for label, field in (("index query (app=a7, 1 %)", "index"), ("range + filter (scan)", "scan"),
                         ("KubeFabric full range", "kubefabric_range"), ("etcd full range", "etcd_range")):
        a.plot(sizes, [r[field]["p50_ms"] for r in lists_out], marker="o", label=label)
    a.set(xscale="log", yscale="log", xlabel="objects of 1 KiB", ylabel="ms (median)",
          title="List by label")
    a.grid(True, which="both", alpha=0.3)
    a.legend()
    width = 0.35
    for k, indexed in enumerate((False, True)):
        cpu = [put_medians(puts_out, c, indexed)[1] for c in clients]
        b.bar([i + k * width for i in range(len(clients))], cpu, width,
              label="indexed (2 labels + 3 fields)" if indexed else "no index")
    b.set(xticks=[i + width / 2 for i in range(len(clients))], xticklabels=[str(c) for c in clients],
          xlabel="clients", ylabel="server CPU us per put (median of rounds)",
          title="Cost of a put, 1 KiB objects")
    b.legend(loc="lower center")
    fig.suptitle("KubeFabric label index (embedded SQLite)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--sizes", default="10000,100000", help="object counts (default 10000,100000)")
    p.add_argument("--only", choices=("lists", "puts", "none"),
                   help="one half of the benchmark (none: only table and plot the --add files)")
    p.add_argument("--clients", default="16,64", help="put clients (default 16,64)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per put run")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each put run")
    p.add_argument("--rounds", type=int, default=2, help="put rounds, alternating the order")
    p.add_argument("--repeat", type=int, default=20, help="index queries per size (scan/ranges: a tenth)")
    p.add_argument("--json", help="write every result to this file")
    p.add_argument("--add", action="append", default=[], metavar="JSON",
                   help="also table and plot the results of an earlier run's --json file "
                        "(e.g. a separate 1M-object run); repeatable")
    p.add_argument("--plot", help="write the figure (PNG) to this file")
    args = p.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    results: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if args.only != "none":
        bench.build_loadgen()
    try:
        if args.only not in ("puts", "none"):
            bins = bench.reference_bin_dir()
            results["lists"] = [lists(int(n), bins, args.repeat) for n in args.sizes.split(",")]
        if args.only not in ("lists", "none"):
            results["puts"] = puts(clients, args.duration, args.warmup, args.rounds)
    finally:
        bench.cleanup()
        for d in TOPOLOGY_DIRS:
            shutil.rmtree(d, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    added = [json.loads(Path(f).read_text()) for f in args.add]
    lists_all = sorted([*results.get("lists", []), *(r for a in added for r in a.get("lists", []))],
                       key=lambda r: r["objects"])
    puts_all = [*results.get("puts", []), *(r for a in added for r in a.get("puts", []))]
    if lists_all:
        print(list_table(lists_all))
    if puts_all:
        print(put_table(puts_all, clients))
    if args.plot and lists_all and puts_all:
        plot(lists_all, puts_all, clients, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
