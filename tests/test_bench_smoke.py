"""The benchmark harness works end to end: bench/loadgen builds, and a very short put and get
against a fresh `kubefabric serve` complete requests without errors.

This proves the harness, not performance: 0.5 s windows, 2 clients, a few keys.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from harness.servers import REPO, start_kubefabric


def _load_bench_run():
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench_run = _load_bench_run()
pytestmark = pytest.mark.timeout(600)  # a cold Go build downloads modules and compiles clientv3


@pytest.fixture(scope="module")
def loadgen() -> Path:
    return bench_run.build_loadgen()  # go build, reused when up to date


def run_results(tmp_path: Path, *argv: str) -> list[dict]:
    """bench/run.py with `argv` and --json: its exit status checked, the results it wrote."""
    out = tmp_path / "run.json"
    assert bench_run.main([*argv, "--json", str(out)]) == 0
    return json.loads(out.read_text())["results"]


@pytest.fixture
def kubefabric(tmp_path):
    server = start_kubefabric(tmp_path)
    yield server
    server.stop()


def test_loadgen_builds_and_probes(loadgen, kubefabric):
    r = bench_run.subprocess.run([str(loadgen), "--workload", "status", "--endpoints", kubefabric.endpoint,
                                  "--max-time", "10s"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"ready": True}


@pytest.mark.parametrize("workload", ["put", "get"])
def test_short_run_against_kubefabric(loadgen, kubefabric, workload):
    result = bench_run.run_loadgen(kubefabric.endpoint, workload, clients=2, duration=0.5, warmup=0.1,
                                   extra=["--key-space", "100", "--get-keys", "50"], cpu_roots=[kubefabric.proc.pid])
    assert "failed" not in result, f"{result}\n{kubefabric.log()[-2000:]}"
    assert result["workload"] == workload and result["clients"] == 2
    assert result["ops"] > 0, result
    assert result["errors"] == 0, result
    assert result["ops_per_sec"] > 0 and result["seconds"] > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"], result
    # the server's CPU in the measured window, per request: a 0.5 s window of busy requests costs
    # more than one clock tick, and a server cannot spend more than 2 cores' worth on 2 clients
    assert 0 < result["server_cpu_s"] <= 2 * 0.5 * 1.5, result
    assert result["cpu_us_per_op"] == pytest.approx(1e6 * result["server_cpu_s"] / result["ops"], rel=0.01)
    # the cores kept busy: loadgen's own (it spends CPU on every request), the server's, and the
    # whole machine's, which includes both and cannot exceed its CPUs
    assert result["loadgen_cpu_us_per_op"] > 0 and result["loadgen_cores"] > 0, result
    assert result["server_cores"] > 0, result
    slack = 0.3  # the clocks are read one after another, in ticks of 10 ms, over a 0.5 s window
    assert result["server_cores"] + result["loadgen_cores"] <= result["machine_busy_cores"] + slack, result
    assert result["machine_busy_cores"] <= os.cpu_count() + slack, result


def test_floor_and_cpu_columns(loadgen, tmp_path, capsys):
    """`run.py --servers floor,kubefabric`: the bare grpc.aio floor answers put and get, and every
    row carries the server's CPU us per request, in the table (with the kf/floor ratio) and the JSON."""
    out = tmp_path / "floor.json"
    rc = bench_run.main(["--servers", "floor,kubefabric", "--only", "put,get", "--clients", "2",
                         "--duration", "0.5", "--warmup", "0.1", "--json", str(out)])
    assert rc == 0
    results = json.loads(out.read_text())["results"]
    assert [(r["server"], r["workload"]) for r in results] == [
        ("floor", "put"), ("floor", "get"), ("kubefabric", "put"), ("kubefabric", "get")]
    for r in results:
        assert "failed" not in r and r["errors"] == 0 and r["ops"] > 0, r
        assert r["cpu_us_per_op"] > 0, r
    table = capsys.readouterr().out
    head, units = table.splitlines()[:2]
    assert "kf/floor" in head and units.count("cpu us") == 2, table
    row = next(line for line in table.splitlines() if line.startswith("get "))
    kf_cpu = next(r["cpu_us_per_op"] for r in results if r["server"] == "kubefabric" and r["workload"] == "get")
    assert f"{kf_cpu:,.0f}" in row.split("|")[2], row
    assert "kubefabric/floor" in table, table
    cores = table[table.index("Cores busy in the measured window"):].splitlines()
    get_cores = next(line for line in cores if line.startswith("get "))
    assert get_cores.count(" / ") == 4, table  # floor's and kubefabric's three figures
    assert not bench_run.LIVE, "a server was left running"


def test_staged_floors_serve_gets(loadgen, tmp_path):
    """`floor+STAGE` (bench/floor.py --stage): the floor built with kubefabric serve's pieces up to
    STAGE answers gets; the first stage with our handlers over constants, the last with
    RouterServer over the embedded shard (it reads what the preload wrote)."""
    results = run_results(tmp_path, "--servers", "floor+kv,floor+router", "--only", "get",
                          "--clients", "2", "--duration", "0.5", "--warmup", "0.1")
    assert [r["server"] for r in results] == ["floor+kv", "floor+router"]
    for r in results:
        assert "failed" not in r and r["errors"] == 0 and r["ops"] > 0 and r["cpu_us_per_op"] > 0, r
    assert not bench_run.LIVE, "a server was left running"


def test_synchronous_floors_serve_puts_and_gets(loadgen, tmp_path):
    """`floor-sync` and `floor-sync-bridge` (bench/floor.py --serving): grpcio's synchronous server
    answers put and get, directly and through a uvloop loop in another thread, and stops cleanly."""
    results = run_results(tmp_path, "--servers", "floor-sync,floor-sync-bridge", "--only", "put,get",
                          "--clients", "2", "--duration", "0.5", "--warmup", "0.1")
    assert [(r["server"], r["workload"]) for r in results] == [
        ("floor-sync", "put"), ("floor-sync", "get"), ("floor-sync-bridge", "put"),
        ("floor-sync-bridge", "get")]
    for r in results:
        assert "failed" not in r and r["errors"] == 0 and r["ops"] > 0 and r["cpu_us_per_op"] > 0, r
    assert not bench_run.LIVE, "a server was left running"


def test_backends_mode_on_postgres(loadgen, tmp_path, capsys):
    """`run.py --backends kf-pg`: PostgreSQL, a shard service with and without group commit and a
    router in front, all started, measured and removed again (windows of a fraction of a second)."""
    results = run_results(tmp_path, "--backends", "kf-pg", "--only", "put", "--clients", "1",
                          "--duration", "0.3", "--warmup", "0.1")
    assert [r["server"] for r in results] == ["kf-pg", "kf-pg-nogc"]
    for r in results:
        assert "failed" not in r, r
        assert r["ops"] > 0 and r["errors"] == 0, r
    table = capsys.readouterr().out
    assert "kf-pg          put            1 |" in table and "load average" in table
    assert not bench_run.LIVE, "a stack was left running"
    assert all(server is None for server in bench_run.backends_module().DB_SERVERS.values())


def test_shards_mode_one_and_two_shards(loadgen, tmp_path, capsys):
    """`run.py --shards 1,2`: kv-router with a topology over one and then two SQLite shard services,
    the put keys spread over the topology's prefixes, both measured and everything removed again."""
    out = tmp_path / "shards.json"
    rc = bench_run.main(["--shards", "1,2", "--only", "put", "--clients", "2",
                         "--duration", "0.3", "--warmup", "0.1", "--json", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["meta"]["shards"] == [1, 2]
    results = doc["results"]
    assert [r["server"] for r in results] == ["shards-1", "shards-2"]
    for r in results:
        assert "failed" not in r, r
        assert r["ops"] > 0 and r["errors"] == 0, r
        assert r["prefixes"] == len(bench_run.backends_module().SHARD_PREFIXES), r
        assert len(r["cpu"]["shards"]) == int(r["server"].split("-")[1]), r
    # with two shards both shard services did work: the keys really were spread
    assert all(share > 0 for share in results[1]["cpu"]["shards"]), results[1]["cpu"]
    table = capsys.readouterr().out
    assert "put            2 |" in table and "2 shards" in table and "load average" in table
    assert not bench_run.LIVE, "a stack was left running"


def test_topology_spreads_prefixes_evenly():
    backends = bench_run.backends_module()
    for n in (1, 2, 3):
        text = backends.topology_yaml([f"127.0.0.1:{2390 + i}" for i in range(n)])
        targets = [line.split(": ")[1] for line in text.splitlines() if line.strip().startswith("shard:")]
        assert len(targets) == len(backends.SHARD_PREFIXES)
        assert {targets.count(f"s{i}") for i in range(n)} == {len(targets) // n}, text


def _run_watch_mode(tmp_path, capsys, servers: list[str]) -> None:
    out = tmp_path / "watch.json"
    rc = bench_run.main(["--watch", ",".join(servers), "--clients", "2", "--rate", "20",
                         "--watchers", "40", "--watch-conns", "4", "--fanout-rates", "20",
                         "--duration", "0.5", "--warmup", "0.1", "--json", str(out)])
    assert rc == 0
    results = json.loads(out.read_text())["results"]
    assert [(r["server"], r["workload"]) for r in results] == [
        (s, w) for s in servers for w in ("watch-latency", "watch-fanout")]
    for r in results:
        assert "failed" not in r, r
        assert r["ops"] > 0 and r["errors"] == 0 and r.get("missed_events", 0) == 0, r
        assert r["send_to_event_p50_ms"] > 0 and r["slowest_send_p99_ms"] >= r["send_to_event_p50_ms"], r
        assert sum(r["cpu"]["procs"].values()) > 0, r
        if r["workload"] == "watch-fanout":  # 40 watchers on 4 streams (one per connection)
            assert (r["watchers"], r["streams"], r["conns"]) == (40, 4, 4), r
        else:  # a stream per watcher
            assert (r["watchers"], r["streams"]) == (2, 2), r
    table = capsys.readouterr().out
    assert "fan-out 40 watchers/4 streams, 20 writes/s" in table and "load average" in table
    assert all(f"\n{s} " in table for s in servers), table
    assert not bench_run.LIVE, "a server was left running"


def test_watch_mode_embedded_and_shard_service(loadgen, tmp_path, capsys):
    """`run.py --watch`: watch-latency and a small fan-out (40 watchers sharing 4 streams) through
    the embedded bus and through kv-router following a shard service; every event delivered."""
    _run_watch_mode(tmp_path, capsys, ["kubefabric", "kf-sqlite-svc"])


def test_watch_mode_through_the_hub(loadgen, tmp_path, capsys):
    """The same through NATS JetStream and the watch-hub (kf-hub: nats-server, shard service,
    watch-hub, kv-router), all started, measured and removed again."""
    _run_watch_mode(tmp_path, capsys, ["kf-hub"])


def test_watch_table_ratios_to_etcd():
    case = bench_run.WatchCase("watch-fanout", 1000, 10.0, 10)
    base = {"workload": "watch-fanout", "case": case.label, "errors": 0, "missed_events": 0, "ops_per_sec": 10000,
            "watchers": 1000, "p50_ms": 1.0, "p99_ms": 2.0, "put_p50_ms": 1.0}
    results = [dict(base, server="etcd", send_to_event_p50_ms=2.0, send_to_event_p99_ms=4.0, slowest_send_p99_ms=5.0),
               dict(base, server="kf-hub", send_to_event_p50_ms=3.0, send_to_event_p99_ms=12.0, slowest_send_p99_ms=20.0,
                    cpu={"procs": {"router": 40.0, "hub": 50.0}})]
    table = bench_run.render_watch_table(results, ["etcd", "kf-hub"], [case])
    row = next(line for line in table.splitlines() if line.startswith("kf-hub "))
    assert row.split("|")[-1].split() == ["1.50", "3.00", "4.00"], row
    assert "90 (hub 50)" in row, row


def test_index_sqlite_variants(capsys):
    """bench/index_sqlite.py runs each variant through the SQLite store; the index writes more
    pages than no index, and fewer without its term index (bytes, not time: no timing asserted)."""
    spec = importlib.util.spec_from_file_location("bench_index_sqlite", REPO / "bench" / "index_sqlite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = {r["variant"]: r for r in (module.run(v, 640, 32, seed=0) for v in module.VARIANTS)}
    assert all(r["puts"] == 640 and r["cpu_us_per_put"] > 0 for r in out.values())
    written = {v: r["written_kb_per_put"] for v, r in out.items()}
    assert written["none"] < written["no-term-index"] < written["indexed"], written
    assert written["partial-term-index"] < written["indexed"], written
