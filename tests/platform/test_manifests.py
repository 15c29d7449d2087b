"""deploy/: both overlays render with `kubectl kustomize`, validate against the newest Kubernetes
schemas kubernetes-validate ships (1.37), and keep the platform's policy facts:

- every container runs as non-root with a read-only root filesystem, no privilege escalation,
  all capabilities dropped, RuntimeDefault seccomp, resource requests and memory limits, and
  readiness and liveness probes; KubeFabric's gRPC services probe the gRPC health service
  (shard services by the service names "liveness" and "readiness"), its HTTP services (trigger)
  (trigger, aggregation) probe their HTTP(S) /livez and /readyz, and nothing else; only the
  aggregation server mounts a service-account token (delegated auth), bound to exactly
  system:auth-delegator and the kube-system auth reader;
- no secret is inlined: DSNs and passwords reach containers only through secretKeyRef; the ha
  overlay contains no Secret at all (the operator creates them), the dev overlay only Secrets
  generated from obviously-dev values;
- each existing service has its workload (a Deployment; the trigger a StatefulSet, whose
  replicas keep their names), Service, ServiceAccount, ConfigMap and PodDisruptionBudget; ha has
  an HPA per stateless service and leaves replica counts to it (the trigger: a fixed count);
- every service serves /metrics on 0.0.0.0 at a container and Service port named "metrics" that
  its pod template's prometheus.io annotations name;
- the event path is wired: kv-router to the watch-hub Service, the shards and the hub to NATS,
  the hub to the router's topology, each shard named as the topology names it;
- NetworkPolicies allow exactly the flows of DESIGN §1 between the pods of an overlay (checked
  by evaluating the policies for every pod pair and declared port), plus DNS; from outside the
  namespace only etcd clients (kv-router :2379) and Prometheus (every "metrics" port) get in;
  the trigger reaches functions (pods that are not KubeFabric's) anywhere, on any port, and
  kube-apiserver reaches the aggregation server's :8443;
- the aggregation server has an APIService per served group/version, and
  `kubefabric aggregation manifests` prints the same objects as deploy/base/aggregation.

Missing kubectl is a failure (with what to install), never a skip.
"""
from __future__ import annotations

import base64
import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = ("dev", "ha")
GRPC_SERVICES = {  # service -> (port, gRPC health service names (liveness, readiness))
    "kv-router": (2379, ("", "")),
    "backend-pg": (2391, ("liveness", "readiness")),
    "backend-mysql": (2392, ("liveness", "readiness")),
    "watch-hub": (2480, ("liveness", "readiness")),
}
HTTP_SERVICES = {  # service -> (container port name, scheme) of its /livez and /readyz
    "trigger": ("metrics", "HTTP"),
    "aggregation": ("https", "HTTPS"),
}
SERVICES = {**GRPC_SERVICES, **HTTP_SERVICES}
WORKLOAD_KIND = {"trigger": "StatefulSet"}  # the others are Deployments
HPA_SCALED = set(SERVICES) - {"trigger"}  # the trigger's replicas keep progress records by name
METRICS_PORTS = {"kv-router": 2381, "backend-pg": 2491, "backend-mysql": 2492, "watch-hub": 2580,
                 "trigger": 2680, "aggregation": 2680}
API_CLIENTS = {"aggregation"}  # delegated auth calls kube-apiserver; nothing else may
OPEN_TO_ANY_SOURCE = {  # policies whose one ingress rule admits any source (kube-apiserver on
    "kv-router": 2379,    # the host network has no pod labels): etcd clients,
    "aggregation": 8443,  # and the APIService's proxied requests
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "APIService"}
IN_KUBE_SYSTEM = {("RoleBinding", "aggregation:auth-reader")}  # reads kube-system's auth ConfigMap
METRICS_SETTING = {"trigger": "KUBEFABRIC_LISTEN_ADDRESS"}  # /metrics beside /livez and /readyz
SHARDS = ("backend-pg", "backend-mysql")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
K8S_VERSION = "1.37"


def _kubectl() -> str:
    path = shutil.which("kubectl")
    if not path:
        pytest.fail("kubectl is not installed: install it (Debian: apt-get install kubectl, or the "
                    "static binary from the Kubernetes release) — it renders deploy/ with kustomize")
    return path


def render(overlay: str) -> list[dict]:
    done = subprocess.run([_kubectl(), "kustomize", str(DEPLOY / "overlays" / overlay)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"kubectl kustomize {overlay} failed:\n{done.stderr}"
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request):
    return request.param, render(request.param)


@pytest.fixture(scope="module")
def rendered():
    return {name: render(name) for name in OVERLAYS}


def by_kind(objs: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def pod_specs(objs: list[dict]):
    for o in objs:
        if o["kind"] in WORKLOADS:
            tmpl = o["spec"]["jobTemplate"]["spec"]["template"] if o["kind"] == "CronJob" \
                else o["spec"]["template"]
            yield o, tmpl


def containers(spec: dict):
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def is_kubefabric(container: dict) -> bool:
    return re.match(r"^([^/]+/)*kubefabric(:|@|$)", container["image"]) is not None


# ---- schema validation ----

def _validator():
    import kubernetes_validate
    from kubernetes_validate.utils import all_versions, latest_version
    newest = latest_version()
    assert tuple(map(int, newest.split(".")[:2])) >= (1, 37), \
        f"kubernetes-validate ships schemas up to {newest}; the platform targets {K8S_VERSION}: " \
        "upgrade it (uv add --dev 'kubernetes-validate>=1.37')"
    assert any(v.startswith(K8S_VERSION + ".") for v in all_versions())
    return kubernetes_validate


def test_overlays_validate_against_kubernetes_1_37(overlay):
    kv = _validator()
    name, objs = overlay
    errors = []
    for o in objs:
        try:
            used = kv.validate(o, K8S_VERSION + ".0", strict=True)
            assert used == K8S_VERSION
        except kv.ValidationError as err:
            errors.append(f"{o['kind']}/{o['metadata']['name']}: {err.message} at {list(err.path)}")
    assert not errors, f"overlay {name}:\n" + "\n".join(errors)


def test_validation_rejects_a_broken_object(rendered):
    kv = _validator()
    deployment = copy.deepcopy(by_kind(rendered["dev"], "Deployment")["kv-router"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = "2379"
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, K8S_VERSION + ".0", strict=True)
    deployment = copy.deepcopy(by_kind(rendered["dev"], "Deployment")["kv-router"])
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, K8S_VERSION + ".0", strict=True)


# ---- services and their objects ----

def test_every_service_has_its_objects(overlay):
    name, objs = overlay
    for kind in ("workload", "Service", "ServiceAccount", "PodDisruptionBudget"):
        for svc in SERVICES:
            want = WORKLOAD_KIND.get(svc, "Deployment") if kind == "workload" else kind
            assert svc in by_kind(objs, want), f"{name}: {want} {svc} is missing"
    configmaps = by_kind(objs, "ConfigMap")
    for svc in SERVICES:
        assert any(re.fullmatch(rf"{svc}(-[a-z0-9]{{10}})?", cm) for cm in configmaps), \
            f"{name}: ConfigMap for {svc} missing"
    namespaces = by_kind(objs, "Namespace")
    assert len(namespaces) == 1
    ns = next(iter(namespaces.values()))
    for o in objs:
        want = None if o["kind"] in CLUSTER_SCOPED else "kube-system" \
            if (o["kind"], o["metadata"]["name"]) in IN_KUBE_SYSTEM else ns["metadata"]["name"]
        assert o["metadata"].get("namespace") == want, \
            f"{name}: {o['kind']}/{o['metadata']['name']} belongs in namespace {want}"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_services_select_their_pods_and_named_ports(overlay):
    name, objs = overlay
    pods = {o["metadata"]["name"]: t for o, t in pod_specs(objs)}
    for svc_name, svc in by_kind(objs, "Service").items():
        selector = svc["spec"]["selector"]
        matches = [w for w, t in pods.items()
                   if selector.items() <= t["metadata"]["labels"].items()]
        assert matches == [svc_name], f"{name}: Service {svc_name} selects {matches}"
        port_names = {p["name"] for c in pods[svc_name]["spec"]["containers"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"{name}: {svc_name} targets {port['targetPort']}"


def settings(objs: list[dict], svc: str) -> dict[str, str]:
    """The KUBEFABRIC_* settings of a service: its generated ConfigMap."""
    return next(c["data"] for n, c in by_kind(objs, "ConfigMap").items()
                if re.fullmatch(rf"{svc}-[a-z0-9]{{10}}", n))


def mounted_topology(objs: list[dict], svc: str) -> tuple[str, str]:
    """(ConfigMap name, file text) of the topology file `svc` reads at KUBEFABRIC_TOPOLOGY."""
    path = settings(objs, svc)["KUBEFABRIC_TOPOLOGY"]
    spec = by_kind(objs, "Deployment")[svc]["spec"]["template"]["spec"]
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    cm_name = volume["configMap"]["name"]
    return cm_name, by_kind(objs, "ConfigMap")[cm_name]["data"][path.rsplit("/", 1)[1]]


def test_router_topology_names_the_shard_services(overlay, tmp_path):
    """kv-router's topology (a ConfigMap mounted where KUBEFABRIC_TOPOLOGY points) is valid for
    `kubefabric topology check` and routes to the overlay's shard Services on their ports."""
    name, objs = overlay
    assert "KUBEFABRIC_SHARD" not in settings(objs, "kv-router")
    _, text = mounted_topology(objs, "kv-router")
    topology = yaml.safe_load(text)
    shards = {s["name"]: s["endpoint"] for s in topology["shards"]}
    assert len(shards) >= 2, f"{name}: a topology with several shards"
    services = by_kind(objs, "Service")
    for shard, endpoint in shards.items():
        for part in endpoint.split(","):
            host, port = re.fullmatch(r"grpc://([a-z0-9-]+):(\d+)", part).groups()
            assert host in services and GRPC_SERVICES[host][0] == int(port), f"{name}: {shard} -> {part}"
    file = tmp_path / "topology.yaml"
    file.write_text(text)
    cli = Path(sys.executable).parent / "kubefabric"
    done = subprocess.run([str(cli), "topology", "check", str(file), "/registry/events/default/e1",
                           "/registry/pods/default/p1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{name}: kubefabric topology check:\n{done.stderr}"
    routes = dict(re.findall(r"^(\S+) -> (\S+)", done.stdout, re.M))
    assert routes["/registry/events/default/e1"] != routes["/registry/pods/default/p1"], \
        f"{name}: Events and the rest live on different shards: {routes}"


def test_event_path_is_wired(overlay):
    """kv-router serves Watch from the watch-hub Service; the hub reads the router's own topology
    ConfigMap; every shard publishes to NATS under the name the topology gives it (its stream is
    KF_<name>), and the hub reads the same NATS."""
    name, objs = overlay
    services = by_kind(objs, "Service")
    hub_port = next(p["port"] for p in services["watch-hub"]["spec"]["ports"] if p["name"] != "metrics")
    assert hub_port == GRPC_SERVICES["watch-hub"][0]
    assert settings(objs, "kv-router")["KUBEFABRIC_WATCH_HUB"] == f"grpc://watch-hub:{hub_port}"
    router_cm, router_text = mounted_topology(objs, "kv-router")
    hub_cm, hub_text = mounted_topology(objs, "watch-hub")
    assert hub_cm == router_cm and hub_text == router_text, f"{name}: the hub reads the router's topology"
    endpoints = {s["name"]: s["endpoint"] for s in yaml.safe_load(hub_text)["shards"]}
    nats_urls = set()
    for svc in (*SHARDS, "watch-hub"):
        url = settings(objs, svc).get("KUBEFABRIC_NATS_URL", "")
        assert re.fullmatch(r"nats://[a-z0-9.-]+:\d+", url), f"{name}: {svc} KUBEFABRIC_NATS_URL={url!r}"
        nats_urls.add(url)
    assert len(nats_urls) == 1, f"{name}: shards and hub on one NATS: {nats_urls}"
    for svc in SHARDS:
        shard_name = settings(objs, svc)["KUBEFABRIC_NAME"]
        assert endpoints.get(shard_name) == f"grpc://{svc}:{GRPC_SERVICES[svc][0]}", \
            f"{name}: {svc} is shard {shard_name!r} in the topology: {endpoints}"
    if name == "dev":  # the dev NATS Service is the one they name
        host, port = re.fullmatch(r"nats://([a-z0-9-]+):(\d+)", nats_urls.pop()).groups()
        assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}


def test_every_service_is_scraped(overlay):
    """/metrics on 0.0.0.0 at a container port named "metrics", which the Service exposes and the
    prometheus.io annotations name (issue 8)."""
    name, objs = overlay
    templates = {w["metadata"]["name"]: t for w, t in pod_specs(objs)}
    services = by_kind(objs, "Service")
    for svc, port in METRICS_PORTS.items():
        tmpl = templates[svc]
        notes = tmpl["metadata"].get("annotations", {})
        assert notes.get("prometheus.io/scrape") == "true" and notes.get("prometheus.io/path") == "/metrics" \
            and notes.get("prometheus.io/port") == str(port), f"{name}: {svc} annotations {notes}"
        ports = {p["name"]: p["containerPort"] for c in tmpl["spec"]["containers"] for p in c.get("ports", [])}
        assert ports.get("metrics") == port, f"{name}: {svc} container ports {ports}"
        setting = METRICS_SETTING.get(svc, "KUBEFABRIC_METRICS_ADDRESS")
        assert settings(objs, svc).get(setting) == f"0.0.0.0:{port}", f"{name}: {svc} {setting}"
        svc_ports = {p["name"]: p for p in services[svc]["spec"]["ports"]}
        assert svc_ports.get("metrics", {}).get("targetPort") == "metrics" and \
            svc_ports["metrics"]["port"] == port, f"{name}: Service {svc} ports {svc_ports}"


# ---- pod policy ----

def test_every_container_is_locked_down(overlay):
    name, objs = overlay
    problems = []
    for workload, tmpl in pod_specs(objs):
        spec = tmpl["spec"]
        where = f"{name}: {workload['kind']}/{workload['metadata']['name']}"
        pod_sc = spec.get("securityContext", {})
        if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: seccompProfile RuntimeDefault")
        if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
            problems.append(f"{where}: host namespaces")
        api_client = workload["metadata"]["name"] in API_CLIENTS
        if spec.get("automountServiceAccountToken") is not api_client:
            problems.append(f"{where}: automountServiceAccountToken must be {api_client} "
                            f"({'delegated auth' if api_client else 'no API access'})")
        for c in containers(spec):
            sc = {**pod_sc, **c.get("securityContext", {})}
            cw = f"{where} container {c['name']}"
            if sc.get("runAsNonRoot") is not True:
                problems.append(f"{cw}: runAsNonRoot")
            if not isinstance(sc.get("runAsUser"), int) or sc["runAsUser"] == 0:
                problems.append(f"{cw}: numeric non-root runAsUser")
            if c.get("securityContext", {}).get("readOnlyRootFilesystem") is not True:
                problems.append(f"{cw}: readOnlyRootFilesystem")
            if c.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
                problems.append(f"{cw}: allowPrivilegeEscalation false")
            if c.get("securityContext", {}).get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{cw}: capabilities drop ALL")
            if sc.get("privileged"):
                problems.append(f"{cw}: privileged")
            res = c.get("resources", {})
            if not res.get("requests", {}).get("cpu") or not res.get("requests", {}).get("memory") \
                    or not res.get("limits", {}).get("memory"):
                problems.append(f"{cw}: cpu/memory requests and a memory limit")
            if c["image"].endswith(":latest") or ":" not in c["image"].rsplit("/", 1)[-1]:
                problems.append(f"{cw}: image {c['image']} needs a pinned tag")
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    problems.append(f"{cw}: {probe}")
    assert not problems, "\n".join(problems)


PROBE_PATHS = {"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/readyz"}


def test_kubefabric_containers_probe_their_health_endpoints(overlay):
    """gRPC services: the gRPC health service on their API port (named services where they
    tell liveness from readiness). HTTP services: GET /livez (startup, liveness) and /readyz
    (readiness) on their named port. Each probe is exactly that kind, nothing else."""
    name, objs = overlay
    seen = set()
    for workload, tmpl in pod_specs(objs):
        for c in tmpl["spec"]["containers"]:
            if not is_kubefabric(c):
                continue
            svc = workload["metadata"]["name"]
            seen.add(svc)
            assert c["args"][0] == svc if svc != "kv-router" else c["args"][0] == "serve"
            if svc in GRPC_SERVICES:
                port, (live, ready) = GRPC_SERVICES[svc]
                for probe, service in (("startupProbe", live), ("livenessProbe", live),
                                       ("readinessProbe", ready)):
                    grpc = c[probe].get("grpc")
                    assert grpc and not {"httpGet", "tcpSocket", "exec"} & c[probe].keys(), \
                        f"{name}: {svc} {probe} is a gRPC health probe"
                    assert grpc["port"] == port and grpc.get("service", "") == service, \
                        f"{name}: {svc} {probe} = {grpc}"
            else:
                port_name, scheme = HTTP_SERVICES[svc]
                ports = {p["name"] for p in c["ports"]}
                for probe, path in PROBE_PATHS.items():
                    http = c[probe].get("httpGet")
                    assert http and not {"grpc", "tcpSocket", "exec"} & c[probe].keys(), \
                        f"{name}: {svc} {probe} is an HTTP probe"
                    assert (http["path"], http["port"], http.get("scheme", "HTTP")) == \
                        (path, port_name, scheme) and port_name in ports, \
                        f"{name}: {svc} {probe} = {http}"
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{name}: {svc} gets a writable /tmp (emptyDir)"
            volumes = {v["name"]: v for v in tmpl["spec"]["volumes"]}
            for m in c["volumeMounts"]:
                v = volumes[m["name"]]
                assert "emptyDir" in v or (("configMap" in v or "secret" in v) and m.get("readOnly")), \
                    f"{name}: {svc} mounts only scratch emptyDirs and read-only ConfigMaps and Secrets: {v}"
    assert seen == set(SERVICES), f"{name}: KubeFabric workloads {seen}"


def test_probe_check_catches_a_grpc_service_on_http(rendered):
    """The probe rule can fail: a gRPC service probed over HTTP, or the trigger on the wrong path."""
    objs = copy.deepcopy(rendered["dev"])
    c = by_kind(objs, "Deployment")["watch-hub"]["spec"]["template"]["spec"]["containers"][0]
    c["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": "metrics"}}
    with pytest.raises(AssertionError, match="watch-hub readinessProbe is a gRPC health probe"):
        test_kubefabric_containers_probe_their_health_endpoints(("dev", objs))
    objs = copy.deepcopy(rendered["dev"])
    c = by_kind(objs, "StatefulSet")["trigger"]["spec"]["template"]["spec"]["containers"][0]
    c["readinessProbe"]["httpGet"]["path"] = "/livez"
    with pytest.raises(AssertionError, match="trigger readinessProbe = "):
        test_kubefabric_containers_probe_their_health_endpoints(("dev", objs))


# ---- secrets ----

PASSWORDISH = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|DSN|CREDENTIAL|PRIVATE_KEY)", re.I)
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.I)


def test_no_inline_secrets(overlay):
    name, objs = overlay
    problems = []
    for workload, tmpl in pod_specs(objs):
        volumes = {v["name"]: v for v in tmpl["spec"].get("volumes", [])}
        for c in containers(tmpl["spec"]):
            secret_dirs = tuple(m["mountPath"] + "/" for m in c.get("volumeMounts", [])
                                if "secret" in volumes.get(m["name"], {}) and m.get("readOnly"))
            for env in c.get("env", []):
                where = f"{name}: {workload['metadata']['name']}/{c['name']} env {env['name']}"
                if env["name"].endswith("_FILE") and env.get("value", "").startswith(secret_dirs or ("\0",)):
                    continue  # the path of a file of a mounted Secret (a TLS key), not the secret
                if "value" in env and (PASSWORDISH.search(env["name"]) or URL_WITH_PASSWORD.search(env["value"])):
                    problems.append(f"{where} is inlined; use valueFrom.secretKeyRef")
                if PASSWORDISH.search(env["name"]) and "secretKeyRef" not in env.get("valueFrom", {}):
                    problems.append(f"{where} must come from a Secret")
            for src in c.get("envFrom", []):
                if "secretRef" not in src and "configMapRef" not in src:
                    problems.append(f"{name}: unexpected envFrom {src}")
    for cm_name, cm in by_kind(objs, "ConfigMap").items():
        for key, value in (cm.get("data") or {}).items():
            if PASSWORDISH.search(key) or URL_WITH_PASSWORD.search(value):
                problems.append(f"{name}: ConfigMap {cm_name} key {key} looks like a secret")
    dsn_refs = {(w["metadata"]["name"], env["valueFrom"]["secretKeyRef"]["name"])
                for w, t in pod_specs(objs) for c in t["spec"]["containers"] for env in c.get("env", [])
                if env["name"] == "KUBEFABRIC_DSN"}
    assert {w for w, _ in dsn_refs} == set(SHARDS), dsn_refs

    secrets = by_kind(objs, "Secret")
    if name == "ha":
        assert not secrets, f"ha carries Secrets {sorted(secrets)}: the operator creates them"
        assert {s for _, s in dsn_refs} == {"backend-pg-dsn", "backend-mysql-dsn"}
    else:
        assert secrets, "dev generates its Secrets"
        for s_name, secret in secrets.items():
            assert re.fullmatch(r"[a-z0-9-]+-[a-z0-9]{10}", s_name), \
                f"dev Secret {s_name} is not from the secretGenerator"
            for key, value in secret.get("data", {}).items():
                plain = base64.b64decode(value).decode()
                assert "dev-only" in plain, f"dev Secret {s_name}/{key} is not obviously a dev value"
            assert not secret.get("stringData")
        refs = {s for _, s in dsn_refs}
        assert refs <= set(secrets), f"DSN Secrets {refs} are generated in dev"
    assert not problems, "\n".join(problems)


def test_no_secret_objects_in_source_manifests():
    """Secrets appear only through the dev overlay's secretGenerator (its secrets/*.env files)."""
    problems = []
    for path in DEPLOY.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Secret":
                problems.append(str(path.relative_to(REPO)))
    assert not problems, f"Secret manifests checked in: {problems}"
    envs = list((DEPLOY / "overlays").rglob("*.env"))
    assert envs and all(p.parent == DEPLOY / "overlays" / "dev" / "secrets" for p in envs), envs


# ---- scaling ----

def test_ha_scales_every_service_with_an_hpa(rendered):
    objs = rendered["ha"]
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in by_kind(objs, "HorizontalPodAutoscaler").values()}
    workloads = {w["metadata"]["name"]: w for w, _ in pod_specs(objs)}
    for svc in SERVICES:
        spread = workloads[svc]["spec"]["template"]["spec"].get("topologySpreadConstraints", [])
        assert any(s["topologyKey"] == "kubernetes.io/hostname" for s in spread), svc
        if svc not in HPA_SCALED:
            assert svc not in hpas and workloads[svc]["spec"]["replicas"] >= 2, \
                f"ha: {svc} runs a fixed count of at least two replicas"
            continue
        assert svc in hpas, f"ha: no HorizontalPodAutoscaler for {svc}"
        assert hpas[svc]["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert hpas[svc]["spec"]["minReplicas"] >= 2, f"ha: {svc} runs at least two replicas"
        assert "replicas" not in workloads[svc]["spec"], \
            f"ha: {svc} sets spec.replicas; the HPA owns it (re-applying would reset a scaled Deployment)"
    assert set(hpas) == HPA_SCALED, f"ha: HPAs for {sorted(hpas)}"
    dev = {w["metadata"]["name"]: w for w, _ in pod_specs(rendered["dev"])}
    assert all(dev[s]["spec"]["replicas"] == 1 for s in SERVICES)
    assert not by_kind(rendered["dev"], "HorizontalPodAutoscaler")
    pdbs = by_kind(objs, "PodDisruptionBudget")
    for svc in SERVICES:
        assert pdbs[svc]["spec"].get("maxUnavailable") == 1
    base = yaml.safe_load((DEPLOY / "base" / "watch-hub" / "deployment.yaml").read_text())
    assert base["spec"]["replicas"] >= 2, "watch-hub runs two replicas unless an overlay says otherwise"
    base = yaml.safe_load((DEPLOY / "base" / "trigger" / "statefulset.yaml").read_text())
    assert base["spec"]["replicas"] >= 2, "the trigger runs two replicas unless an overlay says otherwise"


def test_dev_only_data_services_stay_out_of_ha(rendered):
    dev = by_kind(rendered["dev"], "StatefulSet")
    assert {"postgresql", "mariadb", "nats"} <= set(dev)
    assert set(by_kind(rendered["ha"], "StatefulSet")) == {"trigger"}


# ---- network policies: exactly DESIGN §1's flows ----

def _selects(selector: dict, labels: dict) -> bool:
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        matched = {"In": lambda: labels.get(key) in values,
                   "NotIn": lambda: labels.get(key) not in values,  # also true when unlabelled
                   "Exists": lambda: key in labels,
                   "DoesNotExist": lambda: key not in labels}[op]()
        if not matched:
            return False
    return selector.get("matchLabels", {}).items() <= labels.items()


OUTSIDE = "outside"  # a peer in another namespace (labelled by OUTSIDE_NS) or off-cluster
OUTSIDE_NS = {"kubernetes.io/metadata.name": "monitoring"}


def _peer_matches(peer: dict, labels: dict) -> bool:
    """A peer pod with `labels`: in the same namespace, or in another one when labels[OUTSIDE]."""
    if "ipBlock" in peer:
        return False  # pod-to-pod flows are judged by selectors
    if labels.get(OUTSIDE):
        # Another namespace matches only a namespaceSelector; {} means every namespace.
        return "namespaceSelector" in peer and _selects(peer["namespaceSelector"], OUTSIDE_NS) \
            and _selects(peer.get("podSelector", {}), labels)
    if "namespaceSelector" in peer and peer["namespaceSelector"] != {}:
        return False  # another namespace (e.g. kube-system DNS)
    return _selects(peer.get("podSelector", {}), labels)


def _rule_allows(rule: dict, peer_key: str, labels: dict, port: tuple[int, str]) -> bool:
    """`port` is (number, container port name): a policy may name either."""
    peers = rule.get(peer_key)
    if peers is not None and peers != [] and not any(_peer_matches(p, labels) for p in peers):
        return False
    ports = rule.get("ports")
    return not ports or any(p.get("port") in (None, *port) and p.get("protocol", "TCP") == "TCP"
                            for p in ports)


def _allowed(policies: list[dict], direction: str, pod: dict, peer: dict, port: tuple[int, str]) -> bool:
    """Is traffic in `direction` (Ingress at `pod` from `peer`, or Egress from `pod` to `peer`)
    allowed? Pods no policy of that type selects are unrestricted."""
    selecting = [p for p in policies if direction in p["spec"].get("policyTypes", ["Ingress"])
                 and _selects(p["spec"]["podSelector"], pod)]
    if not selecting:
        return True
    key, peer_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    return any(_rule_allows(rule, peer_key, peer, port)
               for p in selecting for rule in p["spec"].get(key, []))


def _pods(objs: list[dict]) -> dict[str, tuple[dict, set[tuple[int, str]]]]:
    """workload name -> (pod labels, its containers' (port, name) pairs)."""
    return {w["metadata"]["name"]: (t["metadata"]["labels"],
                                    {(p["containerPort"], p.get("name", "")) for c in t["spec"]["containers"]
                                     for p in c.get("ports", [])})
            for w, t in pod_specs(objs)}


def _reachable_from_outside(objs: list[dict], labels: dict) -> set[tuple[str, int]]:
    """(workload, port) a pod with `labels` in another namespace may connect to (its own
    namespace's egress policies are not ours)."""
    policies = list(by_kind(objs, "NetworkPolicy").values())
    peer = {**labels, OUTSIDE: "yes"}
    return {(dst, port[0]) for dst, (dst_labels, ports) in _pods(objs).items() for port in ports
            if _allowed(policies, "Ingress", dst_labels, peer, port)}


EXPECTED_FLOWS = {  # (from, to, port): DESIGN §1
    ("kv-router", "backend-pg", 2391), ("kv-router", "backend-mysql", 2392),
    ("kv-router", "backend-pg", 2393), ("kv-router", "backend-mysql", 2394),  # batch lanes
    ("backend-pg", "backend-pg", 2391), ("backend-mysql", "backend-mysql", 2392),  # forwarded writes
    ("backend-pg", "postgresql", 5432), ("backend-mysql", "mariadb", 3306),
    ("backend-pg", "nats", 4222), ("backend-mysql", "nats", 4222),
    ("kv-router", "watch-hub", 2480),  # etcd Watch streams served by the hub
    ("watch-hub", "backend-pg", 2391), ("watch-hub", "backend-mysql", 2392),  # history backfill
    ("watch-hub", "nats", 4222),  # the shards' event streams
    ("trigger", "kv-router", 2379),  # events, HTTPTrigger objects, Secrets, its own records
    ("aggregation", "kv-router", 2379),  # reads, writes, Query API
    ("aggregation", "watch-hub", 2480),  # watches
}


def test_network_policies_allow_exactly_the_design_flows(overlay):
    name, objs = overlay
    policies = list(by_kind(objs, "NetworkPolicy").values())
    deny = by_kind(objs, "NetworkPolicy").get("default-deny")
    assert deny and deny["spec"]["podSelector"] == {} and \
        set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"} and \
        not deny["spec"].get("ingress") and not deny["spec"].get("egress"), "default deny both ways"
    pods = _pods(objs)
    allowed = set()
    for src, (src_labels, _) in pods.items():
        for dst, (dst_labels, ports) in pods.items():
            for port in ports:
                if _allowed(policies, "Egress", src_labels, dst_labels, port) and \
                        _allowed(policies, "Ingress", dst_labels, src_labels, port):
                    allowed.add((src, dst, port[0]))
    expected = {f for f in EXPECTED_FLOWS if f[0] in pods and f[1] in pods}
    assert allowed == expected, f"{name}: unexpected {sorted(allowed - expected)}, " \
                                f"missing {sorted(expected - allowed)}"
    # Clients outside the namespace (kube-apiserver) reach kv-router's etcd port and the
    # aggregation server's API port, nothing else; Prometheus (any namespace) also every
    # service's metrics port.
    by_name = by_kind(objs, "NetworkPolicy")
    for svc, port in OPEN_TO_ANY_SOURCE.items():
        assert by_name[svc]["spec"]["ingress"] == [{"ports": [{"port": port, "protocol": "TCP"}]}], svc
    others = [p for p in policies if p["metadata"]["name"] not in OPEN_TO_ANY_SOURCE]
    assert not any(rule.get("from") in (None, []) for p in others for rule in p["spec"].get("ingress", [])), \
        f"only {sorted(OPEN_TO_ANY_SOURCE)} accept traffic from anywhere"
    open_ports = set(OPEN_TO_ANY_SOURCE.items())
    assert _reachable_from_outside(objs, {"app.kubernetes.io/name": "kube-apiserver"}) == open_ports, name
    scraped = _reachable_from_outside(objs, {"app.kubernetes.io/name": "prometheus"})
    assert scraped == open_ports | set(METRICS_PORTS.items()), \
        f"{name}: Prometheus reaches {sorted(scraped)}, not exactly the metrics ports"
    # Every pod can resolve names.
    dns = by_kind(objs, "NetworkPolicy")["allow-dns"]
    assert dns["spec"]["podSelector"] == {} and {p["port"] for p in dns["spec"]["egress"][0]["ports"]} == {53}


def test_flow_check_catches_an_extra_flow(rendered):
    """The evaluator can fail: an allow-all ingress on PostgreSQL is reported."""
    objs = copy.deepcopy(rendered["dev"])
    by_kind(objs, "NetworkPolicy")["postgresql"]["spec"]["ingress"][0].pop("from")
    by_kind(objs, "NetworkPolicy")["kv-router"]["spec"]["egress"].append({"ports": [{"port": 5432}]})
    with pytest.raises(AssertionError, match="kv-router', 'postgresql', 5432"):
        test_network_policies_allow_exactly_the_design_flows(("dev", objs))


def test_flow_check_catches_an_open_scrape_policy(rendered):
    """The outside evaluator can fail: a scrape policy without ports lets Prometheus reach the
    shards' Shard API."""
    objs = copy.deepcopy(rendered["dev"])
    by_kind(objs, "NetworkPolicy")["allow-metrics-scrape"]["spec"]["ingress"][0].pop("ports")
    with pytest.raises(AssertionError, match="Prometheus reaches .*'backend-pg', 2391"):
        test_network_policies_allow_exactly_the_design_flows(("dev", objs))


def test_trigger_reaches_functions_and_kv_router_only(overlay):
    """The trigger calls functions in any namespace on any port, but no KubeFabric pod other
    than kv-router; no other KubeFabric service reaches a function."""
    name, objs = overlay
    policies = list(by_kind(objs, "NetworkPolicy").values())
    pods = _pods(objs)
    function = {"app.kubernetes.io/name": "pricing", OUTSIDE: "yes"}
    for port in ((8080, "http"), (8012, "queue-proxy"), (80, "")):
        assert _allowed(policies, "Egress", pods["trigger"][0], function, port), f"{name}: {port}"
        for svc in set(SERVICES) - {"trigger"}:
            assert not _allowed(policies, "Egress", pods[svc][0], function, port), f"{name}: {svc}"
    foreign_kubefabric = {"app.kubernetes.io/part-of": "kubefabric", "app.kubernetes.io/name": "kv-router",
                          OUTSIDE: "yes"}
    assert not _allowed(policies, "Egress", pods["trigger"][0], foreign_kubefabric, (2379, "etcd-client")), \
        f"{name}: the trigger reaches only its own namespace's kv-router"


def test_trigger_is_wired(overlay):
    """The trigger reads through the kv-router Service, runs the HTTPTrigger objects applied
    with kubectl, and records progress under its (stable) pod name."""
    name, objs = overlay
    conf = settings(objs, "trigger")
    port = next(p["port"] for p in by_kind(objs, "Service")["kv-router"]["spec"]["ports"]
                if p["name"] == "etcd-client")
    assert conf["KUBEFABRIC_ENDPOINTS"] == f"http://kv-router:{port}", f"{name}: {conf}"
    assert conf["KUBEFABRIC_CLUSTER_TRIGGERS"] == "true"
    sts = by_kind(objs, "StatefulSet")["trigger"]
    assert sts["spec"]["serviceName"] == "trigger"
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KUBEFABRIC_REPLICA_NAME"]["value"] == "$(POD_NAME)" and \
        env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", f"{name}: {env}"
    crd = yaml.safe_load((DEPLOY / "crds" / "httptriggers.triggers.kubefabric.io.yaml").read_text())
    assert crd["spec"]["names"]["kind"] == "HTTPTrigger"


# ---- aggregation ----

def _crd_files(objs: list[dict]) -> dict[str, str]:
    """The CRD manifests the aggregation server serves: its ConfigMap mounted at KUBEFABRIC_CRD_DIR."""
    path = settings(objs, "aggregation")["KUBEFABRIC_CRD_DIR"]
    spec = by_kind(objs, "Deployment")["aggregation"]["spec"]["template"]["spec"]
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == path)
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    return by_kind(objs, "ConfigMap")[volume["configMap"]["name"]]["data"]


def test_aggregation_is_registered_and_wired(overlay):
    """One APIService per served group/version, to the Service's 443 -> the pods' 8443; delegated
    auth bound for its service account (auth-delegator, and the auth reader in kube-system);
    reads and writes through kv-router, watches from watch-hub; dev trusts the self-signed
    certificate, ha verifies the mounted Secret's."""
    name, objs = overlay
    ns = next(iter(by_kind(objs, "Namespace")))
    served = set()
    for text in _crd_files(objs).values():
        crd = yaml.safe_load(text)
        served |= {f"{v['name']}.{crd['spec']['group']}" for v in crd["spec"]["versions"] if v["served"]}
    apiservices = by_kind(objs, "APIService")
    assert served and set(apiservices) == served, f"{name}: APIServices {sorted(apiservices)} for {served}"
    service = by_kind(objs, "Service")["aggregation"]
    https = next(p for p in service["spec"]["ports"] if p["name"] == "https")
    assert https["port"] == 443 and https["targetPort"] == "https"
    for api in apiservices.values():
        assert api["spec"]["service"] == {"name": "aggregation", "namespace": ns, "port": 443}, api
    conf = settings(objs, "aggregation")
    assert conf["KUBEFABRIC_LISTEN_ADDRESS"] == "0.0.0.0:8443" and conf["KUBEFABRIC_AUTH"] == "delegated"
    assert conf["KUBEFABRIC_KV_ROUTER"] == "http://kv-router:2379"
    assert conf["KUBEFABRIC_WATCH_HUB"] == f"http://watch-hub:{GRPC_SERVICES['watch-hub'][0]}"
    subject = [{"kind": "ServiceAccount", "name": "aggregation", "namespace": ns}]
    delegator = by_kind(objs, "ClusterRoleBinding")["aggregation:system:auth-delegator"]
    assert delegator["roleRef"]["name"] == "system:auth-delegator" and delegator["subjects"] == subject
    reader = by_kind(objs, "RoleBinding")["aggregation:auth-reader"]
    assert reader["metadata"]["namespace"] == "kube-system" and reader["subjects"] == subject and \
        reader["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                              "name": "extension-apiserver-authentication-reader"}, reader
    bound = {b["metadata"]["name"] for kind in ("ClusterRoleBinding", "RoleBinding")
             for b in by_kind(objs, kind).values()
             if any(s.get("kind") == "ServiceAccount" for s in b["subjects"])}
    assert bound == {"aggregation:system:auth-delegator", "aggregation:auth-reader"}, \
        f"{name}: no other service account is bound to any role: {bound}"
    pod = by_kind(objs, "Deployment")["aggregation"]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0].get("env", [])}
    secrets = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
    skip = {api["spec"].get("insecureSkipTLSVerify") for api in apiservices.values()}
    if name == "dev":
        assert skip == {True} and not secrets and "KUBEFABRIC_TLS_CERT_FILE" not in env, \
            "dev: a self-signed certificate, not verified"
    else:
        assert skip == {False} and secrets == ["aggregation-serving-cert"], \
            "ha: the serving certificate from its Secret, verified"
        assert env["KUBEFABRIC_TLS_CERT_FILE"].startswith("/etc/kubefabric/serving-cert/")
        assert all(a["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] ==
                   f"{ns}/aggregation-serving-cert" for a in apiservices.values())


def test_aggregation_manifests_command_agrees_with_deploy(rendered):
    """`kubefabric aggregation manifests` for the same CRD directory prints what the dev overlay
    declares: the same APIServices, bindings, roles, Service ports, CRD ConfigMap, pod security,
    ports, probes and mounts, and server flags equal to the overlay's settings."""
    objs = rendered["dev"]
    ns = next(iter(by_kind(objs, "Namespace")))
    cli = Path(sys.executable).parent / "kubefabric"
    conf = settings(objs, "aggregation")
    done = subprocess.run([str(cli), "aggregation", "manifests", "--crd-dir",
                           str(DEPLOY / "base" / "aggregation" / "crds"), "--name", "aggregation",
                           "--namespace", ns, "--replicas", "1", "--kv-router", conf["KUBEFABRIC_KV_ROUTER"],
                           "--watch-hub", conf["KUBEFABRIC_WATCH_HUB"]],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    printed = [d for d in yaml.safe_load_all(done.stdout) if d]
    for kind, fields in (("APIService", ("spec",)), ("ClusterRoleBinding", ("roleRef", "subjects")),
                         ("RoleBinding", ("roleRef", "subjects")), ("ClusterRole", ("rules",))):
        mine, theirs = by_kind(objs, kind), by_kind(printed, kind)
        assert set(mine) == set(theirs), f"{kind}: deploy {sorted(mine)}, manifests {sorted(theirs)}"
        for n in mine:
            assert [mine[n][f] for f in fields] == [theirs[n][f] for f in fields], f"{kind} {n}"
            labels = theirs[n]["metadata"]["labels"]
            assert {k: v for k, v in labels.items() if k.startswith("rbac.")} == \
                {k: v for k, v in mine[n]["metadata"].get("labels", {}).items() if k.startswith("rbac.")}
    assert by_kind(printed, "RoleBinding")["aggregation:auth-reader"]["metadata"]["namespace"] == "kube-system"
    ports = lambda svc: sorted((p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"])  # noqa: E731
    assert ports(by_kind(objs, "Service")["aggregation"]) == ports(by_kind(printed, "Service")["aggregation"])
    assert _crd_files(objs) == by_kind(printed, "ConfigMap")["aggregation-crds"]["data"]
    assert by_kind(objs, "PodDisruptionBudget")["aggregation"]["spec"]["maxUnavailable"] == \
        by_kind(printed, "PodDisruptionBudget")["aggregation"]["spec"]["maxUnavailable"]
    mine = by_kind(objs, "Deployment")["aggregation"]["spec"]["template"]
    theirs = by_kind(printed, "Deployment")["aggregation"]["spec"]["template"]
    assert mine["metadata"]["annotations"] == theirs["metadata"]["annotations"]
    for key in ("securityContext", "automountServiceAccountToken", "serviceAccountName",
                "terminationGracePeriodSeconds", "volumes"):
        want, got = mine["spec"][key], theirs["spec"][key]
        if key == "volumes":  # the generated ConfigMap's name carries kustomize's hash
            want = [{**v, "configMap": {"name": "aggregation-crds"}} if "configMap" in v else v for v in want]
        assert want == got, f"pod {key}: deploy {want}, manifests {got}"
    (c_mine,), (c_theirs,) = mine["spec"]["containers"], theirs["spec"]["containers"]
    for key in ("ports", "startupProbe", "livenessProbe", "readinessProbe", "resources",
                "securityContext", "volumeMounts"):
        assert c_mine[key] == c_theirs[key], f"container {key}: deploy {c_mine[key]}, manifests {c_theirs[key]}"
    args = c_theirs["args"]
    assert args[0] == c_mine["args"][0] == "aggregation"
    flags = dict(zip(args[1::2], args[2::2]))
    for flag, value in flags.items():
        setting = "KUBEFABRIC_" + flag.lstrip("-").replace("-", "_").upper()
        assert conf.get(setting) == value or (setting == "KUBEFABRIC_LOG_FORMAT" and conf[setting] == "text"), \
            f"manifests passes {flag} {value}, deploy sets {setting}={conf.get(setting)}"


# ---- settings name real flags ----

def _help_variables(subcommand: str) -> set[str]:
    cli = Path(sys.executable).parent / "kubefabric"
    done = subprocess.run([str(cli), subcommand, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(re.findall(r"\b(KUBEFABRIC_[A-Z0-9_]+)\]", done.stdout))


def test_every_setting_is_a_flag_of_its_service(rendered):
    """Each KUBEFABRIC_* variable a container gets (its ConfigMap, its env) is one its
    subcommand's --help lists: a misspelt or removed setting would be silently ignored."""
    known = {svc: _help_variables("serve" if svc == "kv-router" else svc) for svc in SERVICES}
    problems = []
    for name, objs in rendered.items():
        for workload, tmpl in pod_specs(objs):
            svc = workload["metadata"]["name"]
            if svc not in SERVICES:
                continue
            c = tmpl["spec"]["containers"][0]
            names = {e["name"] for e in c.get("env", [])} | set(settings(objs, svc))
            problems += [f"{name}: {svc} sets {v}, not a flag of kubefabric {c['args'][0]}"
                         for v in sorted(names) if v.startswith("KUBEFABRIC_") and v not in known[svc]]
    assert not problems, "\n".join(problems)
