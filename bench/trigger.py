"""Trigger benchmark (issue 16 point 9): `kubefabric serve`, `kubefabric trigger` and a local
receiver (aiohttp) on loopback.

1. Latency: Puts at --rate per second for --duration seconds over --keys objects; for every
   event, commit (the Put's answer) -> the receiver's arrival; p50/p99/max, and how many of the
   events arrived.
2. Memory: for each count in --objects, a fresh store with that many objects of the watched
   resource, then the trigger started and --rss-events events delivered; the trigger's RSS.

    uv run python bench/trigger.py                              # 1,000/s for 20 s; RSS at 10k and 1M
    uv run python bench/trigger.py --rate 500 --duration 10 --objects 10000,100000
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

from aiohttp import web

from harness.servers import free_port, spawn, start_kubefabric
from kubefabric.client import EtcdClient
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

TRIGGER = {"apiVersion": "triggers.kubefabric.io/v1", "kind": "HTTPTrigger",
           "metadata": {"name": "bench", "namespace": "default"},
           "spec": {"resource": {"apiVersion": "example.com/v1", "kind": "Widget"},
                    "concurrency": 100, "url": {"static": "URL"}}}


def widget(i: int, gen: int = 0) -> tuple[bytes, bytes]:
    name = f"w{i:07d}"
    obj = {"apiVersion": "example.com/v1", "kind": "Widget",
           "metadata": {"name": name, "namespace": "default", "uid": f"u{i}", "generation": 1},
           "spec": {"gen": gen, "payload": "x" * 200}}
    return f"/registry/example.com/widgets/default/{name}".encode(), json.dumps(obj).encode()


class Receiver:
    def __init__(self):
        self.port = free_port()
        self.arrived: dict[str, float] = {}
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def handle(request):
            await request.read()
            self.arrived.setdefault(request.headers.get("Ce-Id", ""), time.monotonic())
            return web.Response(text="ok")

        def serve():
            asyncio.set_event_loop(loop)
            app = web.Application()
            app.router.add_post("/", handle)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        ready.wait(10)


def start_trigger(endpoint: str, url: str, workdir: Path) -> subprocess.Popen:
    f = workdir / "triggers.json"
    t = json.loads(json.dumps(TRIGGER).replace("URL", url))
    f.write_text(json.dumps(t))
    health = f"127.0.0.1:{free_port()}"
    proc = spawn([sys.executable, "-m", "kubefabric.cli", "trigger", "--endpoints",
                  f"http://{endpoint}", "--triggers", str(f), "--cluster-triggers", "false",
                  "--listen-address", health, "--replica-name", "bench"],
                 stdout=(workdir / "trigger.log").open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"http://{health}/readyz", timeout=1).status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("trigger not ready:\n" + (workdir / "trigger.log").read_text()[-3000:])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def write(endpoint: str, rate: float, duration: float, keys: int, gen: int) -> dict[str, float]:
    """Puts at `rate`/s; ce-id -> monotonic time of the Put's answer."""
    committed: dict[str, float] = {}
    async with EtcdClient.connect(endpoint) as c:
        start = time.monotonic()
        n = int(rate * duration)
        sem = asyncio.Semaphore(64)

        async def one(i):
            async with sem:
                key, value = widget(i % keys, gen + i)
                rev = await c.kv.put(key, value)
                committed[f"{key.decode()}@{rev}"] = time.monotonic()
        tasks = []
        for i in range(n):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return committed


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--objects", default="10000,1000000")
    ap.add_argument("--rss-events", type=int, default=2000)
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        recv = Receiver()
        d = tmp / "latency"
        d.mkdir()
        kf = start_kubefabric(d, ["--metrics-address", ""])
        trig = start_trigger(kf.endpoint, f"http://127.0.0.1:{recv.port}/", d)
        try:
            asyncio.run(write(kf.endpoint, 50, 2, args.keys, 0))          # warm-up
            time.sleep(2)
            committed = asyncio.run(write(kf.endpoint, args.rate, args.duration, args.keys, 10**6))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not all(k in recv.arrived for k in committed):
                time.sleep(0.2)
            lat = [(recv.arrived[k] - t) * 1000 for k, t in committed.items() if k in recv.arrived]
            print(f"latency @ {args.rate:g}/s for {args.duration:g}s: {len(lat)}/{len(committed)} events "
                  f"arrived; commit->receiver p50 {statistics.median(lat):.1f} ms, p99 "
                  f"{percentile(lat, 99):.1f} ms, max {max(lat):.1f} ms; trigger RSS {rss_mib(trig.pid):.0f} MiB",
                  flush=True)
        finally:
            trig.terminate()
            kf.stop()
        for count in (int(x) for x in args.objects.split(",") if x):
            d = tmp / f"rss-{count}"
            d.mkdir()
            kf = start_kubefabric(d, ["--metrics-address", ""])
            try:
                t0 = time.monotonic()
                asyncio.run(bulk_load(kf.endpoint, count))
                loaded = time.monotonic() - t0
                trig = start_trigger(kf.endpoint, f"http://127.0.0.1:{recv.port}/", d)
                before = len(recv.arrived)
                asyncio.run(write(kf.endpoint, 500, args.rss_events / 500, count, 2 * 10**6))
                deadline = time.monotonic() + 60
                while len(recv.arrived) < before + args.rss_events and time.monotonic() < deadline:
                    time.sleep(0.2)
                print(f"RSS with {count:,} stored objects (loaded in {loaded:.0f}s): trigger "
                      f"{rss_mib(trig.pid):.0f} MiB after {len(recv.arrived) - before} events", flush=True)
                trig.terminate()
            finally:
                kf.stop()
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
