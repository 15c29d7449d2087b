"""End to end (issue 18 point 6): kube-apiserver v1.37 on KubeFabric with `kubefabric
aggregation` registered as an APIService, driven with kubectl and a kopf operator; delegated
authentication (front-proxy certificate, TokenReview) and authorization (SubjectAccessReview:
RBAC per verb, resource and namespace, kube-apiserver's 403 otherwise)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffcluster import GROUPS, aggregated_cluster
from harness.servers import spawn

GROUP = GROUPS["agg"]
HERE = Path(__file__).parent
VIEWER_TOKEN = "kubefabric-viewer-token"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    with aggregated_cluster(work, tokens=(f'{VIEWER_TOKEN},viewer,viewer,"team"',)) as (api, agg):
        yield api, agg, work


def kubectl_as(api, token: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", f"--server={api.url}", "--insecure-skip-tls-verify",
                           f"--token={token}", *args], capture_output=True, text=True, timeout=60)


def widget(name: str, ns: str, **spec) -> str:
    return json.dumps({"apiVersion": f"{GROUP}/v1", "kind": "Widget",
                       "metadata": {"name": name, "namespace": ns},
                       "spec": {"color": "red", **spec}})


def test_kubectl_through_kube_apiserver(cluster):
    api, agg, _ = cluster
    api.kubectl("create", "namespace", "kubectl")
    api.kubectl("apply", "-f", "-", input=widget("w1", "kubectl", replicas=2))
    table = api.kubectl("get", f"widgets.{GROUP}", "-n", "kubectl")
    assert table.splitlines()[0].split() == ["NAME", "COLOR", "REPLICAS", "READY", "AGE"]
    assert table.splitlines()[1].split()[:3] == ["w1", "red", "2"]
    assert "wd" in api.kubectl("api-resources", f"--api-group={GROUP}")
    # kube-apiserver fetches an APIService's OpenAPI in the background (retrying after a back-off)
    explain = ["kubectl", f"--kubeconfig={api.kubeconfig}", "explain", f"widgets.{GROUP}.spec"]
    api.wait_for(lambda: "color" in subprocess.run(explain, capture_output=True, text=True,
                                                     timeout=60).stdout,
                 180, "kubectl explain answering from the aggregated OpenAPI", 2)
    obj = api.kubectl_json("get", f"widgets.{GROUP}", "w1", "-n", "kubectl", "--show-managed-fields")
    assert obj["metadata"]["managedFields"][0]["manager"] == "kubectl-client-side-apply"
    # the object never reached kube-apiserver's storage: it is where the aggregation server put it
    assert api.raw(f"/apis/{GROUP}/v1/namespaces/kubectl/widgets/w1")[0] == 200
    api.kubectl("delete", f"widgets.{GROUP}", "w1", "-n", "kubectl")
    gone = subprocess.run(["kubectl", f"--kubeconfig={api.kubeconfig}", "get", f"widgets.{GROUP}",
                           "w1", "-n", "kubectl"], capture_output=True, text=True)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_rbac_is_delegated(cluster):
    api, _, _ = cluster
    api.kubectl("create", "namespace", "rbac")
    denied = kubectl_as(api, VIEWER_TOKEN, "get", f"widgets.{GROUP}", "-n", "rbac")
    assert denied.returncode != 0
    assert (f'widgets.{GROUP} is forbidden: User "viewer" cannot list resource "widgets" in API '
            f'group "{GROUP}" in the namespace "rbac"') in denied.stderr
    api.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "widget-reader", "namespace": "rbac"},
               "rules": [{"apiGroups": [GROUP], "resources": ["widgets"], "verbs": ["get", "list"]}]},
              {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "viewer-reads", "namespace": "rbac"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "widget-reader"},
               "subjects": [{"kind": "User", "name": "viewer", "apiGroup": "rbac.authorization.k8s.io"}]})

    def allowed():
        return kubectl_as(api, VIEWER_TOKEN, "get", f"widgets.{GROUP}", "-n", "rbac").returncode == 0
    api.wait_for(allowed, 30, "the RoleBinding to take effect (SubjectAccessReview cache)", 1)
    create = kubectl_as(api, VIEWER_TOKEN, "create", "-f", "-", "--dry-run=server")
    create = subprocess.run(create.args, input=widget("x", "rbac"), capture_output=True, text=True)
    assert create.returncode != 0 and 'cannot create resource "widgets"' in create.stderr
    other_ns = kubectl_as(api, VIEWER_TOKEN, "get", f"widgets.{GROUP}", "-n", "default")
    assert other_ns.returncode != 0 and 'in the namespace "default"' in other_ns.stderr


def test_kopf_operator(cluster):
    api, _, work = cluster
    api.kubectl("create", "namespace", "kopf")
    deletions = work / "deletions.txt"
    deletions.write_text("")
    log = (work / "kopf.log").open("ab")
    env = {**os.environ, "KUBECONFIG": str(api.kubeconfig), "WIDGET_DELETIONS": str(deletions)}
    operator = spawn(
        [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace=kopf",
         str(HERE / "operator_widgets.py")], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        api.kubectl("apply", "-f", "-", input=widget("k1", "kopf", replicas=3))

        def handled():
            obj = api.kubectl_json("get", f"widgets.{GROUP}", "k1", "-n", "kopf")
            ok = obj.get("status", {}).get("replicas") == 3 and \
                obj["metadata"].get("labels", {}).get("handled") == "yes"
            return obj if ok else None
        obj = api.wait_for(handled, 90, "kopf to handle the creation", 0.5)
        assert any(f.startswith("kopf.zalando.org/") for f in obj["metadata"]["finalizers"])
        api.kubectl("patch", f"widgets.{GROUP}", "k1", "-n", "kopf", "--type=merge",
                    "-p", '{"spec":{"color":"blue"}}')

        def recolored():
            obj = api.kubectl_json("get", f"widgets.{GROUP}", "k1", "-n", "kopf")
            return [c.get("message") for c in obj.get("status", {}).get("conditions", [])] == ["blue"]
        api.wait_for(recolored, 60, "kopf to react to spec.color", 0.5)
        api.kubectl("delete", f"widgets.{GROUP}", "k1", "-n", "kopf", "--timeout=90s")
        assert deletions.read_text().splitlines() == ["kopf/k1"]
    finally:
        operator.terminate()
        try:
            operator.wait(20)
        except subprocess.TimeoutExpired:
            operator.kill()
        log.close()
    time.sleep(0)
