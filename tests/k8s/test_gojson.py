"""kubefabric.k8s.gojson without a kube-apiserver: every stored kind's renderer compiles from the
generated table, the special types render as Go's MarshalJSON does, the generated code is the
committed one (scripts/gen_proto.py --check also runs in CI before the tests)."""
from __future__ import annotations

import pytest

from kubefabric.k8s import DecodeError, decode, gojson
from kubefabric.proto.k8s.api.core.v1 import generated_pb2 as core
from kubefabric.proto.k8s.apimachinery.pkg.runtime.generated_pb2 import Unknown


def test_every_kind_compiles():
    r = gojson.renderer()
    kinds = gojson.table()["kinds"]
    assert {"v1", "apps/v1", "apiextensions.k8s.io/v1beta1", "apiregistration.k8s.io/v1"} <= set(kinds)
    for api_version, by_kind in kinds.items():
        for kind, message in by_kind.items():
            render = r.renderer(message)
            assert isinstance(render(gojson.message_class(message)()), (dict, list, str, type(None))), \
                f"{api_version} {kind}"


def test_every_marshaler_has_a_rendering():
    marshalers = {t["go"] for t in gojson.table()["types"].values() if t.get("marshaler")}
    used = set()
    for t in gojson.table()["types"].values():
        for f in t.get("fields", []):
            used.add(f["type"].lstrip("*[]").split("]")[-1])
    by_name = {name: t["go"] for name, t in gojson.table()["types"].items()}
    for name in used & set(by_name):
        if by_name[name] in marshalers:
            assert by_name[name] in gojson.SPECIAL, by_name[name]


@pytest.mark.parametrize("ns,want", [
    (0, "0s"), (1, "1ns"), (999, "999ns"), (1100, "1.1µs"), (2_000_000, "2ms"),
    (1_500_000_000, "1.5s"), (60 * 10**9, "1m0s"), (90 * 60 * 10**9, "1h30m0s"),
    (72 * 3600 * 10**9, "72h0m0s"), (-1_500_000_000, "-1.5s"), (3723_000_000_001, "1h2m3.000000001s"),
])
def test_go_duration(ns, want):
    assert gojson.go_duration(ns) == want


def envelope(api_version: str, kind: str, msg) -> bytes:
    u = Unknown()
    u.typeMeta.apiVersion, u.typeMeta.kind, u.raw = api_version, kind, msg.SerializeToString()
    return b"k8s\x00" + u.SerializeToString()


def test_zero_values_and_specials():
    pod = core.Pod()
    pod.metadata.name = "p"
    pod.metadata.creationTimestamp.SetInParent()        # the zero time: an empty message
    c = pod.spec.containers.add()
    c.name = "c"
    c.resources.limits["cpu"].string = "1500m"
    c.resources.requests["memory"].SetInParent()         # a Quantity without a string: "0"
    c.livenessProbe.handler.tcpSocket.port.intVal = 8080
    c.readinessProbe.handler.tcpSocket.port.type = 1
    c.readinessProbe.handler.tcpSocket.port.strVal = "http"
    pod.spec.activeDeadlineSeconds = 0                   # a pointer to zero is kept
    pod.status.startTime.seconds = 0                     # the epoch, not the zero time
    got = decode("/registry/pods/ns/p", envelope("v1", "Pod", pod), 9)
    assert got["kind"] == "Pod" and got["apiVersion"] == "v1"
    assert got["metadata"] == {"name": "p", "resourceVersion": "9"}   # zero creationTimestamp omitted (omitzero)
    container = got["spec"]["containers"][0]
    assert container["resources"] == {"limits": {"cpu": "1500m"}, "requests": {"memory": "0"}}
    assert container["livenessProbe"] == {"tcpSocket": {"port": 8080}}
    assert container["readinessProbe"] == {"tcpSocket": {"port": "http"}}
    assert container["name"] == "c" and "image" not in container
    assert got["spec"]["activeDeadlineSeconds"] == 0
    assert got["status"] == {"startTime": "1970-01-01T00:00:00Z"}


def test_unknown_kind_and_corrupt_values():
    pod = core.Pod()
    with pytest.raises(DecodeError, match="unknown kind 'Pod' of 'v9'"):
        decode("/registry/pods/ns/p", envelope("v9", "Pod", pod), 1)
    with pytest.raises(DecodeError, match="corrupt Kubernetes protobuf envelope"):
        decode("/registry/pods/ns/p", b"k8s\x00\x0a\xff\xff\xff", 1)
    good = envelope("v1", "Pod", pod)
    with pytest.raises(DecodeError, match="corrupt protobuf v1 Pod"):
        u = Unknown()
        u.ParseFromString(good[4:])
        u.raw = b"\x0a\x05\x01"
        decode("/registry/pods/ns/p", b"k8s\x00" + u.SerializeToString(), 1)
    secret = core.Secret()
    secret.metadata.name = "s"
    secret.data["k"] = b"\x00\xff"
    assert decode("/registry/secrets/ns/s", envelope("v1", "Secret", secret), 1)["data"] == {"k": "AP8="}
