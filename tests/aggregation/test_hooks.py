"""The documented hooks example (docs/examples/aggregation: releases.yaml + releases.py) served
by `kubefabric aggregation` on a real data layer: mutate, validate, a custom subresource and a
collection endpoint, and start-up refusing a broken hooks file."""
from __future__ import annotations

import shutil

import pytest

from harness.aggregation import start_aggregation
from harness.servers import REPO, start_kubefabric

EXAMPLE = REPO / "docs" / "examples" / "aggregation"
BASE = "/apis/ship.example.com/v1/namespaces/team/releases"


def release(name, service="web", version="v1.2.3", **spec):
    return {"apiVersion": "ship.example.com/v1", "kind": "Release", "metadata": {"name": name},
            "spec": {"service": service, "version": version, **spec}}


@pytest.fixture(scope="module")
def agg(tmp_path_factory):
    work = tmp_path_factory.mktemp("hooks")
    kf = start_kubefabric(work)
    agg = start_aggregation(work, kf.url, crd_dir=EXAMPLE)
    yield agg
    agg.stop()
    kf.stop()


def test_mutate_and_validate(agg):
    created = agg.json("POST", BASE, release("r1"))
    assert created["metadata"]["labels"] == {"service": "web"}
    assert created["spec"]["risk"] == "low"
    code, st = agg.fail("POST", BASE, release("r2", risk="high"))
    assert code == 422
    assert st["message"] == ('Release.ship.example.com "r2" is invalid: metadata.annotations: '
                             'Invalid value: a high-risk release needs a ship.example.com/ticket annotation')
    ticketed = release("r2", risk="high")
    ticketed["metadata"]["annotations"] = {"ship.example.com/ticket": "CHG-1"}
    agg.json("POST", BASE, ticketed)
    listed = agg.json("GET", BASE + "?labelSelector=service%3Dweb")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["r1", "r2"]


def test_subresource_and_collection(agg):
    agg.json("POST", BASE, release("a1", service="api"))
    agg.json("POST", BASE, release("a2", service="api"))
    approved = agg.json("POST", BASE + "/a1/approve", {})
    assert approved["status"]["approvedBy"] == "system:anonymous"
    code, st = agg.fail("POST", BASE + "/a1/approve", {})
    assert code == 409 and st["message"].startswith("already approved by")
    assert agg.fail("GET", BASE + "/a1/approve")[0] == 405
    assert agg.fail("POST", BASE + "/missing/approve", {})[0] == 404
    summary = agg.json("GET", BASE + "/-/summary?labelSelector=service%3Dapi")
    assert summary["services"] == {"api": {"releases": 2, "awaitingApproval": 1}}
    resources = agg.json("GET", "/apis/ship.example.com/v1")["resources"]
    assert "releases/approve" in [r["name"] for r in resources]


def test_broken_hooks_file_stops_start(tmp_path):
    crds = tmp_path / "crds"
    crds.mkdir()
    shutil.copy(EXAMPLE / "releases.yaml", crds / "releases.yaml")
    (crds / "releases.py").write_text("import nonexistent_module\n")
    with pytest.raises(RuntimeError) as err:
        start_aggregation(tmp_path, "http://127.0.0.1:1", crd_dir=crds)
    assert "releases.py: ModuleNotFoundError: No module named 'nonexistent_module'" in str(err.value)
    assert "exited with 2" in str(err.value)
