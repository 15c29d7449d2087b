#!/usr/bin/env python3
"""Benchmark KubeFabric against etcd 3.7.3 and kine v0.17.5 (SQLite) on this machine.

    uv run python bench/run.py                       # full run: ~4 minutes
    uv run python bench/run.py --quick               # smoke run: short windows
    uv run python bench/run.py --only put,get --servers etcd,kubefabric --json out.json
    uv run python bench/run.py --backends            # shard backends, group commit on/off: ~6 minutes
    uv run python bench/run.py --shards              # write scaling over 1, 2, 3 shard services: ~2 minutes
    uv run python bench/run.py --watch               # watch event latency and 1,000-watcher fan-out: ~5 minutes

For every server and workload it starts the server on loopback with a fresh temporary data
directory, runs bench/bin/loadgen (Go, etcd's clientv3) at each client count, then stops the
server and removes its data. Servers are stopped and data removed on exit, Ctrl-C and SIGTERM too.
Standard library only, except the shard-service kinds (kf-sqlite-svc, kf-pg, kf-mysql and their
-nogc variants, kf-hub), which bench/backends.py starts with the test harness from the uv environment.
See bench/README.md.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LOADGEN_SRC = BENCH / "loadgen"
LOADGEN = BENCH / "bin" / "loadgen"
# Relative to the repo root so it also works in CI clones, where shared/ sits beside the repo.
BUILD_SH = "../shared/tools/etcd/build.sh"

ALL_SERVERS = ("etcd", "kine", "kubefabric")  # the default comparison
# bench/floor.py: a bare grpc.aio server answering Range, Put and Status with constants (uvloop;
# floor-asyncio: the standard event loop): what each call costs the framework alone; floor-sync:
# grpcio's synchronous server answering the same, floor-sync-bridge: it running each call on a
# uvloop loop in another thread (bench/floor.py --serving)
FLOOR_SERVERS = ("floor", "floor-asyncio", "floor-sync", "floor-sync-bridge")
# floor+STAGE: the floor with kubefabric serve's pieces up to STAGE (bench/floor.py STAGES)
FLOOR_STAGES = ("options", "make_server", "register", "etcd_unary", "kv", "imports", "settle", "store",
                "router")
STAGED_FLOORS = tuple(f"floor+{s}" for s in FLOOR_STAGES)
# kv-router in front of a shard service, with group commit and without (-nogc): bench/backends.py
# kf-hub: the kf-sqlite-svc stack with NATS JetStream and the watch-hub serving the router's watches
# (<kind>-w2: the router with --workers 2)
STACK_KINDS = tuple(k + s for k in ("kf-sqlite-svc", "kf-pg", "kf-mysql") for s in ("", "-nogc", "-w2")) + ("kf-hub",)
# `kubefabric serve --workers 2`: the embedded server plus one worker process on the same port
WORKER_SERVERS = ("kubefabric-w2",)
KNOWN_SERVERS = ALL_SERVERS + FLOOR_SERVERS + STAGED_FLOORS + STACK_KINDS + WORKER_SERVERS
ALL_WORKLOADS = ("put", "get", "range", "watch-latency")  # the default run
WORKLOADS = ALL_WORKLOADS + ("watch-fanout",)  # --only may also ask for these
# --watch: event latency through each watch path, one writer at a modest rate
WATCH_SERVERS = ("etcd", "kubefabric", "kf-sqlite-svc", "kf-hub")
WATCH_WORKLOADS = ("watch-latency", "watch-fanout")
WATCH_CLIENTS = (1, 16)  # watch-latency watchers, each on a stream of its own (unless --clients)
WATCH_RATE = 50  # watch-latency writes per second
FANOUT_WATCHERS, FANOUT_CONNS, FANOUT_RATES = 1000, 10, (10, 50)
FANOUT_DRAIN = 30.0  # seconds a fan-out run waits for the last write's events before counting misses
# --backends: every shard backend with group commit on and off ("kubefabric" is the embedded shard,
# which has no --group-commit flag, so it runs with group commit only)
BACKENDS = ("kubefabric", "kf-sqlite-svc", "kf-pg", "kf-mysql")
BACKEND_WORKLOADS = ("put", "get")
# --shards: kv-router with a topology over N shard services ("shards-N", bench/backends.py), the
# keys spread over six prefixes that the topology maps evenly onto the N shards
SHARD_COUNTS = (1, 2, 3)
SHARD_DBS = ("sqlite", "postgres", "mariadb")
SHARD_CLIENTS = {"put": [16, 64], "get": [16]}  # unless --clients says otherwise


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- build

def build_loadgen(force: bool = False) -> Path:
    """go build bench/loadgen into bench/bin/loadgen unless the binary is newer than its sources."""
    sources = [p for p in LOADGEN_SRC.iterdir() if p.suffix == ".go" or p.name in ("go.mod", "go.sum")]
    newest = max(p.stat().st_mtime for p in sources)
    if not force and LOADGEN.exists() and LOADGEN.stat().st_mtime >= newest:
        return LOADGEN
    if not shutil.which("go"):
        raise SystemExit("go is not installed: it is needed to build bench/loadgen")
    LOADGEN.parent.mkdir(parents=True, exist_ok=True)
    log(f"building {LOADGEN.relative_to(REPO)} ...")
    subprocess.run(["go", "build", "-trimpath", "-o", str(LOADGEN), "."], cwd=LOADGEN_SRC, check=True)
    return LOADGEN


def reference_bin_dir() -> Path:
    """Runs shared/tools/etcd/build.sh (idempotent; ~4 min the first time) and returns its bin folder."""
    script = (REPO / BUILD_SH).resolve()
    if not script.exists():
        raise SystemExit(f"{script} not found: it builds etcd 3.7.3 and kine v0.17.5")
    log("building/locating etcd 3.7.3 and kine v0.17.5 (bash ../shared/tools/etcd/build.sh) ...")
    out = subprocess.run(["bash", BUILD_SH], cwd=REPO, check=True, stdout=subprocess.PIPE, text=True).stdout
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    if not lines:
        raise SystemExit("build.sh printed no folder")
    return Path(lines[-1])


# -------------------------------------------------------------------------------------- servers

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    kind: str
    endpoint: str
    proc: subprocess.Popen
    workdir: Path
    log_path: Path
    argv: list[str] = field(default_factory=list)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL after 10 s, then remove its data."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


SHARD_DB = "sqlite"  # --shard-db: the database of the --shards services
LIVE: list = []  # every server (or backends.Stack) not yet stopped: cleanup() stops them
_backends = None  # bench/backends.py, loaded on first use of a shard-service kind


def backends_module():
    """bench/backends.py (needs the uv environment), under a name of its own."""
    global _backends
    if _backends is None:
        spec = importlib.util.spec_from_file_location("kf_bench_backends", BENCH / "backends.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        _backends = module
    return _backends


def cleanup() -> None:
    while LIVE:
        LIVE.pop().stop()
    if _backends is not None:
        _backends.cleanup()  # the PostgreSQL / MariaDB servers, after the stacks on them


def server_argv(kind: str, port: int, workdir: Path, bins: Path | None,
                extra: list[str] | None = None) -> list[str]:
    url = f"http://127.0.0.1:{port}"
    if kind == "etcd":
        peer = f"http://127.0.0.1:{free_port()}"
        return [str(bins / "etcd"), "--name", "bench", "--data-dir", str(workdir / "data"),
                "--listen-client-urls", url, "--advertise-client-urls", url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"bench={peer}",
                "--log-level", "error", *(extra or [])]
    if kind == "kine":
        # No --endpoint: kine's default SQLite backend, ./db/state.db under its cwd (workdir).
        return [str(bins / "kine"), "--listen-address", f"127.0.0.1:{port}",
                "--metrics-bind-address", "0"]
    if kind in ("kubefabric", *WORKER_SERVERS):
        workers = ["--workers", kind.rpartition("-w")[2]] if kind in WORKER_SERVERS else []
        args = ["serve", "--listen-client-urls", url, "--data-dir", str(workdir / "data"), *workers,
                *(extra or [])]
        if importlib.util.find_spec("kubefabric") is not None:
            return [sys.executable, "-m", "kubefabric.cli", *args]
        return ["uv", "run", "--project", str(REPO), "kubefabric", *args]
    if kind in FLOOR_SERVERS + STAGED_FLOORS:
        args = [str(BENCH / "floor.py"), "--listen", f"127.0.0.1:{port}",
                "--event-loop", "asyncio" if kind == "floor-asyncio" else "uvloop"]
        if kind.startswith("floor-sync"):
            args += ["--serving", kind.removeprefix("floor-")]
        if kind in STAGED_FLOORS:
            args += ["--stage", kind.partition("+")[2]]
        if importlib.util.find_spec("kubefabric") is not None:
            return [sys.executable, *args]
        return ["uv", "run", "--project", str(REPO), "python", *args]
    raise ValueError(kind)


def start_server(kind: str, bins: Path | None, ready_timeout: float = 60.0,
                 extra: list[str] | None = None):
    if kind in STACK_KINDS or kind.startswith("shards-"):
        return start_stack(kind, ready_timeout)
    workdir = Path(tempfile.mkdtemp(prefix=f"kf-bench-{kind}-"))
    port = free_port()
    argv = server_argv(kind, port, workdir, bins, extra)
    log_path = workdir / "server.log"
    # Servers run with their defaults: configuration from the environment is not inherited.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KINE_", "ETCD_", "KUBEFABRIC_"))}
    # Own session: Ctrl-C reaches run.py only, which then stops the servers in order.
    proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                            stdout=log_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(kind, f"127.0.0.1:{port}", proc, workdir, log_path, argv)
    LIVE.append(server)
    deadline = time.monotonic() + ready_timeout
    while True:
        if not server.alive():
            tail = server.log_tail()
            stop_server(server)
            raise RuntimeError(f"{kind} exited with {proc.returncode} before it was ready:\n{tail}")
        probe = subprocess.run([str(LOADGEN), "--workload", "status", "--endpoints", server.endpoint,
                                "--max-time", "1s"], capture_output=True, text=True)
        if probe.returncode == 0:
            return server
        if time.monotonic() > deadline:
            tail = server.log_tail()
            stop_server(server)
            raise RuntimeError(f"{kind} not ready after {ready_timeout:.0f}s: {probe.stderr.strip()}\n{tail}")
        time.sleep(0.1)


def start_stack(kind: str, ready_timeout: float):
    """A shard service + `kubefabric serve --shard` (bench/backends.py); RuntimeError if it fails."""
    try:
        if kind.startswith("shards-"):
            return backends_module().start_sharded(int(kind.split("-")[1]), LIVE, ready_timeout, SHARD_DB)
        return backends_module().start_stack(kind, LIVE, ready_timeout)
    except Exception as e:
        while LIVE and LIVE[-1].kind == kind:  # the partly started stack
            LIVE.pop().stop()
        raise RuntimeError(f"{type(e).__name__}: {e}") from e


def stop_server(server) -> None:
    server.stop()
    if server in LIVE:
        LIVE.remove(server)


# ------------------------------------------------------------------------------------- loadgen

WINDOW_START = "loadgen: measured window starts"  # loadgen --mark-window writes these to stderr
WINDOW_END = "loadgen: measured window ends"


def run_loadgen(endpoint: str, workload: str, clients: int, duration: float, warmup: float,
                extra: list[str] | None = None, cpu_roots: list[int] | None = None) -> dict:
    """One loadgen run; its JSON result. With `cpu_roots` (server pids) also the CPU time of those
    processes and all their descendants during the measured window (loadgen --mark-window):
    `server_cpu_s` and `cpu_us_per_op` = that CPU time / the window's operations."""
    max_time = max(120.0, 3 * (duration + warmup) + 60)  # preload included
    argv = [str(LOADGEN), "--endpoints", endpoint, "--workload", workload, "--clients", str(clients),
            "--duration", f"{duration}s", "--warmup", f"{warmup}s", "--max-time", f"{max_time:.0f}s",
            *(extra or [])]
    if cpu_roots:
        argv.append("--mark-window")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.kill()
    timer = threading.Timer(max_time + 30, expire)
    timer.start()
    marks: dict[str, WindowMark] = {}
    stderr: list[str] = []
    try:
        for line in proc.stderr:  # stdout is one JSON line at the end: it cannot fill its pipe
            text = line.rstrip("\n")
            if cpu_roots and text in (WINDOW_START, WINDOW_END):
                marks[text] = window_mark(cpu_roots, proc.pid)
            else:
                stderr.append(text)
        stdout = proc.stdout.read()
        rc = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:  # interrupted (Ctrl-C): leave no loadgen behind
            proc.kill()
            proc.wait()
    if expired.is_set():
        return {"workload": workload, "clients": clients, "failed": f"loadgen timed out after {max_time + 30:.0f}s"}
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if rc != 0 or not lines:
        return {"workload": workload, "clients": clients,
                "failed": ("\n".join(stderr).strip() or f"loadgen exited {rc}")[-500:]}
    result = json.loads(lines[-1])
    if WINDOW_START in marks and WINDOW_END in marks and result.get("ops"):
        result.update(window_cpu(marks[WINDOW_START], marks[WINDOW_END], result["ops"]))
    return result


class WindowMark(NamedTuple):
    """The clocks read at one end of loadgen's measured window."""
    wall_s: float
    server_cpu_s: float   # the server's processes (tree_cpu_seconds)
    loadgen_cpu_s: float
    machine_busy_s: float  # all CPUs, /proc/stat: what was not idle or waiting for I/O


def window_mark(cpu_roots: list[int], loadgen_pid: int) -> WindowMark:
    return WindowMark(time.monotonic(), tree_cpu_seconds(cpu_roots), tree_cpu_seconds([loadgen_pid]),
                      machine_busy_seconds())


def window_cpu(start: WindowMark, end: WindowMark, ops: int) -> dict:
    """CPU figures of a measured window: the server's CPU per request, and the cores the server,
    loadgen and the whole machine kept busy (a server can only scale onto the cores left)."""
    wall = max(end.wall_s - start.wall_s, 1e-9)
    cpu = end.server_cpu_s - start.server_cpu_s
    loadgen = end.loadgen_cpu_s - start.loadgen_cpu_s
    return {"server_cpu_s": round(cpu, 3), "cpu_us_per_op": round(1e6 * cpu / ops, 1),
            "loadgen_cpu_us_per_op": round(1e6 * loadgen / ops, 1),
            "server_cores": round(cpu / wall, 2), "loadgen_cores": round(loadgen / wall, 2),
            "machine_busy_cores": round((end.machine_busy_s - start.machine_busy_s) / wall, 2)}


def machine_busy_seconds() -> float:
    """CPU time all CPUs spent on anything but idle and I/O wait since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal; guests are in user
    return busy / os.sysconf("SC_CLK_TCK")


def process_stats() -> dict[int, list[str]]:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, ...), by pid, now."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                out[int(entry)] = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
    return out


def process_tree(roots: list[int], stats: dict[int, list[str]]) -> set[int]:
    """`roots` that still run and all their descendants (stats: process_stats())."""
    parent = {pid: int(fields[1]) for pid, fields in stats.items()}
    tree, grew = {pid for pid in roots if pid in stats}, True
    while grew:
        more = {pid for pid, ppid in parent.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    return tree


def tree_cpu_seconds(roots: list[int]) -> float:
    """utime + stime of the processes `roots` and all their descendants now, in seconds (children
    that exited are not counted: a server's worker processes live as long as the server)."""
    stats = process_stats()
    ticks = sum(int(stats[pid][11]) + int(stats[pid][12]) for pid in process_tree(roots, stats))
    return ticks / os.sysconf("SC_CLK_TCK")


def server_pids(server) -> list[int]:
    """The root pids of a server's processes: the process itself, or a stack's router, shard
    services and database server (each counted with its descendants by tree_cpu_seconds)."""
    if hasattr(server, "pids"):
        roots = list(server.pids().values())
        database = server.database_pid()
        return roots + ([database] if database else [])
    return [server.proc.pid]


# --------------------------------------------------------------------------------------- table

def fmt_num(v: float | None, width: int, digits: int = 0) -> str:
    if v is None:
        return "-".rjust(width)
    return f"{v:,.{digits}f}".rjust(width)


def fmt_ms(v: float | None, width: int) -> str:
    if v is None:
        return "-".rjust(width)
    return (f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}").rjust(width)


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-".rjust(6)
    return f"{a / b:.2f}".rjust(6)


def render_table(results: list[dict], servers: list[str], workloads: list[str], clients: list[int]) -> str:
    """Per server: ops/s, p50, p99 and CPU per request; with several rounds each cell shows the
    round of median CPU per request (the figure of merit; --json has every round)."""
    runs: dict = {}
    for r in results:
        runs.setdefault((r["server"], r["workload"], r["clients"]), []).append(r)
    by = {k: median_cpu_run(v) for k, v in runs.items()}
    rounds = max((r.get("round", 1) for r in results), default=1)

    def val(server: str, w: str, c: int, k: str) -> float | None:
        r = by.get((server, w, c))
        return None if r is None or "failed" in r else r.get(k)

    head1 = f"{'workload':<14}{'clients':>7} "
    head2 = f"{'':<14}{'':>7} "
    for s in servers:
        head1 += f"| {s:^34} "
        head2 += f"| {'ops/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'cpu us':>7} "
    ratio_cols = [b for b in ("etcd", "kine", "floor") if b in servers and "kubefabric" in servers]
    for b in ratio_cols:
        head1 += f"| {'kf/' + b:^20} "
        head2 += f"| {'ops/s':>6} {'p99':>6} {'cpu':>6} "
    lines = [head1.rstrip(), head2.rstrip(), "-" * len(head2.rstrip())]
    notes = []
    for w in workloads:
        for c in clients:
            line = f"{w:<14}{c:>7} "
            for s in servers:
                r = by.get((s, w, c))
                mark = " "
                if r is not None and ("failed" in r or r.get("errors")):
                    mark = "!"
                    notes.append(f"! {s} {w} c={c}: " + (r.get("failed") or
                                 f"{r['errors']} errors, first: {r.get('first_error', '')}"))
                line += (f"| {fmt_num(val(s, w, c, 'ops_per_sec'), 10)}{mark}"
                         f"{fmt_ms(val(s, w, c, 'p50_ms'), 7)} {fmt_ms(val(s, w, c, 'p99_ms'), 7)} "
                         f"{fmt_num(val(s, w, c, 'cpu_us_per_op'), 7)} ")
            for b in ratio_cols:
                line += (f"| {ratio(val('kubefabric', w, c, 'ops_per_sec'), val(b, w, c, 'ops_per_sec'))} "
                         f"{ratio(val('kubefabric', w, c, 'p99_ms'), val(b, w, c, 'p99_ms'))} "
                         f"{ratio(val('kubefabric', w, c, 'cpu_us_per_op'), val(b, w, c, 'cpu_us_per_op'))} ")
            lines.append(line.rstrip())
    if "watch-latency" in workloads:
        lines += ["", "watch-latency detail (per server: writer Put p50 | Put sent -> event p50 / p99 ms | "
                  "events that beat the Put ack | missed events)"]
        for c in clients:
            line = f"{'watch-latency':<14}{c:>7} "
            for s in servers:
                r = by.get((s, "watch-latency", c))
                if r is None or "failed" in r:
                    line += f"| {s}: -  "
                    continue
                line += (f"| {s}: {fmt_ms(r.get('put_p50_ms'), 0)} | {fmt_ms(r.get('send_to_event_p50_ms'), 0)} / "
                         f"{fmt_ms(r.get('send_to_event_p99_ms'), 0)} | {r.get('events_before_ack', 0)} | "
                         f"{r.get('missed_events', 0)}  ")
            lines.append(line.rstrip())
    lines.append("")
    lines.append("ops/s: completed requests per second (watch-latency: events delivered per second, all watchers).")
    lines.append("p50/p99: request latency (watch-latency: writer's Put ack -> event received by a watcher).")
    lines.append("cpu us: the server's CPU time (user + system, all its processes) per request in the measured window.")
    if rounds > 1:
        lines.append(f"{rounds} rounds, servers in alternating order; each cell shows the round of median cpu us "
                     "(all rounds' cpu us: --json).")
    lines.append("kf/X ops/s > 1 means KubeFabric is faster; kf/X p99 and cpu < 1 mean its tail latency / CPU per request is lower.")
    lines += cpu_ratio_lines(by, servers, workloads, clients)
    lines += cores_lines(by, servers, workloads, clients)
    return "\n".join(lines + notes)


def cores_lines(by: dict, servers: list[str], workloads: list[str], clients: list[int]) -> list[str]:
    """Per server: the cores its processes, loadgen and the whole machine kept busy in the measured
    window: where the machine was full, a server could not have gone faster by using more cores."""
    def cell(server: str, w: str, c: int) -> str:
        r = by.get((server, w, c))
        if r is None or "failed" in r or "machine_busy_cores" not in r:
            return "-"
        return f"{r['server_cores']:.2f} / {r['loadgen_cores']:.2f} / {r['machine_busy_cores']:.2f}"

    rows = [(w, c, [cell(s, w, c) for s in servers]) for w in workloads for c in clients]
    rows = [row for row in rows if any(x != "-" for x in row[2])]
    if not rows:
        return []
    width = max(22, *(len(s) + 1 for s in servers))
    out = ["", f"Cores busy in the measured window: server / loadgen / whole machine (of {os.cpu_count()})",
           f"{'workload':<14}{'clients':>7} " + "".join(f"{s:>{width}}" for s in servers)]
    out += [f"{w:<14}{c:>7} " + "".join(f"{x:>{width}}" for x in cells) for w, c, cells in rows]
    return out


def median_cpu_run(runs: list[dict]) -> dict:
    """The run of median CPU per request (the lower middle one of an even count); failed runs
    only when all failed."""
    ok = sorted((r for r in runs if "failed" not in r), key=lambda r: r.get("cpu_us_per_op") or 0)
    return ok[(len(ok) - 1) // 2] if ok else runs[-1]


def cpu_ratio_lines(by: dict, servers: list[str], workloads: list[str], clients: list[int]) -> list[str]:
    """Every server's CPU per request over etcd's and over the floor's (grpc.aio answering with
    constants), where those ran: how much of a call is the framework's own cost."""
    bases = [b for b in ("etcd", "floor") if b in servers]
    others = [s for s in servers if s not in bases or s == "floor"]
    cols = [(s, b) for b in bases for s in others if s != b]
    if not cols:
        return []

    def cpu(server: str, w: str, c: int) -> float | None:
        r = by.get((server, w, c))
        return None if r is None or "failed" in r else r.get("cpu_us_per_op")

    width = max(len(f"{s}/{b}") for s, b in cols) + 1
    out = ["", "CPU per request, ratios (< 1: less CPU per request than the base)",
           f"{'workload':<14}{'clients':>7} " + "".join(f"{s + '/' + b:>{width}}" for s, b in cols)]
    for w in workloads:
        for c in clients:
            cells = [ratio(cpu(s, w, c), cpu(b, w, c)).strip() for s, b in cols]
            if any(x != "-" for x in cells):
                out.append(f"{w:<14}{c:>7} " + "".join(f"{x:>{width}}" for x in cells))
    return out


def backend_cell(r: dict | None, notes: list[str], label: str) -> str:
    """`ops/s p99` of one result, `!` after ops/s if it had errors (noted in `notes`)."""
    ok = r is not None and "failed" not in r
    mark = " "
    if r is not None and ("failed" in r or r.get("errors")):
        mark = "!"
        notes.append(f"! {label}: " + (r.get("failed") or f"{r['errors']} errors, first: {r.get('first_error', '')}"))
    return (f"{fmt_num(r.get('ops_per_sec') if ok else None, 9)}{mark}"
            f"{fmt_ms(r.get('p99_ms') if ok else None, 8)} {fmt_num(r.get('cpu_us_per_op') if ok else None, 6)}")


def render_backends_table(results: list[dict], backends: list[str], workloads: list[str],
                          clients: list[int]) -> str:
    """One row per backend, workload and client count: group commit on | off | on/off ratios."""
    by = {(r["server"], r["workload"], r["clients"]): r for r in results}

    def val(server: str, w: str, c: int, k: str) -> float | None:
        r = by.get((server, w, c))
        return None if r is None or "failed" in r else r.get(k)

    head1 = f"{'backend':<15}{'workload':<9}{'clients':>7} | {'group commit':^25} | {'txn per write':^25} | {'gc speed-up':^13}"
    head2 = (f"{'':<15}{'':<9}{'':>7} | {'ops/s':>9} {'p99 ms':>8} {'cpu us':>6} | {'ops/s':>9} {'p99 ms':>8} {'cpu us':>6} | "
             f"{'ops/s':>6} {'p99':>6}")
    lines = [head1, head2, "-" * len(head2)]
    notes: list[str] = []
    for w in workloads:
        for b in backends:
            name = "embedded" if b == "kubefabric" else b
            nogc = None if b == "kubefabric" else b + "-nogc"
            for c in clients:
                on = backend_cell(by.get((b, w, c)), notes, f"{b} {w} c={c}")
                off = backend_cell(by.get((nogc, w, c)), notes, f"{nogc} {w} c={c}")
                speed = (f"{ratio(val(b, w, c, 'ops_per_sec'), val(nogc, w, c, 'ops_per_sec'))} "
                         f"{ratio(val(b, w, c, 'p99_ms'), val(nogc, w, c, 'p99_ms'))}")
                lines.append(f"{name:<15}{w:<9}{c:>7} | {on} | {off} | {speed}")
        lines.append("")
    lines.append("group commit: concurrent writes share one database transaction (the default); txn per write: "
                 "the shard service with --group-commit false.")
    lines.append("gc speed-up: ops/s with group commit / without (> 1: group commit does more); p99 with / "
                 "without (< 1: lower tail with it).")
    lines.append("embedded: `kubefabric serve` with its own SQLite shard (no router hop; it has no "
                 "--group-commit switch, so group commit only).")
    lines.append("cpu us: CPU time per request of all the stack's processes (router, shard service, database "
                 "server) in the measured window.")
    return "\n".join(lines + notes)


def render_shards_table(results: list[dict], counts: list[int], plan: list[tuple[str, int]], db: str) -> str:
    """Rows: workload x clients; per shard count ops/s, p99 and ops/s / (N=first); then where the
    CPU went during each run."""
    by: dict = {}  # each cell's best round (most ops/s; a failed round only if all failed)
    for r in results:
        k = (r["server"], r["workload"], r["clients"])
        if k not in by or r.get("ops_per_sec", -1) > by[k].get("ops_per_sec", -1):
            by[k] = r
    base = counts[0]
    rounds = max((r.get("round", 1) for r in results), default=1)

    def ops(n: int, w: str, c: int) -> float | None:
        r = by.get((f"shards-{n}", w, c))
        return None if r is None or "failed" in r else r.get("ops_per_sec")

    head1 = f"{'workload':<9}{'clients':>7} "
    head2 = f"{'':<9}{'':>7} "
    for n in counts:
        label = f"{n} shard" + ("s" if n > 1 else "")
        head1 += f"| {label:^33} "
        head2 += f"| {'ops/s':>9} {'p99 ms':>8} {'cpu us':>6} {f'/N={base}':>7} "
    lines = [head1.rstrip(), head2.rstrip(), "-" * len(head2.rstrip())]
    notes: list[str] = []
    for w, c in plan:
        line = f"{w:<9}{c:>7} "
        for n in counts:
            cell = backend_cell(by.get((f"shards-{n}", w, c)), notes, f"{n} shards {w} c={c}")
            line += f"| {cell} {ratio(ops(n, w, c), ops(base, w, c))} "
        lines.append(line.rstrip())
    lines += ["", "CPU during each loadgen run, % of one core (warm-up included; the machine has "
              f"{os.cpu_count()} cores = {100 * (os.cpu_count() or 1)}%):",
              f"{'shards':>6} {'workload':<9}{'clients':>7} | {'router':>6} | {'shards (each)':<22} | "
              f"{'loadgen':>7} | {'db':>4} | {'all':>5} {'other':>6} | {'CPU us/op: router':>17} {'shards':>6}"]
    for n in counts:
        for w, c in plan:
            r = by.get((f"shards-{n}", w, c))
            cpu = (r or {}).get("cpu")
            if not cpu:
                continue
            each = " ".join(f"{v:.0f}" for v in cpu["shards"])
            ops_s = max(r.get("ops_per_sec") or 0, 1e-9)
            lines.append(f"{n:>6} {w:<9}{c:>7} | {cpu['router']:>6.0f} | {sum(cpu['shards']):>4.0f} ({each})"
                         f"{'':<{max(0, 15 - len(each))}} | {cpu['loadgen']:>7.0f} | {cpu.get('database', 0):>4.0f} | "
                         f"{cpu['machine']:>5.0f} "
                         f"{cpu['other']:>6.0f} | {1e4 * cpu['router'] / ops_s:>17.0f} "
                         f"{1e4 * sum(cpu['shards']) / ops_s:>6.0f}")
    lines += ["",
              f"N shards: N `kubefabric backend-{'sqlite' if db == 'sqlite' else 'pg' if db == 'postgres' else 'mysql'}` "
              "services (group commit on), each on its own database, behind one `kubefabric serve --topology`;",
              "the load's keys are spread over 6 prefixes that the topology maps evenly onto the N shards "
              f"(loadgen --prefixes). /N={base}: ops/s over the {base}-shard run's.",
              "db: the PostgreSQL/MariaDB server (--shard-db), all its processes. "
              "all: busy CPU of the whole machine (/proc/stat); other: all minus router, shards, loadgen and db "
              "(other work on the machine, and the kernel's share not charged to a process).",
              "CPU us/op: CPU microseconds per measured request (approximate: the CPU includes the warm-up);",
              "cpu us (first table): all the stack's processes, router + shards + database, in the measured window only."]
    if rounds > 1:
        lines.append(f"{rounds} rounds, shard counts in alternating order; each cell shows its best round "
                     "(most ops/s) and that round's CPU.")
    return "\n".join(lines + notes)


def writes_per_sec(r: dict) -> float | None:
    """The watch writer's measured Puts per second."""
    return r["writes"] / r["seconds"] if r.get("writes") and r.get("seconds") else None


def render_watch_table(results: list[dict], servers: list[str], cases: list) -> str:
    """--watch: one row per case and server: write->event and ack->event percentiles over every
    (watcher, event) pair, the slowest watcher per event, and the ratios to etcd."""
    by: dict = {}  # each cell's best round (lowest write->event p99; a failed round only if all failed)
    for r in results:
        k = (r["server"], r["case"])
        def key(x):
            return (0, x.get("send_to_event_p99_ms") or 0) if "failed" not in x else (1, 0)
        if k not in by or key(r) < key(by[k]):
            by[k] = r
    rounds = max((r.get("round", 1) for r in results), default=1)

    def val(server: str, case: str, k: str) -> float | None:
        r = by.get((server, case))
        return None if r is None or "failed" in r else r.get(k)

    w = max([len(s) for s in servers] + [14])
    head1 = (f"{'server':<{w}} | {'write -> event ms':^15} | {'ack -> event ms':^15} | {'slowest watcher':^15} | "
             f"{'put ms':>6} | {'writes/s':>8} | {'missed':>6} | {'CPU %':<16} | {'vs etcd: write -> event':^23}")
    head2 = (f"{'':<{w}} | {'p50':>7} {'p99':>7} | {'p50':>7} {'p99':>7} | {'p50':>7} {'p99':>7} | "
             f"{'p50':>6} | {'':>8} | {'':>6} | {'all (busiest)':<16} | {'p50':>7} {'p99':>7} {'slow99':>7}")
    lines = [head1, head2, "-" * len(head2)]
    notes: list[str] = []
    for case in cases:
        lines.append(case.label)
        fanout = case.workload == "watch-fanout"
        for s in servers:
            r = by.get((s, case.label))
            if r is None:
                continue
            if "failed" in r:
                notes.append(f"! {s} {case.label}: {r['failed'][:300]}")
                lines.append(f"{s:<{w}} | failed (see below)")
                continue
            mark = "!" if r.get("errors") else " "
            if r.get("errors"):
                notes.append(f"! {s} {case.label}: {r['errors']} errors, first: {r.get('first_error', '')}")
            cpu = (r.get("cpu") or {}).get("procs") or {}
            busiest = max(cpu.items(), key=lambda kv: kv[1], default=("", 0))
            cpu_cell = (f"{sum(cpu.values()):.0f}" + (f" ({busiest[0]} {busiest[1]:.0f})" if len(cpu) > 1 else "")
                        if cpu else "-")
            several = fanout or case.watchers > 1  # with one watcher, the slowest is that one
            slow = ((fmt_ms(r.get("slowest_send_p50_ms"), 7), fmt_ms(r.get("slowest_send_p99_ms"), 7)) if several
                    else ("-".rjust(7), "-".rjust(7)))

            def vs_etcd(k: str) -> str:
                return ratio(val(s, case.label, k), val("etcd", case.label, k)).rjust(7)
            ratios = "" if s == "etcd" else (f"{vs_etcd('send_to_event_p50_ms')} {vs_etcd('send_to_event_p99_ms')} "
                                             + (vs_etcd("slowest_send_p99_ms") if several else "-".rjust(7)))
            lines.append(f"{s:<{w}} | {fmt_ms(r.get('send_to_event_p50_ms'), 7)} {fmt_ms(r.get('send_to_event_p99_ms'), 7)} | "
                         f"{fmt_ms(r.get('p50_ms'), 7)} {fmt_ms(r.get('p99_ms'), 7)} | {slow[0]} {slow[1]} | "
                         f"{fmt_ms(r.get('put_p50_ms'), 6)} | {fmt_num(writes_per_sec(r), 8, 1)}{mark}| "
                         f"{r.get('missed_events', 0):>6} | {cpu_cell:<16} | {ratios}".rstrip())
        lines.append("")
    lines += [
        "write -> event: the writer's Put sent -> a watcher has the event, over every (watcher, event) pair (includes the Put).",
        "ack -> event: the Put's response (commit ack) -> a watcher has the event; an event that beats the ack counts as 0.",
        "slowest watcher: per write, write -> event of the last watcher to get it (writes that some watcher missed are "
        "counted in missed instead).",
        "missed: (watcher, event) pairs not delivered by the end of the run (fan-out: " f"{FANOUT_DRAIN:g} s after the last "
        "write); must be 0. writes/s: the writer's rate reached (below the target: its Puts took longer than the interval).",
        "CPU %: the server's processes during the loadgen run (watch set-up and drain included), % of one core; "
        "busiest: its busiest process.",
        "vs etcd: the server's write -> event latency over etcd's (p50, p99, slowest watcher p99); > 1: slower than etcd.",
        "kubefabric: embedded (`kubefabric serve`, in-process bus); kubefabric-w2: the same with "
        "`--workers 2` (one worker process besides it on the same port); kf-sqlite-svc: kv-router following the shard "
        "service's Feed RPC; kf-hub: kv-router serving watches from the watch-hub on NATS JetStream.",
    ]
    if rounds > 1:
        lines.append(f"{rounds} rounds, servers in alternating order; each cell shows its best round (lowest write -> event p99).")
    return "\n".join(lines + notes)


# ---------------------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 1 s windows after 0.25 s warm-up")
    p.add_argument("--only", help="workloads, comma-separated (default: all; --backends: put,get)")
    p.add_argument("--servers", help=f"servers, comma-separated (default: {','.join(ALL_SERVERS)}; "
                   f"also {','.join(FLOOR_SERVERS + STACK_KINDS + WORKER_SERVERS)}; floor: bare grpc.aio "
                   "answering put/get with constants (floor-sync: grpcio's synchronous server, "
                   "floor-sync-bridge: it running each call on a uvloop loop); floor+STAGE: the floor with kubefabric serve's "
                   f"pieces up to STAGE, one of {','.join(FLOOR_STAGES)} (bench/floor.py); "
                   "kubefabric-w2: `kubefabric serve --workers 2`; kf-*-w2: the router of a shard-service "
                   "stack with --workers 2)")
    p.add_argument("--backends", nargs="?", const=",".join(BACKENDS), metavar="LIST",
                   help="shard-backend comparison: each of LIST (default: all of "
                   f"{','.join(BACKENDS)}) with group commit on and off, one table")
    p.add_argument("--shards", nargs="?", const=",".join(map(str, SHARD_COUNTS)), metavar="COUNTS",
                   help="shard scaling: kv-router over each of COUNTS (default 1,2,3) shard services, "
                   "put at 16 and 64 clients and get at 16 unless --only/--clients say otherwise, one table")
    p.add_argument("--watch", nargs="?", const=",".join(WATCH_SERVERS), metavar="LIST",
                   help="watch event latency: each of LIST (default: "
                   f"{','.join(WATCH_SERVERS)}) with watch-latency ({'/'.join(map(str, WATCH_CLIENTS))} watchers, "
                   f"--rate) and watch-fanout (--watchers over --watch-conns streams at each of --fanout-rates), "
                   "one table with the ratios to etcd")
    p.add_argument("--rate", type=float, help=f"--watch: watch-latency writer puts per second (default {WATCH_RATE})")
    p.add_argument("--watchers", type=int, default=FANOUT_WATCHERS,
                   help=f"--watch: fan-out watchers (default {FANOUT_WATCHERS})")
    p.add_argument("--watch-conns", type=int, default=FANOUT_CONNS,
                   help=f"--watch: fan-out client connections, one watch stream each (default {FANOUT_CONNS}); "
                   "the watchers are spread evenly over them")
    p.add_argument("--fanout-rates", default=",".join(map(str, FANOUT_RATES)),
                   help=f"--watch: fan-out writer puts per second, one run each (default {','.join(map(str, FANOUT_RATES))})")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the servers this many times, every other round in reverse order "
                   "(1,2,3 then 3,2,1: load from elsewhere that rises or falls over the run favours no N); "
                   "the table shows each cell's best round (the comparison of servers: the round of median "
                   "CPU per request), --json has them all; not with --backends")
    p.add_argument("--shard-db", default="sqlite", choices=SHARD_DBS,
                   help="--shards: the shard services' database (default sqlite: backend-sqlite, a file each)")
    p.add_argument("--clients", help="client counts, comma-separated (default: 1,16,64)")
    p.add_argument("--duration", type=float, help="measured seconds per run (default 5, --quick 1)")
    p.add_argument("--warmup", type=float, help="unmeasured seconds before each run (default 1, --quick 0.25)")
    p.add_argument("--json", metavar="FILE", help="also write all results as JSON to FILE")
    p.add_argument("--loadgen-arg", action="append", default=[], metavar="ARG",
                   help="extra flag passed to every loadgen run, e.g. --loadgen-arg=--val-size=1024")
    p.add_argument("--kubefabric-arg", action="append", default=[], metavar="ARG",
                   help="extra flag for `kubefabric serve`, e.g. --kubefabric-arg=--sqlite-synchronous=NORMAL")
    a = p.parse_args(argv)
    default_workloads = (BACKEND_WORKLOADS if a.backends or a.shards else WATCH_WORKLOADS if a.watch
                         else ALL_WORKLOADS)
    a.workloads = split_list(a.only or ",".join(default_workloads))
    a.client_counts = [int(c) for c in split_list(a.clients or
                                                  (",".join(map(str, WATCH_CLIENTS)) if a.watch else "1,16,64"))]
    # client counts per workload: --shards has its own plan unless --clients is given
    a.workload_clients = {w: (SHARD_CLIENTS.get(w, a.client_counts) if a.shards and not a.clients
                              else a.client_counts) for w in a.workloads}
    for w in a.workloads:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w!r} (choose from {', '.join(WORKLOADS)})")
    if a.watch and (a.servers or a.backends or a.shards):
        p.error("--watch LIST chooses the servers: drop --servers/--backends/--shards")
    if a.watch and not set(a.workloads) <= set(WATCH_WORKLOADS):
        p.error(f"--watch runs {' and '.join(WATCH_WORKLOADS)} only")
    if not a.watch and (a.rate is not None or a.watchers != FANOUT_WATCHERS or a.watch_conns != FANOUT_CONNS
                        or a.fanout_rates != ",".join(map(str, FANOUT_RATES))):
        p.error("--rate, --watchers, --watch-conns and --fanout-rates go with --watch")
    a.fanout_rate_list = [float(r) for r in split_list(a.fanout_rates)]
    if a.watchers < 1 or a.watch_conns < 1 or not a.fanout_rate_list or any(r <= 0 for r in a.fanout_rate_list):
        p.error("--watchers, --watch-conns and --fanout-rates must be positive")
    a.watch_rate = WATCH_RATE if a.rate is None else a.rate
    if a.backends and a.servers:
        p.error("--backends LIST chooses the servers: drop --servers")
    if a.shards and (a.servers or a.backends):
        p.error("--shards chooses the servers: drop --servers/--backends")
    a.shard_counts = [int(n) for n in split_list(a.shards or "")]
    if a.shards and (not a.shard_counts or any(n < 1 for n in a.shard_counts)):
        p.error("--shards COUNTS: positive integers, e.g. 1,2,3")
    if a.rounds < 1 or (a.rounds > 1 and a.backends):
        p.error("--rounds N: N >= 1, and not with --backends")
    if a.shards and not set(a.workloads) <= {"put", "get"}:
        p.error("--shards runs put and get only (range and watch-latency would cross shards)")
    a.backend_list = split_list(a.backends or "")
    for b in a.backend_list:
        if b not in BACKENDS:
            p.error(f"unknown backend {b!r} (choose from {', '.join(BACKENDS)})")
    if a.shards:
        a.server_list = [f"shards-{n}" for n in a.shard_counts]
    elif a.watch:
        a.server_list = split_list(a.watch)
    else:
        a.server_list = backend_servers(a.backend_list) if a.backends else split_list(a.servers or ",".join(ALL_SERVERS))
    for s in a.server_list:
        if s not in KNOWN_SERVERS and not a.shards:
            p.error(f"unknown server {s!r} (choose from {', '.join(KNOWN_SERVERS)})")
    if a.duration is None:
        a.duration = 1.0 if a.quick else 5.0
    if a.warmup is None:
        a.warmup = 0.25 if a.quick else 1.0
    a.watch_cases = watch_cases(a) if a.watch else []
    return a


@dataclass(frozen=True)
class WatchCase:
    """One loadgen run of --watch: a watch workload, its watchers, connections and write rate."""
    workload: str
    watchers: int
    rate: float
    conns: int = 0  # 0: loadgen's default (watch-latency: a connection per 8 watchers)

    @property
    def label(self) -> str:
        if self.workload == "watch-fanout":
            return f"fan-out {self.watchers} watchers/{self.conns} streams, {self.rate:g} writes/s"
        return f"watch-latency {self.watchers} watcher{'s' if self.watchers > 1 else ''}, {self.rate:g} writes/s"

    def loadgen_args(self) -> list[str]:
        out = [f"--rate={self.rate:g}"]
        if self.workload == "watch-fanout":  # one stream per connection (loadgen's default for fan-out)
            out += [f"--conns={self.conns}", f"--streams={self.conns}", f"--drain={FANOUT_DRAIN:g}s"]
        return out


def watch_cases(a: argparse.Namespace) -> list[WatchCase]:
    cases = []
    if "watch-latency" in a.workloads:
        cases += [WatchCase("watch-latency", c, a.watch_rate) for c in a.client_counts]
    if "watch-fanout" in a.workloads:
        conns = min(a.watch_conns, a.watchers)
        cases += [WatchCase("watch-fanout", a.watchers, r, conns) for r in a.fanout_rate_list]
    return cases


def split_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def backend_servers(backends: list[str]) -> list[str]:
    """Each backend with group commit, then without (the embedded shard has no switch)."""
    return [kind for b in backends for kind in ((b,) if b == "kubefabric" else (b, b + "-nogc"))]


def run_workload(kind: str, workload: str, args: argparse.Namespace, bins: Path | None) -> list[dict]:
    """A fresh server (and data dir) for one workload: earlier workloads' history does not weigh on
    later ones; the client counts of the workload share it (preload is reused)."""
    if kind in FLOOR_SERVERS + STAGED_FLOORS and workload not in ("put", "get"):
        log(f"[{kind}] {workload}: skipped (the floor answers Put, Range of one key and Status only)")
        return []
    try:
        server = start_server(kind, bins, extra=args.kubefabric_arg if kind == "kubefabric" else None)
    except RuntimeError as e:
        log(f"[{kind}] failed to start: {e}")
        return [{"server": kind, "workload": workload, "clients": c, "failed": f"start: {brief_error(e)}"}
                for c in args.workload_clients.get(workload, args.client_counts)]
    results = []
    sharded = kind.startswith("shards-")
    extra = list(args.loadgen_arg)
    if sharded:
        extra.append("--prefixes=" + ",".join(backends_module().SHARD_PREFIXES))
    try:
        for c in args.workload_clients.get(workload, args.client_counts):
            if not server.alive():
                r = {"workload": workload, "clients": c, "failed": f"server exited: {server.log_tail(5)}"}
            elif sharded:
                sample = CpuSample(server.pids(), server.database_pid())
                r = run_loadgen(server.endpoint, workload, c, args.duration, args.warmup, extra, server_pids(server))
                r["cpu"] = sample.finish()
            else:
                r = run_loadgen(server.endpoint, workload, c, args.duration, args.warmup, extra, server_pids(server))
            r["server"] = kind
            results.append(r)
            log_result(kind, workload, c, r)
    finally:
        stop_server(server)
    return results


def run_watch_workload(kind: str, workload: str, args: argparse.Namespace, bins: Path | None) -> list[dict]:
    """--watch: a fresh server for one watch workload, its cases (watchers, rate) in turn on it,
    with the CPU of the server's processes during each."""
    cases = [c for c in args.watch_cases if c.workload == workload]
    try:
        server = start_server(kind, bins, extra=args.kubefabric_arg if kind == "kubefabric" else None)
    except RuntimeError as e:
        log(f"[{kind}] failed to start: {e}")
        return [{"server": kind, "workload": workload, "clients": c.watchers, "case": c.label, "rate": c.rate,
                 "failed": f"start: {brief_error(e)}"} for c in cases]
    results = []
    try:
        for case in cases:
            if not server.alive():
                r = {"workload": workload, "clients": case.watchers, "failed": f"server exited: {server.log_tail(5)}"}
            else:
                pids = server.pids() if hasattr(server, "pids") else {kind: server.proc.pid}
                sample = CpuSample(pids)
                r = run_loadgen(server.endpoint, workload, case.watchers, args.duration, args.warmup,
                                [*args.loadgen_arg, *case.loadgen_args()])
                r["cpu"] = sample.finish()
            r.update(server=kind, case=case.label, rate=case.rate)
            results.append(r)
            log_watch_result(kind, case, r)
    finally:
        stop_server(server)
    return results


def log_watch_result(kind: str, case, r: dict) -> None:
    if "failed" in r:
        log(f"[{kind}] {case.label}: FAILED: {r['failed'][:300]}")
    else:
        log(f"[{kind}] {case.label}: write->event p50 {r.get('send_to_event_p50_ms', 0):.2f} "
            f"p99 {r.get('send_to_event_p99_ms', 0):.2f} ms, slowest watcher p99 {r.get('slowest_send_p99_ms', 0):.2f} ms, "
            f"{r['ops_per_sec']:,.0f} events/s, missed {r.get('missed_events', 0)}, errors {r['errors']}")


class CpuSample:
    """CPU used between construction and finish(), in % of one core: per process of a stack (from
    /proc/PID/stat), by the children reaped meanwhile (the loadgen run; getrusage) and by the
    whole machine (/proc/stat). `database`: a database server's pid, counted with all its
    descendants (PostgreSQL's backends are processes of their own)."""

    def __init__(self, pids: dict[str, int], database: int | None = None):
        self.pids = pids
        self.database = database
        self.tick = os.sysconf("SC_CLK_TCK")
        self.start = (time.monotonic(), self._procs(), self._children(), self._machine())

    def _stat(self, pid: int) -> list[str] | None:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None

    def _cpu(self, fields: list[str] | None) -> float:
        return (int(fields[11]) + int(fields[12])) / self.tick if fields else 0.0  # utime + stime

    def _procs(self) -> dict[str, float]:
        out = {name: self._cpu(self._stat(pid)) for name, pid in self.pids.items()}
        if self.database:  # the server and every descendant, by pid (so exits are not double counted)
            stats = {}
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit() and (fields := self._stat(int(entry.name))):
                    stats[int(entry.name)] = fields
            tree, grew = {self.database}, True
            while grew:
                more = {pid for pid, f in stats.items() if int(f[1]) in tree} - tree
                tree |= more
                grew = bool(more)
            out.update({f"db-{pid}": self._cpu(stats.get(pid)) for pid in tree})
        return out

    @staticmethod
    def _children() -> float:
        import resource
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime

    def _machine(self) -> float:
        try:
            v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return 0.0
        return (sum(v[:8]) - v[3] - v[4]) / self.tick  # all but idle and iowait (guest is in user)

    def finish(self) -> dict:
        t0, procs0, children0, machine0 = self.start
        wall = max(time.monotonic() - t0, 1e-6)
        procs = self._procs()
        pct = {name: 100 * (procs[name] - procs0.get(name, 0.0)) / wall for name in procs}
        shards = [round(v, 1) for name, v in pct.items() if name.startswith("shard")]
        router = round(pct.get("router", 0.0), 1)
        loadgen = round(100 * (self._children() - children0) / wall, 1)
        machine = round(100 * (self._machine() - machine0) / wall, 1)
        database = round(sum(v for name, v in pct.items() if name.startswith("db-")), 1)
        return {"router": router, "shards": shards, "loadgen": loadgen, "database": database, "machine": machine,
                "other": round(machine - router - sum(shards) - loadgen - database, 1), "seconds": round(wall, 2),
                "procs": {name: round(v, 1) for name, v in pct.items() if not name.startswith("db-")}}


def brief_error(e: Exception) -> str:
    """The first line and the end of an error (a traceback's last lines say what went wrong)."""
    text = str(e).strip()
    first, rest = (text.split("\n", 1) + [""])[:2]
    return first[:200] + (f" ... {rest[-400:]}" if rest else "")


def log_result(kind: str, workload: str, clients: int, r: dict) -> None:
    if "failed" in r:
        log(f"[{kind}] {workload:<13} c={clients:<3} FAILED: {r['failed'][:200]}")
    else:
        cpu = f"  cpu {r['cpu_us_per_op']:,.0f} us/op" if r.get("cpu_us_per_op") else ""
        log(f"[{kind}] {workload:<13} c={clients:<3} {r['ops_per_sec']:>10,.0f} ops/s  "
            f"p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms{cpu}  errors {r['errors']}")


def write_json(path: str, args: argparse.Namespace, results: list[dict], started: float,
               load_before: tuple, load_after: tuple) -> None:
    doc = {
        "meta": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "seconds": round(time.time() - started, 1),
            "host": platform.node(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_after],
            "duration": args.duration, "warmup": args.warmup, "clients": args.client_counts,
            "servers": args.server_list, "workloads": args.workloads, "loadgen_args": args.loadgen_arg,
            "kubefabric_args": args.kubefabric_arg, "backends": args.backend_list,
            "shards": args.shard_counts, "shard_db": args.shard_db if args.shards else None,
            "watch_cases": [{"workload": c.workload, "watchers": c.watchers, "rate": c.rate, "conns": c.conns,
                             "label": c.label} for c in args.watch_cases],
            "versions": {"etcd": "3.7.3", "kine": "v0.17.5"},
        },
        "results": results,
    }
    Path(path).write_text(json.dumps(doc, indent=1) + "\n")
    log(f"wrote {path}")


def install_signal_handlers() -> dict:
    """SIGTERM, SIGHUP and Ctrl-C raise KeyboardInterrupt; returns the handlers they replace."""
    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    # Explicitly, since a parent (a shell's background job, some wrappers) may have left SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return previous


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    previous = install_signal_handlers()
    try:
        return run_bench(args)
    finally:  # main() may be called in-process (tests/test_bench_smoke.py)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_bench(args: argparse.Namespace) -> int:
    build_loadgen()
    bins = reference_bin_dir() if {"etcd", "kine"} & set(args.server_list) else None

    global SHARD_DB
    SHARD_DB = args.shard_db
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        log(f"warning: load average {load_before[0]:.2f} before the run: other work on this "
            f"{os.cpu_count()}-core machine will skew the numbers")
    results: list[dict] = []
    started = time.time()
    try:
        for rnd in range(args.rounds):
            for kind in (args.server_list if rnd % 2 == 0 else args.server_list[::-1]):
                for w in args.workloads:
                    part = run_watch_workload(kind, w, args, bins) if args.watch else run_workload(kind, w, args, bins)
                    if args.rounds > 1:
                        for r in part:
                            r["round"] = rnd + 1
                    results += part
    except KeyboardInterrupt:
        log("interrupted: stopping servers")
        cleanup()
        return 130
    finally:
        cleanup()
    load_after = os.getloadavg()

    if args.shards:
        plan = [(w, c) for w in args.workloads for c in args.workload_clients[w]]
        table = render_shards_table(results, args.shard_counts, plan, args.shard_db)
    elif args.watch:
        table = render_watch_table(results, args.server_list, args.watch_cases)
    elif args.backends:
        table = render_backends_table(results, args.backend_list, args.workloads, args.client_counts)
    else:
        table = render_table(results, args.server_list, args.workloads, args.client_counts)
    print(table)
    print(f"load average (1/5/15 min): {fmt_load(load_before)} before, {fmt_load(load_after)} after; "
          f"{os.cpu_count()} cores; {args.duration:g} s measured after {args.warmup:g} s warm-up")
    if args.json:
        write_json(args.json, args, results, started, load_before, load_after)
    failed = [r for r in results if "failed" in r]
    return 1 if failed and len(failed) == len(results) else 0


def fmt_load(load: tuple) -> str:
    return "/".join(f"{x:.2f}" for x in load)


if __name__ == "__main__":
    sys.exit(main())
