"""Shared test setup.

tests/ is the root for the test helpers (harness/, differential/normalise.py), and the server
fixtures live here so tests/differential, tests/etcdctl and tests/*.py share them.

The differential fixture: one test body, run against real etcd and against KubeFabric.

    def test_put(differential):
        def body(c: Client, record):
            record("put", c.put(b"k", b"v"))
            record("get", c.get(b"k"))
        differential(body)

Each side gets a fresh server (fresh data dir, revision 1). `record(label, value, ignore=())`
stores a normalised value; after both runs the recordings must be equal, label by label.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "differential"))

from harness.client import Client
from harness.mariadb import mariadb_kind, mariadb_server  # noqa: F401
from harness.postgres import postgres_server, postgres_kind  # noqa: F401
from harness.servers import START
from normalise import LeaseIds, to_plain


@pytest.fixture
def server_factory(tmp_path):
    started = []

    def start(kind: str, extra=None):
        d = tmp_path / f"{kind}-{len(started)}"
        d.mkdir()
        s = START[kind](d, extra)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def differential(server_factory, request):
    def run(body, etcd_args=None, kubefabric_args=None, reference="etcd"):
        """reference: "etcd" (Debian's 3.4) or "etcd37" (3.7.3, for newer APIs)."""
        results = {}
        for kind, extra in (("etcd", etcd_args), ("kubefabric", kubefabric_args)):
            # KUBEFABRIC_DIFF_AGAINST=etcd runs the second side on etcd too: a check that a new
            # test body is deterministic before it is used to judge KubeFabric.
            if kind == "etcd":
                launch = reference
            else:
                launch = os.environ.get("KUBEFABRIC_DIFF_AGAINST", kind)
                launch = reference if launch == "etcd" else launch
            server = server_factory(launch, etcd_args if launch.startswith("etcd") else extra)
            client = Client(server.endpoint, kind)
            rec: list[tuple[str, object]] = []
            leases = LeaseIds()

            def record(label, value, ignore=(), _rec=rec):
                _rec.append((label, to_plain(value, frozenset(ignore))))

            record.leases = leases
            try:
                body(client, record)
            finally:
                client.close()
            results[kind] = rec
        etcd, ours = results["etcd"], results["kubefabric"]
        if dump := os.environ.get("KUBEFABRIC_DIFF_DUMP"):  # a directory: both recordings as JSON
            Path(dump).mkdir(parents=True, exist_ok=True)
            name = request.node.nodeid.replace("/", "_").replace("::", "__")
            (Path(dump) / f"{name}.json").write_text(json.dumps(results, indent=1, default=repr))
        for (l1, v1), (l2, v2) in zip(etcd, ours):
            assert l1 == l2, f"test body recorded different steps: {l1!r} vs {l2!r}"
            assert v2 == v1, (f"step {l1!r} differs\n etcd:       {json.dumps(v1, sort_keys=True)}\n"
                              f" kubefabric: {json.dumps(v2, sort_keys=True)}")
        assert len(etcd) == len(ours), "test body recorded a different number of steps"
        assert etcd, "test body recorded nothing"
        return etcd

    return run
