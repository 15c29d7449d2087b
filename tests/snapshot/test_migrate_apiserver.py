"""A Kubernetes cluster's storage moved from etcd to KubeFabric and back (issue 20 point 3, the
end-to-end): a real kube-apiserver on etcd 3.7.3 with objects of many kinds, a CRD and custom
resources (harness.k8s_objects); writers stopped, `etcdctl snapshot save`, `kubefabric migrate`;
a kube-apiserver on KubeFabric then serves every object with the same uid and resourceVersion,
and writes and watches go on (a watch from the list's resourceVersion sees the next update);
then KubeFabric's snapshot restored into etcd holds exactly what KubeFabric held.
"""
from __future__ import annotations

import concurrent.futures
import json
import sys
import urllib.request

from harness.client import Client
from harness.k8s_objects import CRD, CRD2, GROUP, NS, objects
from harness.servers import start_kubefabric
from harness.snapshots import kvs, restore, run, save

MIGRATE = [sys.executable, "-m", "kubefabric.cli", "migrate"]


def stored(api) -> dict:
    """(kind, namespace, name) -> (uid, resourceVersion) of the test's objects, the namespace
    and the CRDs, as kube-apiserver serves them."""
    items = objects(bytes(range(256)))
    listed = api.kubectl_json("get", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [*items, CRD, CRD2,
                                                       {"apiVersion": "v1", "kind": "Namespace",
                                                        "metadata": {"name": NS}}]}))
    out = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]):
           (o["metadata"]["uid"], o["metadata"]["resourceVersion"]) for o in listed["items"]}
    assert len(out) == len(items) + 3, sorted(out)
    return out


def next_event(api, path: str, timeout: float = 30) -> dict:
    req = urllib.request.Request(api.url + path, headers={"Authorization": f"Bearer {api.token}"})
    with urllib.request.urlopen(req, context=api._ssl, timeout=timeout) as r:
        return json.loads(r.readline())


def test_kube_apiserver_moves_from_etcd_to_kubefabric_and_back(server_factory, kube_apiserver_factory,
                                                               tmp_path):
    etcd = server_factory("etcd37")
    api = kube_apiserver_factory(etcd_url=etcd.url)
    api.kubectl("create", "namespace", NS)
    api.apply(CRD, CRD2)
    for crd in (CRD, CRD2):
        api.kubectl("wait", "--for=condition=Established", f"crd/{crd['metadata']['name']}", "--timeout=60s")
    api.wait_for(lambda: api.raw(f"/apis/{GROUP}/v1/namespaces/{NS}/widgets")[0] == 200, 60, "widgets served")
    api.kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                      "items": objects(bytes(range(256)))}))
    before = stored(api)
    api.stop()  # the writers stop before the snapshot: nothing is written after it

    save(etcd.endpoint, tmp_path / "etcd.db")
    run(*MIGRATE, tmp_path / "etcd.db", "--data-dir", tmp_path / "kf-data")
    workdir = tmp_path / "kf"
    workdir.mkdir()
    kf = start_kubefabric(workdir, ["--log-level", "warning"], data_dir=tmp_path / "kf-data")
    back = None
    try:
        api2 = kube_apiserver_factory(etcd_url=kf.url)
        assert stored(api2) == before
        # writes and watches go on from the migrated resourceVersions
        listed = api2.rawj(f"/api/v1/namespaces/{NS}/configmaps")
        rv = listed["metadata"]["resourceVersion"]
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            event = pool.submit(next_event, api2, f"/api/v1/namespaces/{NS}/configmaps?watch=1&resourceVersion={rv}")
            api2.kubectl("label", "configmap", "-n", NS, "frozen", "moved=yes")
            got = event.result(timeout=60)
        assert got["type"] == "MODIFIED" and got["object"]["metadata"]["labels"]["moved"] == "yes"
        assert int(got["object"]["metadata"]["resourceVersion"]) > int(before[("ConfigMap", NS, "frozen")][1])
        api2.stop()

        # and back: KubeFabric's snapshot restored into etcd holds what KubeFabric holds
        save(kf.endpoint, tmp_path / "kf.db")
        back = restore(tmp_path / "kf.db", tmp_path / "back")
        k, b = Client(kf.endpoint), Client(back.endpoint)
        assert kvs(b) == kvs(k)
        k.close()
        b.close()
    finally:
        kf.stop()
        if back:
            back.stop()
