"""The kube-apiserver harness itself (tests/harness/kubeapiserver.py): a kube-apiserver on
`kubefabric serve` with the aggregation layer on, proxying an APIService to an HTTPS server of
the test (client certificate of the front proxy, X-Remote-* headers), and nothing left running."""
from __future__ import annotations

import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from harness.kubeapiserver import FRONT_PROXY_CLIENT, local_ip

GROUP = "echo.kubefabric.io"
BENCH = Path(__file__).resolve().parents[2] / "bench"


class Echo(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path.split("?")[0] == f"/apis/{GROUP}/v1":
            body = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{GROUP}/v1",
                    "resources": [{"name": "echoes", "singularName": "echo", "namespaced": False,
                                   "kind": "Echo", "verbs": ["get"]}]}
        elif self.path.startswith(f"/apis/{GROUP}/v1/echoes/"):
            cert = self.connection.getpeercert()
            body = {"kind": "Echo", "apiVersion": f"{GROUP}/v1",
                    "metadata": {"name": self.path.rsplit("/", 1)[1]},
                    "user": self.headers.get("X-Remote-User"),
                    "groups": self.headers.get_all("X-Remote-Group"),
                    "client": dict(x[0] for x in cert["subject"])["commonName"]}
        else:
            self.send_response(404)
            self.end_headers()
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_aggregated_api_through_the_front_proxy(kube_apiserver_factory):
    api = kube_apiserver_factory(aggregation=True)
    ca, cert = api.serving_certificate("echo-api")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.cert_file, cert.key_file)
    ctx.verify_mode = ssl.CERT_REQUIRED                       # only kube-apiserver's front proxy
    ctx.load_verify_locations(api.front_proxy_ca.cert_file)
    server = ThreadingHTTPServer((local_ip(), 0), Echo)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api.register_apiservice(GROUP, "v1", server.server_address[1], name="echo-api",
                                ca_bundle=ca.pair.cert_pem)
        got = json.loads(api.kubectl("get", "--raw", f"/apis/{GROUP}/v1/echoes/hello"))
        assert got["metadata"]["name"] == "hello"
        assert got["user"] == "admin"
        assert "system:masters" in got["groups"]
        assert got["client"] == FRONT_PROXY_CLIENT
        # the requestheader settings an aggregated server reads (its delegated authentication)
        cm = api.kubectl_json("get", "configmap", "-n", "kube-system",
                              "extension-apiserver-authentication")
        assert json.loads(cm["data"]["requestheader-allowed-names"]) == [FRONT_PROXY_CLIENT]
        assert cm["data"]["requestheader-client-ca-file"].strip() == \
            api.front_proxy_ca.pair.cert_pem.decode().strip()
    finally:
        server.shutdown()
        api.stop()
    assert not api.alive()


def test_plain_apiserver_and_its_kubeconfig(kube_apiserver_factory):
    api = kube_apiserver_factory()
    assert api.storage is not None and api.storage.proc.poll() is None
    names = api.kubectl("get", "namespaces", "-o", "name").split()
    assert "namespace/kube-system" in names
    assert api.rawj("/version")["gitVersion"] == "v1.37.2"
    kube_bench_smoke(api)   # on this kube-apiserver: CI starts no other for bench/kube.py
    api.stop()
    assert not api.alive() and api.proc.returncode is not None


def kube_bench_smoke(api):
    """bench/kube.py (issue 21, Kubernetes-level throughput) in miniature: every op on ConfigMaps
    through this kube-apiserver with k8sload, and the table's columns and rows."""
    sys.path.insert(0, str(BENCH))
    try:
        import kube
    finally:
        sys.path.remove(str(BENCH))
    args = kube.parse_args(["--resources", "configmaps", "--clients", "2", "--list-clients", "1", "--objects", "6",
                            "--duration", "1.5", "--warmup", "0"])
    kube.prepare(api, args.resources)
    rows = kube.measure(api, api.storage.proc.pid, args, "kubefabric")
    assert [(r["resource"], r["op"]) for r in rows] == [("configmaps", op) for op in kube.OPS]
    for r in rows:
        assert r["errors"] == 0 and r["ops"] > 0, r
        assert set(r["cpu_us_per_op"]) == {"store", "kube-apiserver"}, r
    assert rows[0]["ops"] == 6                                   # create: exactly --objects
    assert rows[-1]["pages_per_list"] == 1                       # 6 objects: one page of 500
    names = api.kubectl("get", "configmaps", "-n", kube.NAMESPACE, "-o", "name").split()
    assert sorted(names) == sorted(f"configmap/o{i}" for i in range(6))
    text = kube.table(rows)
    header = text.splitlines()[0]
    for column in ("ops/s", "vs etcd", "p50/p99 ms", "errors", "conflicts", "store CPU µs/op",
                   "kube-apiserver CPU µs/op"):
        assert f"| {column} |" in header
    assert len(text.splitlines()) == 2 + len(kube.OPS)
