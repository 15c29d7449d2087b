#!/usr/bin/env python3
"""A real kube-apiserver on kubefabric (or etcd), driven with kubectl: see apiserver_scenario.sh.

Steps, each timed: namespaces; ConfigMaps and Secrets; a CRD and 1,000 custom resources; chunked
lists (kubectl --chunk-size, and limit+continue by hand); label-selected lists; `kubectl get -w`
seeing ADDED/MODIFIED/DELETED; namespace deletion (finalized by hand: no kube-controller-manager
runs here); consistent reads served from the watch cache; a compaction cycle after which an old
resourceVersion (exact list, continue token) answers 410 Gone; deploy/overlays/dev and ha applied
with server-side dry run; kube-apiserver restart, then storage server restart, with the
data intact. Prints "N passed, N failed" at the end, exits 1 on failure. Runs in the project's
environment (apiserver_scenario.sh does that): kube-apiserver is the test harness's
(harness.kubeapiserver).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

from harness.kubeapiserver import KubeAPIServer
from harness.servers import log_tail, stop_process_group
from harness.waiting import wait_for

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# Not deploy/'s aggregation group: kube-apiserver gives a CRD group a local APIService of
# that name, which the dry run of deploy/ would then find in the way.
GROUP = "scenario.kubefabric.io"
N_CR = 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg: str) -> None:
    print(msg, flush=True)


class Proc:
    def __init__(self, name: str, argv: list[str], logdir: Path):
        self.name, self.argv = name, argv
        self.log_path = logdir / f"{name}.log"
        self.logf = open(self.log_path, "ab")
        self.p = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT,
                                  start_new_session=True)

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, timeout: float = 20) -> None:
        stop_process_group(self.p, timeout)
        self.logf.close()

    def tail(self, n: int = 40) -> str:
        return log_tail(self.log_path, n)


class Cluster:
    """The storage server under test and a kube-apiserver on it (tests/harness/kubeapiserver.py)."""

    def __init__(self, args, work: Path):
        self.args, self.work = args, work
        self.storage: Proc | None = None
        self.storage_port = free_port()
        self.peer_port = free_port()
        self.storage_dir = work / "storage-data"
        self.apiserver = KubeAPIServer(
            work, f"http://127.0.0.1:{self.storage_port}", compaction_interval=args.compaction_interval,
            extra=["--feature-gates=WatchList=true,ListFromCacheSnapshot=true,"
                   "ConsistentListFromCacheSkipTimeoutFallback=true"])
        self.kubeconfig = self.apiserver.kubeconfig
        self.token = self.apiserver.token
        self.ssl = ssl.create_default_context()
        self.ssl.check_hostname = False
        self.ssl.verify_mode = ssl.CERT_NONE

    # -- processes ---------------------------------------------------------------------------
    def start_storage(self) -> None:
        a, port = self.args, self.storage_port
        if a.server == "kubefabric":
            argv = [str(REPO / ".venv/bin/kubefabric"), "serve",
                    "--listen-client-urls", f"http://127.0.0.1:{port}",
                    "--data-dir", str(self.storage_dir), "--log-level", "warning"]
        else:
            peer = self.peer_port
            argv = [a.etcd, "--name", "default", "--data-dir", str(self.storage_dir),
                    "--listen-client-urls", f"http://127.0.0.1:{port}",
                    "--advertise-client-urls", f"http://127.0.0.1:{port}",
                    "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                    "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                    "--initial-cluster", f"default=http://127.0.0.1:{peer}", "--log-level", "warn"]
        self.storage = Proc(a.server, argv, self.work)
        deadline = time.monotonic() + 60
        while True:
            if not self.storage.alive():
                raise RuntimeError(f"{a.server} exited:\n{self.storage.tail()}")
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{a.server} not listening after 60s")
                time.sleep(0.1)

    def start_apiserver(self) -> float:
        return self.apiserver.start()

    def stop(self) -> None:
        self.apiserver.stop()
        if self.storage:
            self.storage.stop()

    # -- clients -----------------------------------------------------------------------------
    def raw(self, path: str, method: str = "GET", body: dict | None = None,
            timeout: float = 30) -> tuple[int, str]:
        return self.apiserver.raw(path, method, body, timeout)

    def first_watch_event(self, path: str, timeout: float = 15) -> tuple[int, dict]:
        """The HTTP status and the first event of a watch stream (the stream stays open)."""
        req = urllib.request.Request(f"https://127.0.0.1:{self.api_port}{path}",
                                     headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, context=self.ssl, timeout=timeout) as r:
                return r.status, json.loads(r.readline() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def rawj(self, path: str, **kw) -> dict:
        return self.apiserver.rawj(path, **kw)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 300) -> str:
        return self.apiserver.kubectl(*args, input=input, check=check, timeout=timeout)


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


# ---- the steps ---------------------------------------------------------------------------------

def step_namespaces(c: Cluster, st: dict) -> str:
    for ns in ("kf-a", "kf-b", "kf-doomed"):
        c.kubectl("create", "namespace", ns)
    c.kubectl("label", "namespace", "kf-a", "team=storage")
    got = c.kubectl("get", "namespaces", "-l", "team=storage", "-o", "name").split()
    expect(got == ["namespace/kf-a"], f"label-selected namespaces: {got}")
    names = c.kubectl("get", "namespaces", "-o", "name").split()
    for ns in ("default", "kube-system", "kf-a", "kf-b", "kf-doomed"):
        expect(f"namespace/{ns}" in names, f"namespace {ns} missing from {names}")
    return f"{len(names)} namespaces"


def manifest_list(items: list[dict]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def step_configmaps_secrets(c: Cluster, st: dict) -> str:
    cms = [{"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"cm-{i:03d}", "namespace": "kf-a", "labels": {"parity": "even" if i % 2 == 0 else "odd"}},
            "data": {"index": str(i), "payload": "x" * 256}} for i in range(50)]
    secrets = [{"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": f"secret-{i:03d}", "namespace": "kf-a"},
                "stringData": {"password": f"p{i}"}} for i in range(50)]
    c.kubectl("create", "-f", "-", input=manifest_list(cms + secrets))
    # also some in the namespace that will be deleted
    c.kubectl("create", "-f", "-", input=manifest_list([
        {**cm, "metadata": {**cm["metadata"], "namespace": "kf-doomed"}} for cm in cms[:10]]))
    c.kubectl("patch", "configmap", "cm-007", "-n", "kf-a", "--type=merge", "-p", '{"data":{"index":"seven"}}')
    got = json.loads(c.kubectl("get", "configmap", "cm-007", "-n", "kf-a", "-o", "json"))
    expect(got["data"]["index"] == "seven", f"patched configmap: {got['data']}")
    sec = json.loads(c.kubectl("get", "secret", "secret-042", "-n", "kf-a", "-o", "json"))
    import base64
    expect(base64.b64decode(sec["data"]["password"]).decode() == "p42", "secret data")
    c.kubectl("delete", "configmap", "cm-049", "-n", "kf-a")
    n_cm = len(c.kubectl("get", "configmaps", "-n", "kf-a", "-o", "name").split())
    n_sec = len(c.kubectl("get", "secrets", "-n", "kf-a", "-o", "name").split())
    # kube-root-ca.crt is created by a controller we do not run
    expect(n_cm == 49, f"{n_cm} configmaps in kf-a, want 49")
    expect(n_sec == 50, f"{n_sec} secrets in kf-a, want 50")
    st["cm_rv"] = got["metadata"]["resourceVersion"]
    return f"{n_cm} configmaps, {n_sec} secrets"


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {"group": GROUP, "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "properties": {
                                   "size": {"type": "integer"}, "color": {"type": "string"}}}}}}}]},
}


def step_crd(c: Cluster, st: dict) -> str:
    c.kubectl("apply", "-f", "-", input=json.dumps(CRD))
    c.kubectl("wait", "--for=condition=Established", f"crd/widgets.{GROUP}", "--timeout=60s")
    wait_for(lambda: c.raw(f"/apis/{GROUP}/v1/namespaces/kf-b/widgets")[0] == 200, 60, "widgets API served")
    items = [{"apiVersion": f"{GROUP}/v1", "kind": "Widget",
              "metadata": {"name": f"w-{i:04d}", "namespace": "kf-b",
                           "labels": {"tier": "abcdefghij"[i % 10], "big": "yes" if i >= 900 else "no"}},
              "spec": {"size": i, "color": ["red", "green", "blue"][i % 3]}} for i in range(N_CR)]
    t0 = time.monotonic()
    for k in range(0, N_CR, 250):
        c.kubectl("create", "-f", "-", input=manifest_list(items[k:k + 250]), timeout=600)
    dt = time.monotonic() - t0
    c.kubectl("create", "-f", "-", input=manifest_list([
        {**w, "metadata": {**w["metadata"], "namespace": "kf-doomed"}} for w in items[:20]]))
    return f"{N_CR} widgets created in {dt:.1f}s ({N_CR / dt:.0f}/s)"


def step_chunked_lists(c: Cluster, st: dict) -> str:
    names = c.kubectl("get", "widgets", "-n", "kf-b", "--chunk-size=37", "-o", "name").split()
    expect(len(names) == N_CR and len(set(names)) == N_CR, f"kubectl --chunk-size=37 gave {len(names)} names")
    # limit + continue by hand: every page but the last carries a continue token
    seen, pages, cont, rvs = [], 0, "", set()
    while True:
        q = f"/apis/{GROUP}/v1/namespaces/kf-b/widgets?limit=100" + (f"&continue={cont}" if cont else "")
        page = c.rawj(q)
        pages += 1
        seen += [i["metadata"]["name"] for i in page["items"]]
        rvs.add(page["metadata"]["resourceVersion"])
        cont = page["metadata"].get("continue", "")
        if cont:
            expect(page["metadata"].get("remainingItemCount", 1) > 0, "remainingItemCount on a middle page")
        else:
            break
    expect(pages == 10, f"{pages} pages of 100 for {N_CR} widgets")
    expect(seen == sorted(seen) and len(set(seen)) == N_CR, f"paged list: {len(seen)} names, sorted={seen == sorted(seen)}")
    expect(len(rvs) == 1, f"all pages of one list share one resourceVersion, got {rvs}")
    # all namespaces, chunked, through the cluster-scoped path
    allw = c.kubectl("get", "widgets", "-A", "--chunk-size=100", "-o", "name").split()
    expect(len(allw) == N_CR + 20, f"{len(allw)} widgets in all namespaces")
    return f"{pages} pages, one resourceVersion {rvs.pop()}"


def step_label_selectors(c: Cluster, st: dict) -> str:
    def count(*sel: str) -> int:
        return len(c.kubectl("get", "widgets", "-n", "kf-b", *sel, "-o", "name").split())
    checks = {
        ("-l", "tier=a"): 100,
        ("-l", "tier in (a,b,c)"): 300,
        ("-l", "tier!=a"): 900,
        ("-l", "big=yes,tier=j"): 10,
        ("-l", "!nosuchlabel"): N_CR,
        ("-l", "tier=a", "--chunk-size=7"): 100,
        ("--field-selector", "metadata.name=w-0123"): 1,
    }
    for sel, want in checks.items():
        got = count(*sel)
        expect(got == want, f"kubectl get widgets {' '.join(sel)}: {got}, want {want}")
    n = len(c.kubectl("get", "configmaps", "-n", "kf-a", "-l", "parity=even", "-o", "name").split())
    expect(n == 25, f"{n} even configmaps, want 25")
    return f"{len(checks) + 1} selectors"


def step_watch(c: Cluster, st: dict) -> str:
    p = subprocess.Popen(["kubectl", f"--kubeconfig={c.kubeconfig}", "get", "configmaps", "-n", "kf-a",
                          "-w", "--output-watch-events", "-o", "json", "--watch-only"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events: list[tuple[str, str]] = []
    buf: list[str] = []

    def reader():
        depth = 0
        for line in p.stdout:
            buf.append(line)
            depth += line.count("{") - line.count("}")
            if depth == 0 and "".join(buf).strip():
                try:
                    ev = json.loads("".join(buf))
                    events.append((ev["type"], ev["object"]["metadata"]["name"]))
                except ValueError:
                    pass
                buf.clear()
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    try:
        time.sleep(2)  # let the watch establish
        t0 = time.monotonic()
        c.kubectl("create", "configmap", "watched", "-n", "kf-a", "--from-literal=k=v1")
        c.kubectl("patch", "configmap", "watched", "-n", "kf-a", "--type=merge", "-p", '{"data":{"k":"v2"}}')
        c.kubectl("delete", "configmap", "watched", "-n", "kf-a")
        want = [("ADDED", "watched"), ("MODIFIED", "watched"), ("DELETED", "watched")]
        wait_for(lambda: [e for e in events if e[1] == "watched"] == want, 30,
                 f"watch events {want}, have {events}", 0.1)
        dt = time.monotonic() - t0
    finally:
        p.terminate()
        p.wait(10)
    others = [e for e in events if e[1] != "watched"]
    expect(not others, f"unexpected events on a --watch-only watch: {others}")
    return f"ADDED, MODIFIED, DELETED seen in {dt:.2f}s"


def step_namespace_deletion(c: Cluster, st: dict) -> str:
    c.kubectl("delete", "namespace", "kf-doomed", "--wait=false")
    ns = c.rawj("/api/v1/namespaces/kf-doomed")
    expect(ns["status"]["phase"] == "Terminating", f"namespace phase {ns['status']['phase']}")
    expect(ns["metadata"].get("deletionTimestamp"), "deletionTimestamp set")
    # No kube-controller-manager here: do what its namespace controller does.
    code, _ = c.raw("/api/v1/namespaces/kf-doomed/configmaps", method="POST",
                    body={"metadata": {"name": "late"}})
    expect(code == 403, f"creating in a terminating namespace: HTTP {code}, want 403")
    c.kubectl("delete", "configmaps,secrets,widgets", "--all", "-n", "kf-doomed")
    ns["spec"]["finalizers"] = []
    c.rawj("/api/v1/namespaces/kf-doomed/finalize", method="PUT", body=ns)
    wait_for(lambda: c.raw("/api/v1/namespaces/kf-doomed")[0] == 404, 30, "namespace gone")
    left = c.kubectl("get", "configmaps,widgets", "-n", "kf-doomed", "-o", "name").split()
    expect(not left, f"objects left in the deleted namespace: {left}")
    return "Terminating, emptied, finalized, gone"


def metric(c: Cluster, name: str, **labels: str) -> float:
    code, body = c.raw("/metrics")
    expect(code == 200, f"/metrics HTTP {code}")
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def step_consistent_reads(c: Cluster, st: dict) -> str:
    # A list without resourceVersion is a consistent read; kube-apiserver serves it from the
    # watch cache after a progress request to the storage (WatchProgressRequest). With
    # ConsistentListFromCacheSkipTimeoutFallback it does not fall back to the storage silently.
    m = "apiserver_watch_cache_consistent_read_total"

    def served() -> float:
        return metric(c, m, success="true", fallback="false")

    def not_served() -> float:
        return metric(c, m, fallback="true") + metric(c, m, fallback="skipped") + metric(c, m, success="false")
    before, before_bad = served(), not_served()
    t0 = time.monotonic()
    for i in range(20):
        c.rawj("/api/v1/namespaces/kf-a/configmaps")
        c.rawj(f"/apis/{GROUP}/v1/namespaces/kf-b/widgets?labelSelector=tier%3Dc")
    dt = (time.monotonic() - t0) / 40
    n_served, n_bad = served() - before, not_served() - before_bad
    expect(n_served >= 40, f"consistent reads served from the watch cache: {n_served}, not served {n_bad}")
    expect(n_bad == 0, f"{n_bad} consistent reads fell back to the storage or failed")
    return f"{n_served:.0f} served from the watch cache, 0 fallbacks, {dt * 1000:.0f} ms per list"


def step_compaction(c: Cluster, st: dict) -> str:
    old = c.rawj("/api/v1/namespaces/kf-a/configmaps?limit=10")
    old_rv, old_cont = old["metadata"]["resourceVersion"], old["metadata"]["continue"]
    code, _ = c.raw(f"/api/v1/namespaces/kf-a/configmaps?resourceVersion={old_rv}&resourceVersionMatch=Exact")
    expect(code == 200, f"exact list at a fresh resourceVersion: HTTP {code}")
    t0 = time.monotonic()

    def gone() -> bool:
        c.kubectl("create", "configmap", f"tick-{int(time.monotonic() * 1000)}", "-n", "kf-b")
        code, body = c.raw(f"/api/v1/namespaces/kf-a/configmaps?resourceVersion={old_rv}&resourceVersionMatch=Exact")
        if code == 410:
            st["gone_body"] = body
            return True
        expect(code == 200, f"exact list: HTTP {code}: {body[:300]}")
        return False
    wait_for(gone, 6 * c.args.compaction_interval + 30, "the old resourceVersion to be compacted", 2)
    dt = time.monotonic() - t0
    status = json.loads(st["gone_body"])
    expect(status.get("reason") == "Expired" and status.get("code") == 410, f"410 status: {status}")
    code, body = c.raw(f"/api/v1/namespaces/kf-a/configmaps?limit=10&continue={old_cont}")
    expect(code == 410, f"continue token from before the compaction: HTTP {code}, want 410: {body[:300]}")
    # (Watches are served by the watch cache, whose history is not tied to the storage's
    # compaction: a watch from old_rv still works, as it does on etcd.)
    return f"old resourceVersion {old_rv} gone (410 Expired) after {dt:.0f}s; its continue token 410 too"


def counts(c: Cluster) -> dict:
    return {
        "widgets": len(c.kubectl("get", "widgets", "-A", "-o", "name").split()),
        "configmaps": len(c.kubectl("get", "configmaps", "-n", "kf-a", "-o", "name").split()),
        "secrets": len(c.kubectl("get", "secrets", "-n", "kf-a", "-o", "name").split()),
        "namespaces": sorted(n for n in c.kubectl("get", "namespaces", "-o", "name").split() if "kf-" in n),
        "cm-007": json.loads(c.kubectl("get", "configmap", "cm-007", "-n", "kf-a", "-o", "json"))["data"]["index"],
    }


def step_apiserver_restart(c: Cluster, st: dict) -> str:
    before = counts(c)
    c.apiserver.stop()
    ready = c.start_apiserver()
    after = counts(c)
    expect(after == before, f"after kube-apiserver restart: {after} != {before}")
    return f"ready again in {ready:.1f}s, {after['widgets']} widgets, {after['configmaps']} configmaps intact"


def step_storage_restart(c: Cluster, st: dict) -> str:
    before = counts(c)
    c.apiserver.stop()
    c.storage.stop()
    c.start_storage()
    ready = c.start_apiserver()
    after = counts(c)
    expect(after == before, f"after {c.args.server} restart: {after} != {before}")
    # and it still takes writes
    c.kubectl("create", "configmap", "after-restart", "-n", "kf-a")
    return f"{c.args.server} + kube-apiserver restarted, ready in {ready:.1f}s, data intact"


def step_deploy_dry_run(c: Cluster, st: dict) -> str:
    """deploy/overlays/dev and ha, applied with server-side dry run: kube-apiserver (on the storage
    under test) admits every object with strict field validation, and nothing is stored. A dry
    run creates no namespace, so each overlay's Namespace is applied for real first; its
    PodSecurity labels (restricted) then make the admission plugin check every pod template, and
    any warning fails the step."""
    summary = []
    for overlay, namespace in (("dev", "kubefabric-dev"), ("ha", "kubefabric")):
        path = REPO / "deploy" / "overlays" / overlay
        c.kubectl("apply", "-f", str(path / "namespace.yaml"))
        r = subprocess.run(["kubectl", f"--kubeconfig={c.kubeconfig}", "apply", "--dry-run=server",
                            "--validate=strict", "-k", str(path)],
                           capture_output=True, text=True, timeout=120)
        expect(r.returncode == 0, f"{overlay}: kubectl apply --dry-run=server failed:\n{r.stderr[-3000:]}")
        expect(not r.stderr.strip(), f"{overlay}: warnings:\n{r.stderr[-3000:]}")
        lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
        expect(lines and all(ln.endswith("(server dry run)") for ln in lines),
               f"{overlay}: unexpected output:\n{r.stdout}")
        stored = c.kubectl("get", "deployments,services,networkpolicies", "-n", namespace, "-o", "name")
        expect(not stored.strip(), f"{overlay}: a dry run stored objects: {stored}")
        summary.append(f"{overlay}: {len(lines)} objects")
    return ", ".join(summary) + ", no PodSecurity (restricted) warning"


STEPS = [
    ("namespaces", step_namespaces),
    ("configmaps and secrets", step_configmaps_secrets),
    ("CRD and 1,000 custom resources", step_crd),
    ("chunked lists (limit+continue)", step_chunked_lists),
    ("label-selected lists", step_label_selectors),
    ("kubectl get -w", step_watch),
    ("namespace deletion", step_namespace_deletion),
    ("consistent reads from the watch cache", step_consistent_reads),
    ("compaction: 410 Gone", step_compaction),
    ("deploy/ overlays: server-side dry run", step_deploy_dry_run),
    ("kube-apiserver restart", step_apiserver_restart),
    ("storage restart", step_storage_restart),
]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", choices=("kubefabric", "etcd"), default="kubefabric")
    ap.add_argument("--etcd", default="etcd")
    ap.add_argument("--kube-apiserver", help="default: $KUBEFABRIC_TEST_KUBE_APISERVER or build.sh's")
    ap.add_argument("--compaction-interval", type=int, default=10, help="seconds")
    ap.add_argument("--workdir", default="")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = ap.parse_args()
    if args.kube_apiserver:
        os.environ["KUBEFABRIC_TEST_KUBE_APISERVER"] = args.kube_apiserver

    work = Path(args.workdir or tempfile.mkdtemp(prefix="kfconf-apiserver-"))
    work.mkdir(parents=True, exist_ok=True)
    c = Cluster(args, work)
    results = []
    try:
        t0 = time.monotonic()
        c.start_storage()
        ready = c.start_apiserver()
        log(f"{'start ' + args.server + ' + kube-apiserver':<44} {time.monotonic() - t0:7.2f}s  "
            f"ready (/readyz) in {ready:.1f}s")
        for name, fn in STEPS:
            st = {}
            t = time.monotonic()
            try:
                detail = fn(c, st)
                ok = True
            except Exception as e:  # noqa: BLE001 - one step's failure must not hide the others
                detail = f"{type(e).__name__}: {e}"
                if not isinstance(e, AssertionError):
                    detail += "\n" + traceback.format_exc()
                ok = False
            dt = time.monotonic() - t
            results.append((name, ok))
            log(f"{'PASS' if ok else 'FAIL'} {name:<39} {dt:7.2f}s  {detail}")
            if not c.apiserver.alive() or not c.storage.alive():
                log(f"a server died:\n{c.apiserver.tail()}\n{c.storage.tail()}")
                break
    finally:
        c.stop()
        if not args.keep and all(ok for _, ok in results) and results:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"logs and data: {work}")
    passed = sum(ok for _, ok in results)
    failed = len(STEPS) - passed
    log(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
