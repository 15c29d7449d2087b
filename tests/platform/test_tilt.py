"""The Tiltfile: `tilt ci` in local mode brings every resource up and both smoke tests pass (etcdctl
on the shards; three Orders through kube-apiserver, the trigger, the function, the operator and
the REST layer), and the k8s mode loads (this machine has no Docker daemon and no cluster, so k8s mode is evaluated,
not run).

Tilt is built from Go modules by ../shared/tools/tilt/build.sh (cached in
~/.cache/kubefabric-tools; about 4 minutes the first time on a machine, instant after). If it
cannot be built the tests fail: they never skip.

Local mode runs on free loopback ports (the Tiltfile reads KF_DEV_*_PORT) with data in a fresh
directory, so it does not collide with a developer's own `tilt up` or with other tests; it runs
from a clone inside a 0700 directory (a home directory's mode), as root too.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO.parent / "shared" / "tools" / "tilt" / "build.sh"
APPS = {"kv-router", "backend-pg", "backend-mysql"}
SERVICES = APPS | {"watch-hub"}  # KubeFabric's own processes; the hub is labelled "events"
# trigger and aggregation: workloads of deploy/overlays/dev, configured by the Tiltfile in k8s
# mode too (labels, dependencies, port-forwards).
K8S_MANIFESTS = SERVICES | {"postgresql", "mariadb", "nats", "smoke", "uncategorized", "trigger", "aggregation"}
EXAMPLE = {"shop-setup", "shop-function", "shop-operator", "shop-reports", "shop-demo"}
LOCAL_MANIFESTS = SERVICES | EXAMPLE | {"postgres", "mariadb", "nats", "smoke", "uv-sync", "aggregation",
                                        "trigger", "shop-orders-db", "shop-orders", "kube-apiserver",
                                        "shop-smoke"}
# The first build on a machine takes minutes; any test of this module may be the one that waits.
pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="session")
def tilt() -> str:
    if path := os.environ.get("KUBEFABRIC_TEST_TILT"):  # a tilt binary built elsewhere
        return path
    if not BUILD.exists():
        pytest.fail(f"{BUILD} is missing: the shared tools folder must sit beside the checkout")
    if not shutil.which("go"):
        pytest.fail("Go is required to build Tilt (../shared/tools/tilt/build.sh)")
    # One build at a time on this machine (pytest-xdist workers share ~/.cache/kubefabric-tools).
    lock_path = Path.home() / ".cache" / "kubefabric-tools.tilt-build.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=1200)
    path = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not os.access(path, os.X_OK):
        pytest.fail(f"building Tilt failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return path


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def tiltfile_result(tilt: str, *args: str) -> tuple[int, dict | None, str]:
    done = subprocess.run([tilt, "alpha", "tiltfile-result", "--", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    data = json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else None
    return done.returncode, data, done.stderr


def manifests(data: dict) -> dict[str, dict]:
    return {m["Name"]: m for m in data["Manifests"]}


PORT_NAMES = ["ROUTER", "PG_SHARD", "MYSQL_SHARD", "HUB", "POSTGRES", "MARIADB", "NATS", "NATS_HTTP",
              "ROUTER_METRICS", "PG_SHARD_METRICS", "MYSQL_SHARD_METRICS", "HUB_METRICS",
              "AGGREGATION", "AGGREGATION_METRICS", "TRIGGER", "SHOP_SHARD", "SHOP_SHARD_METRICS",
              "APISERVER", "SHOP_FUNCTION", "SHOP_REPORTS"]


def tilt_ci(tilt: str, checkout: Path, dev_dir: Path | None, timeout: float = 240) -> tuple[int, str, dict, float]:
    """`tilt ci --web-mode=prod` in local mode from `checkout` on free ports, data in `dev_dir`
    (None: the Tiltfile's default, <checkout>/.cache/dev); (exit status, output, ports, seconds).
    Afterwards nothing may still listen: tilt ci stops every serve_cmd it started."""
    ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES))))
    env = {**os.environ, **{f"KF_DEV_{k}_PORT": str(v) for k, v in ports.items()}}
    env.pop("KF_DEV_DIR", None)
    if dev_dir is not None:
        env["KF_DEV_DIR"] = str(dev_dir)
    env.pop("VIRTUAL_ENV", None)
    started = time.monotonic()
    proc = subprocess.Popen([tilt, "ci", "--web-mode=prod", "--port", "0", "--timeout", f"{timeout - 90:.0f}s",
                             "--", "--mode=local"], cwd=checkout, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 15)
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"tilt ci did not finish within {timeout:.0f} s:\n{out[-6000:]}")
    took = time.monotonic() - started
    deadline = time.monotonic() + 15
    while (still := [n for n, p in ports.items() if port_open(p)]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not still, f"still listening after tilt ci: {still}"
    return proc.returncode, out, ports, took


def test_tilt_ci_local_mode(tilt):
    """`tilt ci` from a clone inside a `mktemp -d` folder (mode 0700, like a home directory), with
    the Tiltfile's own data location: every resource comes up and the smoke test passes. As root,
    PostgreSQL (the postgres OS user) cannot enter the clone, so hack/postgres.sh keeps its data in
    /var/tmp and says so. One run covers both: tilt ci is the slowest test of this module."""
    private = Path(tempfile.mkdtemp(prefix="kf-private-"))
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    clone = private / "kubefabric"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(REPO), str(clone)], check=True, timeout=300)
    subprocess.run(["git", "checkout", "-q", head], cwd=clone, check=True, timeout=300)
    elsewhere = None
    try:
        rc, out, ports, took = tilt_ci(tilt, clone, None, timeout=420)
        link = clone / ".cache" / "dev" / "postgres"
        elsewhere = link.resolve() if link.is_symlink() else None
    finally:
        shutil.rmtree(private, ignore_errors=True)
        if elsewhere is not None and str(elsewhere).startswith("/var/tmp/"):
            shutil.rmtree(elsewhere, ignore_errors=True)
    assert rc == 0, f"tilt ci from {clone} failed ({rc}) after {took:.0f}s:\n{out[-8000:]}"
    assert "SUCCESS. All workloads are healthy." in out, out[-4000:]
    assert "smoke: put/get on shards pg-a and mysql-b, a range across both, a cross-shard delete " \
        f"refused, a watch event from each, through kv-router at 127.0.0.1:{ports['ROUTER']}: ok" in out, out[-4000:]
    assert "smoke: a live watch across both shards through kv-router and the watch-hub: ok" in out, out[-4000:]
    assert "3 shards, 3 rules, default pg-a" in out, "kv-router runs the demo topology"
    for shard in ("pg-a", "mysql-b", "shop-orders"):  # the shard services came up on their databases
        assert f"shard {shard}: serving the Shard API" in out, out[-4000:]
        # ... with a batch lane, which kv-router's streams (reads, writes, the commit feed) use
        assert f"shard {shard}: batch lane on 127.0.0.1:0 (advertised as :" in out, out[-4000:]
        assert re.search(rf"shard {shard}: streams to 127\.0\.0\.1:\d+ go on the batch lane at "
                         rf"127\.0\.0\.1:\d+", out), out[-4000:]
    for name in ("ROUTER_METRICS", "PG_SHARD_METRICS", "MYSQL_SHARD_METRICS", "HUB_METRICS"):  # the /metrics links
        assert f"/metrics on http://127.0.0.1:{ports[name]}/metrics" in out, out[-4000:]
    # the example through kube-apiserver on kv-router: function, operator, REST layer, deletion
    for line in ("function: 3/3 orders priced", "operator: 3/3 orders invoiced",
                 "rest:     orders over 100.00 by customer (orderreports query):",
                 "deleted:  3 orders, their finalizers ran"):
        assert line in out, (line, out[-6000:])
    if os.geteuid() == 0:  # PostgreSQL ran as postgres, with its data where postgres can go
        assert "the postgres OS user cannot enter" in out and "/var/tmp/kubefabric-dev-postgres." in out, out[-6000:]
        assert elsewhere is not None, "no link from .cache/dev/postgres to the data"


def test_local_mode_resources(tilt):
    rc, data, err = tiltfile_result(tilt)  # no args: local is the default
    assert rc == 0 and data and not data.get("Error"), err
    found = manifests(data)
    assert set(found) == LOCAL_MANIFESTS, sorted(found)
    labels = {name: set(m.get("Labels") or {}) for name, m in found.items()}
    assert labels["postgres"] == labels["mariadb"] == {"data"}
    assert labels["nats"] == labels["watch-hub"] == {"events"}
    assert all(labels[s] == {"apps"} for s in APPS)
    deps = {name: set(m.get("ResourceDependencies") or []) for name, m in found.items()}
    assert deps["backend-pg"] == {"uv-sync", "postgres", "nats"}
    assert deps["backend-mysql"] == {"uv-sync", "mariadb", "nats"}
    assert deps["shop-orders"] == {"uv-sync", "shop-orders-db", "nats"}
    assert deps["watch-hub"] == {"nats", "backend-pg", "backend-mysql", "shop-orders"}
    assert deps["kv-router"] == {"backend-pg", "backend-mysql", "shop-orders", "watch-hub"}
    assert deps["smoke"] == {"kv-router"}
    assert deps["trigger"] == {"kv-router"} and labels["trigger"] == {"apps"}
    assert deps["kube-apiserver"] == {"kv-router"} and labels["kube-apiserver"] == {"kubernetes"}
    assert deps["shop-setup"] == {"kube-apiserver", "trigger"}
    assert all(labels[n] == {"example"} for n in EXAMPLE) and labels["shop-smoke"] == {"tests"}
    assert deps["shop-smoke"] == deps["shop-demo"] == {"shop-function", "shop-operator", "shop-reports", "trigger"}
    assert found["shop-demo"]["TriggerMode"] == 2, "shop-demo runs only when triggered (manual, no auto-init)"
    assert deps["aggregation"] == {"kv-router"} and labels["aggregation"] == {"apps"}
    probe = found["aggregation"]["DeployTarget"]["ReadinessProbe"]["httpGet"]
    assert (probe["scheme"], probe["path"]) == ("HTTPS", "/readyz")
    for name in SERVICES | {"postgres", "mariadb", "nats", "aggregation"}:
        target = found[name]["DeployTarget"]
        assert target["ServeCmd"]["Argv"], name
        assert target["ReadinessProbe"], f"{name} has a readiness probe"
    assert found["kv-router"]["DeployTarget"]["ServeCmd"]["Argv"][-1] == "hack/kv-router.sh"
    assert found["watch-hub"]["DeployTarget"]["ServeCmd"]["Argv"][-1] == "hack/watch-hub.sh"
    for shard in ("backend-pg", "backend-mysql"):  # the leader publishes to the dev NATS
        argv = found[shard]["DeployTarget"]["ServeCmd"]["Argv"]
        nats = f"nats://127.0.0.1:{os.environ.get('KF_DEV_NATS_PORT', '14222')}"
        assert argv[argv.index("--nats-url") + 1] == nats, argv
    for name in SERVICES:
        probe = found[name]["DeployTarget"]["ReadinessProbe"]["exec"]["command"]
        assert "hack/grpc-health-probe.py" in probe
        links = found[name]["DeployTarget"]["Links"] or []
        assert [(l["Name"], l["URL"]["Path"]) for l in links] == [("metrics", "/metrics")], name
        assert ("readiness" in probe) == (name != "kv-router")
        assert found[name]["ImageTargets"] is None  # no Docker in local mode


def test_k8s_mode_loads(tilt):
    rc, data, err = tiltfile_result(tilt, "--mode=k8s")
    assert rc == 0 and data and not data.get("Error"), err
    found = manifests(data)
    assert set(found) == K8S_MANIFESTS, sorted(found)
    for name in SERVICES:
        images = found[name]["ImageTargets"]
        assert images and len(images) == 1, name
        image = images[0]
        assert image["selector"] == "kubefabric"
        assert "FROM base AS dev" in image["BuildDetails"]["dockerfileContents"]
        live = image["LiveUpdateSpec"]
        assert {s["localPath"] for s in live["syncs"]} >= {"libs/kubefabric", "services/kv-router/kv_router",
                                                          "services/backend-pg/backend_pg",
                                                          "services/backend-mysql/backend_mysql",
                                                          "services/backend-sqlite/backend_sqlite",
                                                          "services/watch-hub/watch_hub"}
        assert "uv.lock" in live["stopPaths"]
        assert live["execs"], "live_update restarts the service"
        assert image["overrideCommand"]["command"][:2] == ["sh", "-c"]
        assert found[name]["Labels"] == ({"events": "events"} if name == "watch-hub" else {"apps": "apps"})
        forwards = found[name]["DeployTarget"]["portForwardTemplateSpec"]["forwards"]
        assert [(f.get("name"), f.get("path")) for f in forwards][1:] == [("metrics", "metrics")], forwards
    yaml_text = "".join(m["DeployTarget"].get("yaml", "") for m in found.values() if m["DeployTarget"])
    assert "namespace: kubefabric-dev" in yaml_text
    deps = {name: set(m.get("ResourceDependencies") or []) for name, m in found.items()}
    assert deps["kv-router"] == {"backend-pg", "backend-mysql", "watch-hub"}
    assert deps["backend-pg"] == {"postgresql", "nats"} and deps["backend-mysql"] == {"mariadb", "nats"}
    assert deps["watch-hub"] == {"nats", "backend-pg", "backend-mysql"} and deps["smoke"] == {"kv-router"}
    assert found["postgresql"]["Labels"] == {"data": "data"} and found["nats"]["Labels"] == {"events": "events"}
    for name in ("trigger", "aggregation"):
        assert deps[name] == {"kv-router"} and found[name]["Labels"] == {"apps": "apps"}, name
        assert found[name]["ImageTargets"][0]["selector"] == "kubefabric"
        forwards = found[name]["DeployTarget"]["portForwardTemplateSpec"]["forwards"]
        assert ("metrics", "metrics") in [(f.get("name"), f.get("path")) for f in forwards], forwards


def test_unknown_mode_is_refused(tilt):
    rc, _, err = tiltfile_result(tilt, "--mode=docker")
    assert rc != 0 and "--mode must be local or k8s" in err, err
