"""examples/shop/deploy: the app and the platform kustomizations render, validate against the
Kubernetes 1.37 schemas, and wire what the example promises: Orders routed to a shard of their
own ("orders", a second backend-pg on a second PostgreSQL) whose Services select only their own
pods, the default shard named as the topology names it, the app's containers locked down, and
the RBAC the function and the operator need (and no more for the function). The app's image is
the `shop` target of the repository's Dockerfile (hadolint: tests/platform/test_dockerfile.py)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "examples" / "shop" / "deploy"


def render(name: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.fail("kubectl is not installed: it renders the example's kustomizations")
    done = subprocess.run([kubectl, "kustomize", str(DEPLOY / name)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [o for o in yaml.safe_load_all(done.stdout) if o]


def find(objs: list[dict], kind: str, name: str) -> dict:
    (found,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def configmap(objs: list[dict], prefix: str) -> dict:
    (found,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].rsplit("-", 1)[0] == prefix]
    return found["data"]


@pytest.mark.parametrize("name", ["app", "platform"])
def test_validates_against_kubernetes_1_37(name):
    import kubernetes_validate

    for obj in render(name):
        if obj["apiVersion"].startswith("triggers.kubefabric.io/"):   # KubeFabric's CRD, not Kubernetes'
            from trigger import spec
            spec.parse(obj["spec"], obj["metadata"]["namespace"])      # raises SpecError naming the field
            continue
        try:
            kubernetes_validate.validate(obj, "1.37", strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {err.message}")


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_platform_gives_orders_a_shard_of_their_own():
    objs = render("platform")
    topology = yaml.safe_load(find(objs, "ConfigMap", "kv-router-topology")["data"]["topology.yaml"])
    shards = {s["name"]: s["endpoint"] for s in topology["shards"]}
    assert topology["default"] == "main"
    assert topology["rules"] == [{"customresource": {"group": "shop.example.com", "resource": "orders"},
                                  "shard": "orders", "index": {"labels": True, "fields": ["spec.customer"]}}]
    assert shards == {"main": "grpc://backend-pg:2391", "orders": "grpc://backend-pg-orders:2391"}
    # each shard service calls itself as the topology does (its NATS stream and the hub's name)
    assert configmap(objs, "backend-pg")["KUBEFABRIC_NAME"] == "main"
    assert configmap(objs, "backend-pg-orders")["KUBEFABRIC_NAME"] == "orders"
    dsn = find(objs, "Deployment", "backend-pg-orders")["spec"]["template"]["spec"]["containers"][0]["env"]
    secret_name = next(e for e in dsn if e["name"] == "KUBEFABRIC_DSN")["valueFrom"]["secretKeyRef"]["name"]
    secret = find(objs, "Secret", secret_name)
    import base64
    assert "@postgresql-orders:5432/" in base64.b64decode(secret["data"]["dsn"]).decode()
    # every Service selects the pods of exactly one workload
    workloads = [o for o in objs if o["kind"] in ("Deployment", "StatefulSet")]
    for svc in (o for o in objs if o["kind"] == "Service"):
        chosen = [w["metadata"]["name"] for w in workloads
                  if selects(svc["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])]
        assert len(chosen) == 1, f"Service {svc['metadata']['name']} selects {chosen}"
    for w in workloads:
        others = [o["metadata"]["name"] for o in workloads if o is not w and
                  selects(w["spec"]["selector"]["matchLabels"], o["spec"]["template"]["metadata"]["labels"])]
        assert not others, f"{w['metadata']['name']}'s selector also matches {others}"


def test_app_containers_are_locked_down_and_rbac_is_minimal():
    objs = render("app")
    for name in ("shop-function", "shop-operator"):
        spec = find(objs, "Deployment", name)["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["limits"]["memory"] and c["livenessProbe"]
        assert spec["serviceAccountName"] == name
    rules = find(objs, "ClusterRole", "shop-function")["rules"]
    assert {(r["resources"][0], tuple(r["verbs"])) for r in rules} == {("orders", ("get",)), ("orders/status", ("patch",))}


def test_the_function_is_wired_by_an_httptrigger():
    objs = render("app")
    trigger = find(objs, "HTTPTrigger", "price-orders")
    from trigger import spec
    parsed = spec.parse(trigger["spec"], trigger["metadata"]["namespace"])
    assert parsed.event_types == ("ADDED",), "only creations are priced"
    assert parsed.url_service is not None and parsed.url_service.name == "shop-function"
    svc = find(objs, "Service", parsed.url_service.name)
    assert trigger["metadata"]["namespace"] == svc["metadata"]["namespace"] == "shop"
    assert trigger["spec"]["url"]["service"]["portName"] in {p["name"] for p in svc["spec"]["ports"]}
    assert find(objs, "CustomResourceDefinition", "orders.shop.example.com")["spec"]["group"] == "shop.example.com"
    assert find(objs, "Namespace", "shop")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_app_image_is_the_dockerfiles_shop_target():
    """What the app's Deployments run (shop:0.1.0) is the `shop` stage of the repository's
    Dockerfile: before the default stage, non-root, `shop` as entry point, the virtualenv only."""
    dockerfile = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.M)
    assert "shop" in stages and stages[-1] == "runtime", stages
    shop = dockerfile.split(" AS shop\n", 1)[1].split("\nFROM ", 1)[0]
    for line in ('ENTRYPOINT ["shop"]', "USER 10001:10001", "EXPOSE 8080",
                 "COPY --from=shop-build /opt/shop /opt/shop"):
        assert line in shop, f"{line!r} not in the shop stage:\n{shop}"
    assert "uv " not in shop and "/src" not in shop
    for name in ("function", "operator"):
        pod = find(render("app"), "Deployment", f"shop-{name}")["spec"]["template"]["spec"]
        assert pod["containers"][0]["image"] == "shop:0.1.0"
