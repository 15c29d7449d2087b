#!/usr/bin/env python3
"""Scale check of the example app (examples/shop) through the whole chain: N orders (default
10,000) created through kube-apiserver on KubeFabric, priced by the function (HTTPTrigger ->
CloudEvent -> status.total) and invoiced by the operator (a ConfigMap per order).

    uv run python bench/shop_scale.py                         # 10,000 orders
    uv run python bench/shop_scale.py --orders 500 --json /tmp/shop.json --plot /tmp/shop.png
    uv run python bench/shop_scale.py --orders 1000 --trigger-concurrency 1   # one delivery at a time

Measured, from the creating client's clock:
- time to fully reconciled: first create sent -> every order priced and its invoice final;
- function lag per order: its create acknowledged -> status.total seen on a watch;
- operator lag per order: its create acknowledged -> its invoice ConfigMap seen on a watch;
- watch lag per order: its create acknowledged -> the order itself seen on the same watch of
  Orders (kube-apiserver's watch cache, fed by kv-router from watch-hub): the part of both lags
  above that is the watch path's, not the function's or the operator's;
- memory (RSS, peak and at the end) of every component, sampled each second;
- the WARNING/ERROR lines each component logged (counted, first ones shown).
The plot (PNG) shows progress over time, both lag distributions and each component's RSS over time.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness.postgres import PostgresServer
from harness.shop import ShopStack, price_trigger, trigger_ready, wait_for


NAMESPACE = "bench"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


class Memory:
    """RSS of each component's process (with its children for those in `with_children`:
    PostgreSQL's backends), every second, and the CPU time each spent between start() and stop()."""

    def __init__(self, pids: dict[str, int], with_children: set[str]):
        import psutil
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.with_children = with_children
        self.peak: dict[str, int] = {name: 0 for name in pids}
        self.last: dict[str, int] = {}
        self.series: list[tuple[float, dict[str, int]]] = []   # (seconds since start, name -> RSS)
        self.t0 = time.monotonic()
        self.cpu_start: dict[str, float] = {}
        self.cpu: dict[str, float] = {}   # name -> CPU seconds between start() and stop()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        import psutil
        for name, proc in self.procs.items():
            try:
                rss = proc.memory_info().rss + sum(c.memory_info().rss for c in self._children(name))
            except psutil.Error:
                continue
            self.last[name] = rss
            self.peak[name] = max(self.peak[name], rss)
        self.series.append((round(time.monotonic() - self.t0, 1), dict(self.last)))

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def _children(self, name: str) -> list:
        return self.procs[name].children(recursive=True) if name in self.with_children else []

    def cpu_seconds(self) -> dict[str, float]:
        """user + system of each process (for those in `with_children`: also of its live
        descendants and the children it reaped)."""
        import psutil
        out = {}
        for name, proc in self.procs.items():
            try:
                t = proc.cpu_times()
                total = t.user + t.system
                if name in self.with_children:
                    total += t.children_user + t.children_system
                for child in self._children(name):
                    try:
                        c = child.cpu_times()
                        total += c.user + c.system
                    except psutil.Error:
                        pass
                out[name] = total
            except psutil.Error:
                continue
        return out

    def start(self) -> None:
        self.cpu_start = self.cpu_seconds()
        self.t0 = time.monotonic()
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
        end = self.cpu_seconds()
        self.cpu = {n: end[n] - self.cpu_start[n] for n in end if n in self.cpu_start}
        self.seconds = time.monotonic() - self.t0


async def run_load(stack: ShopStack, count: int, namespace: str, concurrency: int, timeout: float,
                   components: dict) -> dict:
    """components: name -> Popen of the processes the chain needs (function, operator, trigger):
    one that exits ends the run early (nothing would finish it), as does SIGINT/SIGTERM; the
    result then says how far it got."""
    from lightkube import AsyncClient, KubeConfig
    from lightkube.core.exceptions import ApiError
    from lightkube.resources.core_v1 import ConfigMap

    from shop import demo, model

    config = KubeConfig.from_file(str(stack.api.kubeconfig))
    client = AsyncClient(config, field_manager="shop-bench")
    orders = demo.orders(count)
    acked: dict[str, float] = {}
    seen: dict[str, float] = {}
    priced: dict[str, float] = {}
    invoiced: dict[str, float] = {}
    final: dict[str, float] = {}
    done = asyncio.Event()

    def check_done() -> None:
        if len(priced) == count and len(final) == count:
            done.set()

    async def watch_orders() -> None:
        async for _, obj in client.watch(model.Order, namespace=namespace):
            seen.setdefault(obj.metadata.name, time.monotonic())
            if "total" in (obj.get("status") or {}) and obj.metadata.name not in priced:
                priced[obj.metadata.name] = time.monotonic()
                check_done()

    async def watch_invoices() -> None:
        async for _, cm in client.watch(ConfigMap, namespace=namespace, labels={"app.kubernetes.io/part-of": "shop"}):
            order = cm.metadata.labels.get(f"{model.GROUP}/order")
            now = time.monotonic()
            invoiced.setdefault(order, now)
            if (cm.data or {}).get("state") == "final" and order not in final:
                final[order] = now
                check_done()

    watchers = [asyncio.create_task(watch_orders()), asyncio.create_task(watch_invoices())]
    await asyncio.sleep(1)   # both watches established before the first create
    sem = asyncio.Semaphore(concurrency)

    async def create(obj: dict) -> None:
        async with sem:
            for attempt in range(5):
                try:
                    await client.create(model.Order(obj), namespace=namespace)
                    break
                except ApiError as err:
                    if err.status.code not in (429, 500, 503, 504) or attempt == 4:
                        raise
                    await asyncio.sleep(0.5 * (attempt + 1))
            acked[obj["metadata"]["name"]] = time.monotonic()

    def watch_died(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            print(f"a watch failed: {task.exception()!r}", flush=True)
            done.set()   # ends the wait: the result says how far it got
    for w in watchers:
        w.add_done_callback(watch_died)
    stopped: list[str] = []

    def stop(why: str) -> None:
        print(why, flush=True)
        stopped.append(why)
        done.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, f"stopped by signal {sig.name}: reporting how far it got")

    async def watch_components() -> None:
        while not done.is_set():
            for name, proc in components.items():
                if proc.poll() is not None:
                    stop(f"{name} exited with {proc.returncode} at {time.monotonic() - t0:.0f}s: ending the run")
                    return
            await asyncio.sleep(1)

    t0 = time.monotonic()
    progress_task = asyncio.create_task(report_progress(count, acked, priced, final, t0))
    components_task = asyncio.create_task(watch_components())
    creating = asyncio.ensure_future(asyncio.gather(*(create(o) for o in orders)))
    stopping = asyncio.create_task(done.wait())
    await asyncio.wait({creating, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not creating.done():   # stopped early: the creates in flight are abandoned
        creating.cancel()
    elif creating.exception() is not None:
        raise creating.exception()
    stopping.cancel()
    created = time.monotonic() - t0
    print(f"created {len(acked)} orders in {created:.1f}s ({len(acked) / created:.0f}/s)", flush=True)
    try:
        await asyncio.wait_for(done.wait(), timeout)
    except asyncio.TimeoutError:
        pass
    complete = len(priced) == count and len(final) == count
    progress_task.cancel()
    components_task.cancel()
    reconciled = time.monotonic() - t0
    for w in watchers:
        w.cancel()
    await client.close()
    function_lag = [priced[n] - acked[n] for n in priced if n in acked]
    operator_lag = [invoiced[n] - acked[n] for n in invoiced if n in acked]
    watch_lag = [seen[n] - acked[n] for n in seen if n in acked]
    timeline = sorted((t - t0, kind) for kind, d in (("created", acked), ("priced", priced), ("final", final))
                      for t in d.values())
    return {"orders": count, "complete": complete, "stopped": stopped, "t0_monotonic": t0,
            "created": len(acked), "create_seconds": created, "create_rate": len(acked) / created,
            "reconciled_seconds": reconciled, "priced": len(priced), "invoiced": len(invoiced), "final": len(final),
            "function_lag": summary(function_lag), "operator_lag": summary(operator_lag),
            "watch_lag": summary(watch_lag), "function_lags": function_lag, "operator_lags": operator_lag,
            "watch_lags": watch_lag, "timeline": timeline}


async def report_progress(count: int, acked: dict, priced: dict, final: dict, t0: float) -> None:
    while True:
        await asyncio.sleep(10)
        print(f"  {time.monotonic() - t0:6.0f}s: {len(acked)}/{count} created, {len(priced)}/{count} priced, "
              f"{len(final)}/{count} invoices final", flush=True)


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": percentile(values, 50), "p99": percentile(values, 99),
            "max": max(values), "mean": statistics.fmean(values)}


# Python logging, klog (kube-apiserver), nats-server
PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL|Traceback)\b|^[EW]\d{4} |\[(WRN|ERR|FTL)\]")


def log_sizes(stack_dir: Path) -> dict[Path, int]:
    return {log: log.stat().st_size for log in stack_dir.rglob("*.log")}


def log_problems(start: dict[Path, int], end: dict[Path, int], stack_dir: Path,
                 keep: int = 3) -> dict[str, tuple[int, list[str]]]:
    """Per log file of the stack: how many WARNING/ERROR lines it got between the two snapshots
    of the logs' sizes (the load, not start-up or shutdown), and the first `keep`."""
    found: dict[str, tuple[int, list[str]]] = {}
    for log in sorted(end):
        count, first = 0, []
        with log.open("rb") as f:
            f.seek(start.get(log, 0))
            for line in f.read(end[log] - start.get(log, 0)).decode(errors="replace").splitlines():
                if PROBLEM.search(line):
                    count += 1
                    if len(first) < keep:
                        first.append(line.rstrip()[:240])
        if count:
            found[str(log.relative_to(stack_dir))] = (count, first)
    return found


def plot(result: dict, memory: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (progress, lags, mem) = plt.subplots(1, 3, figsize=(18, 5))
    for kind, colour in (("created", "tab:gray"), ("priced", "tab:blue"), ("final", "tab:green")):
        times = [t for t, k in result["timeline"] if k == kind]
        progress.plot(times, range(1, len(times) + 1), label={"final": "invoice final"}.get(kind, kind), color=colour)
    progress.set(title=f"{result['orders']:,} orders through the chain", xlabel="seconds since the first create",
                 ylabel="orders")
    progress.legend()
    for name, key, colour in (("function (status.total)", "function_lags", "tab:blue"),
                              ("operator (invoice ConfigMap)", "operator_lags", "tab:green"),
                              ("watch (the order itself seen)", "watch_lags", "tab:gray")):
        values = sorted(result[key])
        if values:
            lags.plot(values, [i / len(values) for i in range(1, len(values) + 1)], label=name, color=colour)
    lags.set(title="lag after the create was acknowledged (CDF)", xlabel="seconds", ylabel="fraction of orders")
    lags.legend()
    names = sorted(memory["peak"], key=lambda n: -memory["peak"][n])
    offset = memory.get("t0_offset", 0.0)   # the sampler started before the first create
    for i, name in enumerate(names):
        points = [(t - offset, rss[name] / 2**20) for t, rss in memory["series"] if name in rss]
        mem.plot([t for t, _ in points], [m for _, m in points], color=plt.cm.tab20(i / 20),
                 linestyle="-" if i < 6 else "--", label=f"{name} (peak {memory['peak'][name] / 2**20:.0f})")
    mem.set(title="memory (RSS) per component", xlabel="seconds since the first create", ylabel="MiB")
    mem.set_ylim(bottom=0)
    mem.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=32, help="creates in flight (default 32)")
    ap.add_argument("--trigger-concurrency", type=int, default=16,
                    help="orders the HTTPTrigger delivers to the function in parallel (default 16)")
    ap.add_argument("--delivery-timeout", default="30s",
                    help="the HTTPTrigger's spec.delivery.timeout (default 30s; the trigger's own default, 10s, "
                         "dead-letters orders when the function answers slowly on a saturated machine)")
    ap.add_argument("--delivery-retries", type=int, default=3,
                    help="the HTTPTrigger's spec.delivery.retries (default 3; the trigger's own default is 0)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds to wait for full reconciliation")
    ap.add_argument("--json", type=Path, help="write the results (with every lag) here")
    ap.add_argument("--plot", type=Path, default=Path("shop-scale.png"), help="the PNG (default ./shop-scale.png)")
    ap.add_argument("--keep", action="store_true", help="keep the stack's directory (logs, data) and print its path")
    args = ap.parse_args()
    load_start = os.getloadavg()
    print(f"load average at start: {load_start}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="kf-shop-bench-"))
    work.chmod(0o755)
    postgres = PostgresServer().start()   # its own temp root, readable by the postgres OS user
    stack = ShopStack(work / "stack", postgres, events=True)
    try:
        (work / "stack").mkdir()
        stack.start()
        fn = stack.start_function()
        stack.api.kubectl("create", "namespace", NAMESPACE)
        op = stack.start_operator("bench", "--namespace", NAMESPACE, "--lease-namespace", NAMESPACE)
        op.wait_log("leading")
        trigger = stack.start_trigger()
        stack.api.kubectl("apply", "-f", "-", input=json.dumps(price_trigger(
            NAMESPACE, fn.url + "/", args.trigger_concurrency,
            {"timeout": args.delivery_timeout, "retries": args.delivery_retries})))
        wait_for(lambda: trigger_ready(stack.api, NAMESPACE), 60, "the HTTPTrigger to be Ready")
        pids = {"kube-apiserver": stack.api.proc.pid, "kv-router": stack.router.proc.pid,
                "shard main (sqlite)": stack.shards["main"].proc.pid,
                "shard orders (backend-pg)": stack.shards["orders"].proc.pid,
                "watch-hub": stack.hub.proc.pid, "nats-server": stack.nats.proc.pid,
                "postgresql": postgres.proc.pid, "trigger": trigger.proc.pid,
                "shop function": fn.proc.pid, "shop operator": op.proc.pid, "bench client (this)": os.getpid()}
        memory = Memory(pids, with_children={"postgresql"})
        memory.start()
        logs_at_start = log_sizes(work / "stack")
        result = asyncio.run(run_load(stack, args.orders, NAMESPACE, args.concurrency, args.timeout,
                                      {"shop function": fn.proc, "shop operator": op.proc, "trigger": trigger.proc}))
        memory.stop()
        logs_at_end = log_sizes(work / "stack")
    finally:
        stack.stop()
        postgres.remove()
    logged = log_problems(logs_at_start, logs_at_end, work / "stack")
    if args.keep:
        print(f"the stack's logs and data: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()
    mem = {"peak": memory.peak, "end": memory.last, "series": memory.series,
           "t0_offset": result["t0_monotonic"] - memory.t0, "cpu_seconds": memory.cpu, "seconds": memory.seconds}
    f, o = result["function_lag"], result["operator_lag"]
    print(f"\n{result['orders']:,} orders: {'fully reconciled' if result['complete'] else 'NOT fully reconciled'} "
          f"in {result['reconciled_seconds']:.1f}s (created in {result['create_seconds']:.1f}s, "
          f"{result['create_rate']:.0f}/s)")
    print(f"function lag: p50 {f.get('p50', float('nan')):.2f}s  p99 {f.get('p99', float('nan')):.2f}s  "
          f"({result['priced']} priced)")
    print(f"operator lag: p50 {o.get('p50', float('nan')):.2f}s  p99 {o.get('p99', float('nan')):.2f}s  "
          f"({result['invoiced']} invoiced, {result['final']} final)")
    w = result["watch_lag"]
    print(f"watch lag (create acknowledged -> the order seen on the bench's watch): p50 "
          f"{w.get('p50', float('nan')):.2f}s  p99 {w.get('p99', float('nan')):.2f}s")
    print(f"component                 RSS MiB peak / end   CPU s over the {mem['seconds']:.0f} s of load (% of a core)")
    for name in sorted(mem["peak"], key=lambda n: -mem["peak"][n]):
        cpu = mem["cpu_seconds"].get(name, 0.0)
        print(f"  {name:<26}{mem['peak'][name] / 2**20:7.0f} {mem['end'].get(name, 0) / 2**20:7.0f}"
              f"   {cpu:10.1f} ({100 * cpu / mem['seconds']:.0f} %)")
    print(f"  {'all':<26}{'':15}   {sum(mem['cpu_seconds'].values()):10.1f} "
          f"({100 * sum(mem['cpu_seconds'].values()) / mem['seconds']:.0f} %)")
    print("WARNING/ERROR lines logged during the load" + ("" if logged else ": none"))
    for name, (count, first) in logged.items():
        print(f"  {name}: {count}")
        for line in first:
            print(f"      {line}")
    print(f"load average at start {load_start}, at end {load_end}")
    plot(result, mem, args.plot)
    print(f"plot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps({**result, "memory": mem, "logged": logged,
                                         "load": {"start": load_start, "end": load_end}}, indent=1))
    return 0 if result["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
