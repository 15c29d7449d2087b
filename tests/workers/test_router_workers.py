"""`kubefabric serve --workers 2` in front of shard services (--shard, --topology): two kv-router
processes on one port, each a router of its own over the same shard services (what they answer
together: test_serve_workers.py's consistency tests, run on this mode too). Here: it says so at
start, only the parent compacts, a topology with an embedded shard is refused before anything
opens, and SIGTERM stops the worker with the parent."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from harness.client import Client, answering_pid, spread_channels
from harness.servers import free_port, pid_alive
from harness.waiting import wait_for


def test_the_parent_alone_compacts_and_sigterm_stops_both(server_factory):
    server = server_factory("routed-sqlite-w2", ["--auto-compaction-mode", "periodic",
                                                 "--auto-compaction-retention", "2s"])
    assert "serving with 2 kv-router processes on the same client URLs" in server.log(), server.log()
    channels = spread_channels(server.endpoint)
    worker = next(p for p in map(answering_pid, channels) if p != server.proc.pid)
    for c in channels:
        c.close()
    client = Client(server.endpoint, spread=True)  # writes through both processes
    for i in range(8):
        client.put(b"c", str(i).encode())

    def compactions() -> list[str]:
        return [line for line in server.log().splitlines() if "auto compaction" in line]
    wait_for(lambda: any("auto compaction at revision" in line for line in compactions()), 30,
             f"a compaction:\n{server.log()}")
    assert not any("[worker" in line for line in compactions()), compactions()
    assert server.stop(signal.SIGTERM, timeout=30) == 0, server.log()
    assert not pid_alive(worker), "a worker outlived its parent's SIGTERM"


def test_a_topology_with_an_embedded_shard_is_refused(tmp_path):
    path = tmp_path / "topology.yaml"
    path.write_text("default: main\nshards:\n  - name: main\n    endpoint: embedded\n")
    argv = [sys.executable, "-m", "kubefabric.cli", "serve", "--workers", "2", "--topology", str(path),
            "--data-dir", str(tmp_path / "data"), "--listen-client-urls", f"http://127.0.0.1:{free_port()}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    assert "shard main is embedded, and --workers 2 processes share shard services only" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert not os.path.exists(tmp_path / "data" / "main"), "the embedded shard was opened"
