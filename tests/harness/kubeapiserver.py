"""A real kube-apiserver (v1.37, built from Go modules) on a KubeFabric or etcd endpoint.

    api = KubeAPIServer(workdir, "http://127.0.0.1:2379")    # aggregation=True: see below
    api.start()                                              # until /readyz; seconds it took
    api.kubectl("create", "namespace", "demo")               # stdout; AssertionError on failure
    api.kubectl_json("get", "namespace", "demo")             # parsed -o json output
    api.raw("/api/v1/namespaces")                            # (HTTP status, body), admin token
    api.stop()                                               # the process group, always

The binary is built once by tests/conformance/kube-apiserver/build.sh and cached
(~/.cache/kubefabric-tools; $KUBEFABRIC_TEST_KUBE_APISERVER names another one). Each server gets
free loopback ports, fresh service-account keys, a static admin token (group system:masters)
and a kubeconfig file (api.kubeconfig) for kubectl or any client. It runs in a process group of
its own that dies with the test process (no leaked servers when pytest is killed).

aggregation=True adds the aggregation layer's settings: a front-proxy CA (api.front_proxy_ca,
front-proxy-ca.pem in the work dir), the --requestheader-* flags, a front-proxy client
certificate (CN front-proxy-client) for --proxy-client-cert-file/--proxy-client-key-file, and
--enable-aggregator-routing (kube-apiserver dials the endpoints of an APIService's Service, not
its cluster IP). register_apiservice(group, version, port) then points an APIService at a
server of the test on this machine (EndpointSlice addresses may not be loopback: the server
must listen on local_ip() or 0.0.0.0); serving_certificate() gives it a certificate.

Certificates come from harness.certs (cryptography).
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from .client import Client
from .servers import REPO, free_port, log_tail, spawn, start_kubefabric, stop_process_group
from .waiting import wait_for

BUILD = REPO / "tests" / "conformance" / "kube-apiserver" / "build.sh"
TOKEN = "kubefabric-admin-token"
FRONT_PROXY_CLIENT = "front-proxy-client"


@functools.cache
def kube_apiserver_binary() -> str:
    """$KUBEFABRIC_TEST_KUBE_APISERVER, else the one build.sh builds once (10-15 min cold)."""
    if path := os.environ.get("KUBEFABRIC_TEST_KUBE_APISERVER"):
        return path
    out = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"building kube-apiserver failed:\n{out.stderr[-3000:]}")
    return out.stdout.strip().splitlines()[-1]


def local_ip() -> str:
    """A non-loopback IPv4 address of this machine (kube-apiserver refuses loopback endpoints)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        addr = line.split()[3].split("/")[0]
        if not addr.startswith("127."):
            return addr
    raise RuntimeError("this machine has no non-loopback IPv4 address for an aggregated API server")


class KubeAPIServer:
    def __init__(self, workdir: Path, etcd_url: str, aggregation: bool = False,
                 extra: list[str] | None = None, compaction_interval: int | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.etcd_url, self.aggregation, self.extra = etcd_url, aggregation, list(extra or [])
        self.compaction_interval = compaction_interval
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.token = TOKEN
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "kube-apiserver.log"
        self.kubeconfig = self.workdir / "kubeconfig"
        self._ssl = ssl.create_default_context()
        self._ssl.check_hostname = False
        self._ssl.verify_mode = ssl.CERT_NONE
        self._prepare()

    # -- files ------------------------------------------------------------------------------
    def _prepare(self) -> None:
        w = self.workdir
        (w / "tokens.csv").write_text(f'{self.token},admin,admin,"system:masters"\n')
        if not (w / "sa.key").exists():
            subprocess.run(["openssl", "genrsa", "-out", str(w / "sa.key"), "2048"],
                           check=True, capture_output=True)
            subprocess.run(["openssl", "rsa", "-in", str(w / "sa.key"), "-pubout",
                            "-out", str(w / "sa.pub")], check=True, capture_output=True)
        self._write_kubeconfig()
        if self.aggregation:
            from .certs import CA
            self.front_proxy_ca = CA.new("front-proxy-ca", w)
            self.front_proxy_client = self.front_proxy_ca.issue(FRONT_PROXY_CLIENT, w)

    def _write_kubeconfig(self) -> None:
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "kf",
            "clusters": [{"name": "kf", "cluster": {"server": self.url, "insecure-skip-tls-verify": True}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "kf", "context": {"cluster": "kf", "user": "admin"}}],
        }))

    def argv(self) -> list[str]:
        w = self.workdir
        argv = [kube_apiserver_binary(),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}", f"--cert-dir={w / 'certs'}",
                "--endpoint-reconciler-type=none",   # it refuses 127.0.0.1 as the advertised endpoint
                f"--token-auth-file={w / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={w / 'sa.pub'}",
                f"--service-account-signing-key-file={w / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--v=1"]
        if self.compaction_interval is not None:
            argv.append(f"--etcd-compaction-interval={self.compaction_interval}s")
        if self.aggregation:
            argv += [f"--requestheader-client-ca-file={self.front_proxy_ca.cert_file}",
                     f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
                     "--requestheader-username-headers=X-Remote-User",
                     "--requestheader-group-headers=X-Remote-Group",
                     "--requestheader-uid-headers=X-Remote-Uid",
                     "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                     f"--proxy-client-cert-file={self.front_proxy_client.cert_file}",
                     f"--proxy-client-key-file={self.front_proxy_client.key_file}",
                     "--enable-aggregator-routing=true"]
        return argv + self.extra

    # -- process ----------------------------------------------------------------------------
    def start(self, timeout: float = 120, port_attempts: int = 3) -> float:
        """Start and wait for /readyz; the seconds it took. Fails with the log's tail if it exits.
        free_port() only finds a port that was free a moment ago: when another process took it
        first (kube-apiserver exits with "address already in use"), it starts again on another
        one, up to `port_attempts` times (url and kubeconfig follow the port)."""
        t0 = time.monotonic()
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as logf:
            self.proc = spawn(self.argv(), stdout=logf, stderr=subprocess.STDOUT,
                              start_new_session=True)
        while True:
            if not self.alive():
                with self.log_path.open("rb") as logf:
                    logf.seek(log_start)
                    port_taken = b"bind: address already in use" in logf.read()
                if port_taken and port_attempts > 1:
                    self.port = free_port()
                    self.url = f"https://127.0.0.1:{self.port}"
                    self._write_kubeconfig()
                    return self.start(timeout, port_attempts - 1)
                raise RuntimeError(f"kube-apiserver exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if self.raw("/readyz", timeout=2)[0] == 200:
                    return time.monotonic() - t0
            except OSError:
                pass
            if time.monotonic() - t0 > timeout:
                body = self.raw("/readyz?verbose")[1] if self.alive() else ""
                self.stop()
                raise RuntimeError(f"kube-apiserver not ready after {timeout}s:\n{body}\n{self.tail()}")
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20) -> None:
        if self.proc is not None:
            stop_process_group(self.proc, timeout)

    def tail(self, n: int = 40) -> str:
        return log_tail(self.log_path, n)

    # -- clients ----------------------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> str:
        r = subprocess.run(["kubectl", f"--kubeconfig={self.kubeconfig}", *args], input=input,
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
        return r.stdout

    def kubectl_json(self, *args: str, **kw) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json", **kw))

    def apply(self, *objects: dict) -> str:
        """kubectl apply of the given objects (one List)."""
        return self.kubectl("apply", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": list(objects)}))

    def raw(self, path: str, method: str = "GET", body: dict | None = None,
            timeout: float = 30) -> tuple[int, str]:
        req = urllib.request.Request(
            self.url + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def rawj(self, path: str, **kw) -> dict:
        code, body = self.raw(path, **kw)
        if code >= 300:
            raise AssertionError(f"{kw.get('method', 'GET')} {path}: HTTP {code}: {body[:500]}")
        return json.loads(body)

    wait_for = staticmethod(wait_for)

    # -- aggregation ------------------------------------------------------------------------
    def register_apiservice(self, group: str, version: str, port: int, host: str | None = None,
                            namespace: str = "default", name: str | None = None,
                            ca_bundle: bytes | None = None, wait: bool = True) -> None:
        """An APIService for group/version served by https://host:port (default local_ip()),
        through a Service `name` (default <first label of group>-api) and an EndpointSlice (no
        controllers run here); with wait, until kube-apiserver reports it Available (it probes
        the server's discovery). Without ca_bundle kube-apiserver skips TLS verification; with
        one it checks the certificate against <name>.<namespace>.svc (serving_certificate)."""
        assert self.aggregation, "register_apiservice needs KubeAPIServer(..., aggregation=True)"
        import base64
        name = name or f"{group.split('.')[0]}-api"
        host = host or local_ip()
        spec: dict = {"group": group, "version": version, "groupPriorityMinimum": 1000,
                      "versionPriority": 15,
                      "service": {"namespace": namespace, "name": name, "port": 443}}
        if ca_bundle:
            spec["caBundle"] = base64.b64encode(ca_bundle).decode()
        else:
            spec["insecureSkipTLSVerify"] = True
        self.apply(
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
             "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": name, "namespace": namespace,
                          "labels": {"kubernetes.io/service-name": name}},
             "addressType": "IPv4",
             "endpoints": [{"addresses": [host], "conditions": {"ready": True}}],
             "ports": [{"name": "https", "port": port, "protocol": "TCP"}]},
            {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
             "metadata": {"name": f"{version}.{group}"}, "spec": spec})
        if wait:
            conditions: list = []

            def available():
                s = self.kubectl_json("get", "apiservice", f"{version}.{group}")
                conditions[:] = s.get("status", {}).get("conditions", [])
                return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)
            try:
                self.wait_for(available, 60, f"APIService {version}.{group} Available", 0.5)
            except AssertionError as e:
                raise AssertionError(f"{e}: {conditions}") from None

    def serving_certificate(self, service: str, namespace: str = "default"):
        """(CA, certificate) for an aggregated server behind Service `service`: kube-apiserver
        checks the name <service>.<namespace>.svc; also valid for local_ip(), 127.0.0.1 and
        localhost. Serve the certificate's cert_file/key_file; pass the CA's pair.cert_pem to
        register_apiservice as ca_bundle (harness.certs)."""
        from .certs import CA
        ca = CA.new(f"{service}-ca", self.workdir)
        hosts = [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local",
                 local_ip(), "127.0.0.1", "localhost"]
        return ca, ca.issue(service, self.workdir, server=True, hosts=hosts)


@contextlib.contextmanager
def on_kubefabric(work: Path, namespace: str, objects: list[dict], served: str):
    """kube-apiserver on a fresh `kubefabric serve` (warnings only) in `work`, with `namespace`
    created, `objects` applied, each CustomResourceDefinition among them Established and the API
    path `served` answering: (api, client), the client reading KubeFabric's etcd API directly."""
    storage = start_kubefabric(work, ["--log-level", "warning"])
    api = KubeAPIServer(work / "apiserver", storage.url)
    client = Client(storage.endpoint)
    try:
        api.start()
        api.kubectl("create", "namespace", namespace)
        api.apply(*objects)
        for crd in (o for o in objects if o["kind"] == "CustomResourceDefinition"):
            api.kubectl("wait", "--for=condition=Established", f"crd/{crd['metadata']['name']}",
                        "--timeout=60s")
        api.wait_for(lambda: api.raw(served)[0] == 200, 60, f"{served} served")
        yield api, client
    finally:
        client.close()
        api.stop()
        storage.stop()
