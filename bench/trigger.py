"""Trigger benchmark (issue 16 point 9): `kubefabric serve`, `kubefabric trigger` and a local
receiver (aiohttp, a process of its own) on loopback.

1. Latency: Puts at --rate per second for --duration seconds over --keys objects; for every
   event, commit (the Put's answer at the writer) -> the receiver's arrival, and the Put's send
   -> arrival (an upper bound: it includes the Put); p50/p99/max, how many events arrived, the
   rate the writer really sustained and the trigger's RSS.
2. Memory: for each count in --objects, a fresh store with that many objects of the watched
   resource, then the trigger started and --rss-events events delivered; the trigger's RSS
   (peak, sampled every 0.25 s, and at the end). That trigger watches from "now", so it never
   reads the stored objects; with --initial-seconds S a second trigger with sendInitialEvents
   then lists all of them as ADDED events, and its peak RSS over S seconds (or until all were
   delivered) shows whether the initial listing stays bounded (pending events, not objects).

    uv run python bench/trigger.py                              # 1,000/s for 20 s; RSS at 10k and 1M
    uv run python bench/trigger.py --rate 500 --duration 10 --objects 10000,100000 --json /tmp/t.json

The receiver runs in its own process so that its event loop does not share a GIL with the writer
(both use time.monotonic(), one clock for every process on Linux).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from harness.servers import free_port, spawn, start_kubefabric, stop_process
from kubefabric.client import EtcdClient
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb


def trigger_spec(name: str, url: str, initial: bool) -> dict:
    return {"apiVersion": "triggers.kubefabric.io/v1", "kind": "HTTPTrigger",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"resource": {"apiVersion": "example.com/v1", "kind": "Widget"},
                     "concurrency": 100, "sendInitialEvents": initial, "url": {"static": url}}}


def widget(i: int, gen: int = 0) -> tuple[bytes, bytes]:
    name = f"w{i:07d}"
    obj = {"apiVersion": "example.com/v1", "kind": "Widget",
           "metadata": {"name": name, "namespace": "default", "uid": f"u{i}", "generation": 1},
           "spec": {"gen": gen, "payload": "x" * 200}}
    return f"/registry/example.com/widgets/default/{name}".encode(), json.dumps(obj).encode()


def serve_receiver(port: int) -> None:
    """The receiver process: POST / records the first arrival of each ce-id; GET /arrived answers
    {ce-id: monotonic time}, GET /count the number of POSTs."""
    from aiohttp import web
    arrived: dict[str, float] = {}
    posts = 0

    async def receive(request):
        nonlocal posts
        await request.read()
        arrived.setdefault(request.headers.get("Ce-Id", ""), time.monotonic())
        posts += 1
        return web.Response(text="ok")

    async def get_arrived(_):
        return web.json_response(arrived)

    async def count(_):
        return web.json_response({"posts": posts, "ids": len(arrived)})

    app = web.Application()
    app.router.add_post("/", receive)
    app.router.add_get("/arrived", get_arrived)
    app.router.add_get("/count", count)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


class Receiver:
    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc = spawn([sys.executable, __file__, "--receiver", str(self.port)],
                          stdout=(workdir / "receiver.log").open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.count()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("receiver did not start:\n" + (workdir / "receiver.log").read_text())
                time.sleep(0.1)

    def _get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.load(r)

    def arrived(self) -> dict[str, float]:
        return self._get("arrived")

    def count(self) -> dict:
        return self._get("count")


def start_trigger(endpoint: str, spec: dict, workdir: Path) -> subprocess.Popen:
    name = spec["metadata"]["name"]
    f = workdir / f"trigger-{name}.json"
    f.write_text(json.dumps(spec))
    health = f"127.0.0.1:{free_port()}"
    log = workdir / f"trigger-{name}.log"
    proc = spawn([sys.executable, "-m", "kubefabric.cli", "trigger", "--endpoints",
                  f"http://{endpoint}", "--triggers", str(f), "--cluster-triggers", "false",
                  "--listen-address", health, "--replica-name", name],
                 stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"http://{health}/readyz", timeout=1).status == 200:
                return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    raise RuntimeError("trigger not ready:\n" + log.read_text()[-3000:])


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RSSSampler:
    """The peak RSS of one process, sampled every 0.25 s until stopped."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.samples = pid, 0.0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.wait(0.25):
            rss = rss_mib(self.pid)
            self.samples.append((round(time.monotonic() - t0, 2), round(rss, 1)))
            self.peak = max(self.peak, rss)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


async def write(endpoint: str, rate: float, duration: float, keys: int, gen: int) -> tuple[dict, dict, float]:
    """Puts at `rate`/s: (ce-id -> monotonic time the Put was sent, ... -> answered, seconds taken)."""
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}
    async with EtcdClient.connect(endpoint) as c:
        start = time.monotonic()
        n = int(rate * duration)
        sem = asyncio.Semaphore(64)

        async def one(i):
            async with sem:
                key, value = widget(i % keys, gen + i)
                t = time.monotonic()
                rev = await c.kv.put(key, value)
                eid = f"{key.decode()}@{rev}"
                answered[eid], sent[eid] = time.monotonic(), t
        tasks = []
        for i in range(n):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        took = time.monotonic() - start
    return sent, answered, took


async def bulk_load(endpoint: str, count: int) -> None:
    async with EtcdClient.connect(endpoint) as c:
        sem = asyncio.Semaphore(8)

        async def batch(lo):
            async with sem:
                ops = [pb.RequestOp(request_put=pb.PutRequest(key=k, value=v))
                       for k, v in (widget(i) for i in range(lo, min(lo + 128, count)))]
                await c.kv.txn([], ops)
        await asyncio.gather(*(batch(lo) for lo in range(0, count, 128)))


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def latency(args, tmp: Path, recv: Receiver) -> dict:
    d = tmp / "latency"
    d.mkdir()
    kf = start_kubefabric(d, ["--metrics-address", ""])
    trig = start_trigger(kf.endpoint, trigger_spec("bench", recv.url, False), d)
    try:
        asyncio.run(write(kf.endpoint, 50, 2, args.keys, 0))          # warm-up
        time.sleep(2)
        rss = RSSSampler(trig.pid)
        sent, answered, took = asyncio.run(write(kf.endpoint, args.rate, args.duration, args.keys, 10**6))
        deadline = time.monotonic() + 60
        arrived = recv.arrived()
        while time.monotonic() < deadline and not all(k in arrived for k in answered):
            time.sleep(0.5)
            arrived = recv.arrived()
        peak = rss.stop()
    finally:
        stop_process(trig)
        kf.stop()
    commit = [(arrived[k] - t) * 1000 for k, t in answered.items() if k in arrived]
    send = [(arrived[k] - t) * 1000 for k, t in sent.items() if k in arrived]
    r = {"rate": args.rate, "duration": args.duration, "puts": len(answered), "sustained_rate": len(answered) / took,
         "arrived": len(commit), "commit_p50_ms": statistics.median(commit), "commit_p99_ms": percentile(commit, 99),
         "commit_max_ms": max(commit), "before_answer": sum(1 for x in commit if x < 0),
         "send_p50_ms": statistics.median(send), "send_p99_ms": percentile(send, 99),
         "trigger_rss_peak_mib": peak, "trigger_rss_mib": rss.samples[-1][1] if rss.samples else 0}
    print(f"latency @ {args.rate:g}/s for {args.duration:g}s (writer sustained {r['sustained_rate']:.0f}/s): "
          f"{r['arrived']}/{r['puts']} events arrived; commit->receiver p50 {r['commit_p50_ms']:.1f} ms, "
          f"p99 {r['commit_p99_ms']:.1f} ms, max {r['commit_max_ms']:.1f} ms ({r['before_answer']} arrived "
          f"before the writer saw the Put's answer); send->receiver p50 {r['send_p50_ms']:.1f} ms, p99 "
          f"{r['send_p99_ms']:.1f} ms; trigger RSS peak {peak:.0f} MiB", flush=True)
    return r


def memory(count: int, args, tmp: Path, recv: Receiver) -> dict:
    d = tmp / f"rss-{count}"
    d.mkdir()
    kf = start_kubefabric(d, ["--metrics-address", ""])
    r: dict = {"objects": count}
    try:
        t0 = time.monotonic()
        asyncio.run(bulk_load(kf.endpoint, count))
        r["load_seconds"] = time.monotonic() - t0
        trig = start_trigger(kf.endpoint, trigger_spec("bench", recv.url, False), d)
        rss = RSSSampler(trig.pid)
        before = recv.count()["posts"]
        asyncio.run(write(kf.endpoint, 500, args.rss_events / 500, count, 2 * 10**6))
        deadline = time.monotonic() + 60
        while recv.count()["posts"] < before + args.rss_events and time.monotonic() < deadline:
            time.sleep(0.2)
        r.update(events=recv.count()["posts"] - before, rss_peak_mib=rss.stop(), rss_mib=rss_mib(trig.pid))
        stop_process(trig)
        print(f"RSS with {count:,} stored objects (loaded in {r['load_seconds']:.0f}s): trigger "
              f"{r['rss_mib']:.0f} MiB (peak {r['rss_peak_mib']:.0f}) after {r['events']} events", flush=True)
        if args.initial_seconds > 0:
            before = recv.count()["posts"]
            t0 = time.monotonic()
            trig = start_trigger(kf.endpoint, trigger_spec("initial", recv.url, True), d)
            rss = RSSSampler(trig.pid)
            deadline = t0 + args.initial_seconds
            while time.monotonic() < deadline and recv.count()["posts"] - before < count:
                time.sleep(0.25)
            took = time.monotonic() - t0
            delivered = recv.count()["posts"] - before
            r.update(initial_events=delivered, initial_seconds=took, initial_rss_peak_mib=rss.stop(),
                     initial_rss_mib=rss_mib(trig.pid), initial_rss_samples=rss.samples)
            stop_process(trig)
            print(f"  sendInitialEvents: {delivered:,}/{count:,} initial events delivered in {took:.0f}s "
                  f"({delivered / took:.0f}/s); trigger RSS peak {r['initial_rss_peak_mib']:.0f} MiB, "
                  f"{r['initial_rss_mib']:.0f} at the end", flush=True)
    finally:
        kf.stop()
    return r


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--receiver":
        serve_receiver(int(sys.argv[2]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=1000, help="Puts per second (default 1000)")
    ap.add_argument("--duration", type=float, default=20, help="seconds of Puts (default 20)")
    ap.add_argument("--keys", type=int, default=1000, help="objects the Puts cycle over (default 1000)")
    ap.add_argument("--objects", default="10000,1000000", help="stored-object counts for RSS (default 10000,1000000)")
    ap.add_argument("--rss-events", type=int, default=2000, help="events delivered before RSS is read (default 2000)")
    ap.add_argument("--initial-seconds", type=float, default=0,
                    help="also run a sendInitialEvents trigger over the stored objects for at most this long "
                         "and report its peak RSS (default 0: not run)")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    load = {"start": os.getloadavg()}
    print(f"load average at start: {load['start']}", flush=True)
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="kf-trigger-bench-") as tmp:
        tmp = Path(tmp)
        recv = Receiver(tmp)
        try:
            results["latency"] = latency(args, tmp, recv)
            results["memory"] = [memory(int(x), args, tmp, recv) for x in args.objects.split(",") if x]
        finally:
            stop_process(recv.proc)
    load["end"] = os.getloadavg()
    results["load"] = load
    print(f"load average at end: {load['end']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
