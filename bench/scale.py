"""Scale in objects (issue 21, point 4): grow each store to 1M keys of 1 KiB and watch what the
object count costs.

    uv run python bench/scale.py --json /tmp/scale.json --plot bench/scale.png      # ~30-40 min
    uv run python bench/scale.py --servers kubefabric --steps 20000,50000            # a quick look

Servers, one after another, each fresh: `etcd` (3.7.3), `kubefabric` (`kubefabric serve`,
embedded SQLite) and `kf-pg` (kv-router in front of `kubefabric backend-pg` on a private
PostgreSQL 15). Each grows through `--steps` (default 100k, 250k, 500k, 1M keys under one prefix):
loadgen's load workload writes the keys the step adds, `--batch` Puts per Txn from 64 goroutines
(the same for every server). After each step, one client on a connection of its own measures:

- disk: the data directory (etcd, kubefabric: files on disk, WAL included) or the database's size
  (`pg_database_size`: tables, indexes and TOAST; PostgreSQL's WAL is shared by the server);
- memory: the RSS of each of our processes and etcd's; PostgreSQL's as the PSS summed over its
  processes (shared buffers counted once);
- get: `--gets` linearizable point gets of random keys, p50 and p99 (ms);
- page: paginated lists as kube-apiserver reads them (Range with limit `--page`, the next page
  from the last key + 1 at the first page's revision): 20 pages from each of three places in the
  range (its start, middle and last tenth), p50 and p99 of the pages;
- full list: every page from the start, in seconds (stopped after `--list-cap` seconds: then the
  pages done are reported);
- load: keys per second while the step loaded.

The targets of issue 21: RSS of kv-router and the shard service flat in the number of objects
(etcd's grows with its data), list latency per page flat.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import sys
import time
from pathlib import Path

import grpc

from kubefabric.proto.etcdserverpb import rpc_pb2

import run as bench  # noqa: E402 - bench/run.py (loadgen, servers): the script's folder is on sys.path

PREFIX = "/scale/"          # loadgen appends load/ and the key number (8 digits)
KEYS = PREFIX + "load/"
VAL_SIZE = 1024
# 1M keys of 1 KiB take ~1.3 GB in etcd and more in SQLite (log and current rows): past the
# default 2 GiB quota both would refuse writes
QUOTA = ("--quota-backend-bytes", str(16 << 30))
SERVERS = ("etcd", "kubefabric", "kf-pg")
PLACES = (0.0, 0.5, 0.9)    # where in the range the page samples start
PAGES_PER_PLACE = 20


def key(i: int) -> bytes:
    return f"{KEYS}{i:08d}".encode()


def range_end(prefix: str) -> bytes:
    p = prefix.encode()
    return p[:-1] + bytes([p[-1] + 1])


# ------------------------------------------------------------------------------------ servers

def start(kind: str, bins: Path):
    if kind == "kf-pg":
        return bench.backends_module().start_stack("kf-pg", bench.LIVE, 120.0, QUOTA)
    return bench.start_server(kind, bins if kind == "etcd" else None, 120.0, list(QUOTA))


def processes(server) -> dict[str, int]:
    """{name: pid} of the server's own processes (not the database server)."""
    if hasattr(server, "pids"):
        return {f"{server.kind} {name}": pid for name, pid in server.pids().items()}
    return {server.kind: server.proc.pid}


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def tree_pss_mib(root: int) -> float:
    """PSS of `root` and its descendants (PostgreSQL's processes share their buffers)."""
    total = 0.0
    for pid in bench.process_tree([root], bench.process_stats()):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith("Pss:")) / 1024
        except OSError:
            pass  # exited meanwhile
    return total


def memory(server) -> dict[str, float]:
    out = {name: round(rss_mib(pid), 1) for name, pid in processes(server).items()}
    database = server.database_pid() if hasattr(server, "database_pid") else None
    if database:
        out["postgres (PSS)"] = round(tree_pss_mib(database), 1)
    return out


def disk_bytes(server) -> int:
    if getattr(server, "database", ""):
        return asyncio.run(_pg_size(server))
    return sum(p.stat().st_size for p in Path(server.workdir).rglob("*") if p.is_file())


async def _pg_size(stack) -> int:
    import asyncpg  # the uv environment has it (backend-pg)
    dsn = bench.backends_module().DB_SERVERS["postgres"].dsn(stack.database)
    conn = await asyncpg.connect(dsn.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return await conn.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await conn.close()


# ------------------------------------------------------------------------------ measurements

def load(endpoint: str, lo: int, hi: int, batch: int) -> float:
    """Writes keys lo..hi-1; returns the seconds it took."""
    t0 = time.monotonic()
    r = bench.run_loadgen(endpoint, "load", 64, 1200, 0, [
        "--range-keys", str(hi), "--load-from", str(lo), "--load-batch", str(batch),
        "--val-size", str(VAL_SIZE), "--prefix", PREFIX, "--max-time", "1h"])
    if "failed" in r:
        raise RuntimeError(f"loading keys {lo}..{hi - 1} failed: {r['failed']}")
    return time.monotonic() - t0


def percentiles(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {"p50_ms": round(statistics.median(ms), 2),
            "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2), "n": len(ms)}


class Client:
    """Plain unary calls on one connection; responses are parsed (as a client would)."""

    def __init__(self, endpoint: str):
        self.channel = grpc.insecure_channel(endpoint, options=[("grpc.max_receive_message_length", -1)])
        self.range = self.channel.unary_unary(
            "/etcdserverpb.KV/Range", request_serializer=rpc_pb2.RangeRequest.SerializeToString,
            response_deserializer=rpc_pb2.RangeResponse.FromString)

    def close(self) -> None:
        self.channel.close()

    def timed_range(self, req: rpc_pb2.RangeRequest) -> tuple[float, rpc_pb2.RangeResponse]:
        t0 = time.perf_counter()
        resp = self.range(req, timeout=600)
        return (time.perf_counter() - t0) * 1000, resp


def gets(client: Client, n: int, count: int, rng: random.Random) -> dict:
    times = []
    for _ in range(count):
        ms, resp = client.timed_range(rpc_pb2.RangeRequest(key=key(rng.randrange(n))))
        if len(resp.kvs) != 1:
            raise RuntimeError(f"a get returned {len(resp.kvs)} keys")
        times.append(ms)
    return percentiles(times)


def pages(client: Client, start: bytes, count: int, limit: int, rev: int = 0):
    """Up to `count` pages from `start` as kube-apiserver lists: yields (ms, response)."""
    end = range_end(KEYS)
    for _ in range(count):
        ms, resp = client.timed_range(rpc_pb2.RangeRequest(key=start, range_end=end, limit=limit,
                                                           revision=rev))
        yield ms, resp
        if not resp.more:
            return
        rev = rev or resp.header.revision
        start = resp.kvs[-1].key + b"\0"


def page_latency(client: Client, n: int, limit: int) -> dict:
    times = []
    for place in PLACES:
        times += [ms for ms, _ in pages(client, key(int(n * place)), PAGES_PER_PLACE, limit)]
    return percentiles(times)


def full_list(client: Client, limit: int, cap_s: float) -> dict:
    t0, listed, count = time.monotonic(), 0, 0
    for _, resp in pages(client, KEYS.encode(), 1 << 40, limit):
        listed += len(resp.kvs)
        count = count or resp.count
        if time.monotonic() - t0 > cap_s:
            return {"seconds": round(time.monotonic() - t0, 1), "keys": listed, "complete": False}
    return {"seconds": round(time.monotonic() - t0, 1), "keys": listed, "complete": True,
            "first_page_count": count}


def measure_server(kind: str, args, bins: Path, out: list[dict]) -> None:
    """Grows a fresh `kind` server through args.steps; a row per step is appended to `out`."""
    server = start(kind, bins)
    loaded, rng = 0, random.Random(7)
    try:
        for n in args.steps:
            seconds = load(server.endpoint, loaded, n, args.batch)
            row = {"server": kind, "keys": n, "load_keys_per_s": round((n - loaded) / seconds),
                   "load_average": round(os.getloadavg()[0], 1)}
            loaded = n
            client = Client(server.endpoint)
            try:
                row["get"] = gets(client, n, args.gets, rng)
                row["page"] = page_latency(client, n, args.page)
                row["full_list"] = full_list(client, args.page, args.list_cap)
            finally:
                client.close()
            if row["full_list"]["complete"] and row["full_list"]["keys"] != n:
                raise RuntimeError(f"{kind}: the full list returned {row['full_list']['keys']} keys, not {n}")
            row["disk_mib"] = round(disk_bytes(server) / 2**20)
            row["memory_mib"] = memory(server)
            bench.log(f"{kind} {n}: {json.dumps(row)}")
            out.append(row)
    finally:
        bench.stop_server(server)


# ----------------------------------------------------------------------------------- report

def table(rows: list[dict]) -> str:
    lines = ["| server | keys | load keys/s | disk MiB | RSS MiB (per process) | get p50/p99 ms "
             "| page p50/p99 ms | full list s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mem = ", ".join(f"{name} {v:.0f}" for name, v in r["memory_mib"].items())
        fl = r["full_list"]
        full = f"{fl['seconds']}" if fl["complete"] else f"> {fl['seconds']} ({fl['keys']} keys)"
        lines.append(f"| {r['server']} | {r['keys']:,} | {r['load_keys_per_s']:,} | {r['disk_mib']:,} "
                     f"| {mem} | {r['get']['p50_ms']}/{r['get']['p99_ms']} "
                     f"| {r['page']['p50_ms']}/{r['page']['p99_ms']} | {full} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: str, limit: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    servers = list(dict.fromkeys(r["server"] for r in rows))
    for s in servers:
        mine = [r for r in rows if r["server"] == s]
        xs = [r["keys"] for r in mine]
        for name in mine[0]["memory_mib"]:
            axes[0].plot(xs, [r["memory_mib"].get(name) for r in mine], marker="o", label=name)
        axes[1].plot(xs, [r["page"]["p50_ms"] for r in mine], marker="o", label=f"{s} p50")
        axes[1].plot(xs, [r["page"]["p99_ms"] for r in mine], marker="x", ls="--", label=f"{s} p99")
        axes[2].plot(xs, [r["get"]["p99_ms"] for r in mine], marker="o", label=s)
        axes[3].plot(xs, [r["disk_mib"] for r in mine], marker="o", label=s)
    titles = ("memory (MiB)", f"list page of {limit} (ms)",
              "point get p99 (ms)", "disk (MiB)")
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel("keys of 1 KiB")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


OPTIONS = (  # flag, type, default, help
    ("--steps", str, "100000,250000,500000,1000000", "key counts to grow through"),
    ("--batch", int, 100, "Puts per Txn while loading (<= 128)"),
    ("--gets", int, 1000, "point gets per step"),
    ("--page", int, 500, "list page size (kube-apiserver's default)"),
    ("--list-cap", float, 600, "seconds a full list may take"),
    ("--json", str, None, "write the rows here"),
    ("--plot", str, None, "write the plot here (png or svg)"),
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--servers", default=",".join(SERVERS), help="comma-separated, of " + ", ".join(SERVERS))
    for flag, kind, default, text in OPTIONS:
        p.add_argument(flag, type=kind, default=default, help=text)
    p.add_argument("--add", action="append", default=[], metavar="JSON",
                   help="rows of an earlier run (its --json) to put in the table and plot too, "
                        "e.g. etcd's from a run of its own (--servers '' measures nothing)")
    args = p.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    args.added = []
    for path in args.add:
        try:
            args.added += json.loads(Path(path).read_text())["rows"]
        except (OSError, ValueError, KeyError) as err:
            p.error(f"--add {path}: not the --json of a bench/scale.py run ({err})")
    unknown = set(args.servers) - set(SERVERS)
    if unknown:
        p.error(f"unknown server(s) {', '.join(sorted(unknown))}: choose from {', '.join(SERVERS)}")
    try:
        args.steps = sorted({int(s) for s in args.steps.split(",") if s})
    except ValueError:
        p.error(f"--steps takes whole numbers, not {args.steps!r}")
    if not args.steps or args.steps[0] < 1:
        p.error("--steps needs positive key counts")
    if not 1 <= args.batch <= 128:
        p.error("--batch must be between 1 and 128 (etcd's --max-txn-ops)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    bench.build_loadgen()
    bins = bench.reference_bin_dir() if "etcd" in args.servers else None
    rows: list[dict] = list(args.added)
    signals = bench.install_signal_handlers()
    try:
        for kind in args.servers:
            measure_server(kind, args, bins, rows)
            if args.json:  # after each server: a long run interrupted keeps what it measured
                Path(args.json).write_text(json.dumps({"page_limit": args.page, "rows": rows}, indent=1))
    except KeyboardInterrupt:
        bench.log("interrupted: the table has what was measured")
    finally:
        bench.cleanup()
        for sig, handler in signals.items():
            signal.signal(sig, handler)
    if not rows:
        bench.log("nothing measured")
        return 1
    print(table(rows))
    if args.plot:
        plot(rows, args.plot, args.page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
