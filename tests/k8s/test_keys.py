"""kubefabric.k8s keys: kube-apiserver v1.37's layout, parsed and built (pure functions).

The real keys a kube-apiserver writes are checked in test_apiserver_objects.py."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from kubefabric.k8s import ObjectKey, object_key, parse_key, resource_prefix
from kubefabric.k8s.resources import BUILTINS

# (key, group, resource, namespace, name): paths from k8s.io/kubernetes v1.37.2
# test/integration/etcd/data.go and what a fresh kube-apiserver writes.
KEYS = [
    ("/registry/configmaps/ns/cm1", "", "configmaps", "ns", "cm1"),
    ("/registry/services/specs/default/kubernetes", "", "services", "default", "kubernetes"),
    ("/registry/services/endpoints/ns/ep1", "", "endpoints", "ns", "ep1"),
    ("/registry/minions/node1", "", "nodes", "", "node1"),
    ("/registry/controllers/ns/rc1", "", "replicationcontrollers", "ns", "rc1"),
    ("/registry/namespaces/kube-system", "", "namespaces", "", "kube-system"),
    ("/registry/events/ns/e.17a", "", "events", "ns", "e.17a"),
    ("/registry/ranges/serviceips", "", "rangeallocations", "", "serviceips"),
    ("/registry/deployments/ns/web", "apps", "deployments", "ns", "web"),
    ("/registry/ingress/ns/in1", "networking.k8s.io", "ingresses", "ns", "in1"),
    ("/registry/leases/kube-system/kube-apiserver-x", "coordination.k8s.io", "leases", "kube-system",
     "kube-apiserver-x"),
    ("/registry/clusterroles/system:basic-user", "rbac.authorization.k8s.io", "clusterroles", "",
     "system:basic-user"),
    ("/registry/clustertrustbundles/example.com:signer:abc", "certificates.k8s.io",
     "clustertrustbundles", "", "example.com:signer:abc"),
    ("/registry/ipaddresses/10.96.0.1", "networking.k8s.io", "ipaddresses", "", "10.96.0.1"),
    ("/registry/apiregistration.k8s.io/apiservices/v1.apps", "apiregistration.k8s.io",
     "apiservices", "", "v1.apps"),
    ("/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com",
     "apiextensions.k8s.io", "customresourcedefinitions", "", "widgets.example.com"),
    ("/registry/example.com/widgets/ns/w1", "example.com", "widgets", "ns", "w1"),
    ("/registry/example.com/gadgets/g1", "example.com", "gadgets", "", "g1"),
]


@pytest.mark.parametrize("key,group,resource,namespace,name", KEYS)
def test_parse_and_build(key, group, resource, namespace, name):
    want = ObjectKey(group, resource, namespace, name)
    assert parse_key(key) == want
    assert parse_key(key.encode()) == want
    assert want.key == key.encode() == object_key(group, resource, namespace, name)
    assert key.encode().startswith(resource_prefix(group, resource))
    if namespace:
        assert key.encode().startswith(resource_prefix(group, resource, namespace))


@pytest.mark.parametrize("key", [
    "compact_rev_key", "/kubefabric/trigger/x", "/registry", "/registry/", "/registry/pods",
    "/registry/pods/", "/registry/pods/ns", "/registry/pods/ns/", "/registry/pods//x",
    "/registry/pods/ns/name/extra", "/registry/namespaces/a/b", "/registry/services/specs",
    "/registry/services/specs/ns", "/registry/services/other/ns/x", "/registry/example.com/widgets",
    "/registry/example.com/widgets/a/b/c", "/registryx/pods/ns/p", "/other/pods/ns/p",
])
def test_not_object_keys(key):
    assert parse_key(key) is None


def test_not_utf8():
    assert parse_key(b"/registry/pods/ns/\xff") is None


def test_prefixes():
    assert resource_prefix("", "services") == b"/registry/services/specs/"
    assert resource_prefix("core", "services", "kube-system") == b"/registry/services/specs/kube-system/"
    assert resource_prefix("", "nodes") == b"/registry/minions/"
    assert resource_prefix("apps", "deployments", "ns") == b"/registry/deployments/ns/"
    assert resource_prefix("events.k8s.io", "events") == b"/registry/events/"
    assert resource_prefix("extensions", "ingresses") == b"/registry/ingress/"
    assert resource_prefix("example.com", "widgets") == b"/registry/example.com/widgets/"
    assert resource_prefix("apiextensions.k8s.io", "customresourcedefinitions") == \
        b"/registry/apiextensions.k8s.io/customresourcedefinitions/"
    assert object_key("", "pods", "ns", "p", prefix="/other") == b"/other/pods/ns/p"
    assert parse_key("/other/pods/ns/p", prefix="/other") == ObjectKey("", "pods", "ns", "p")


@pytest.mark.parametrize("builtin", BUILTINS, ids=lambda b: f"{b.group or 'core'}/{b.resource}")
def test_every_builtin_round_trips(builtin):
    ns = "ns" if builtin.namespaced else ""
    key = object_key(builtin.group, builtin.resource, ns, "n.1")
    assert parse_key(key) == ObjectKey(builtin.group, builtin.resource, ns, "n.1")
    # the other scope is no key of this resource
    other = object_key(builtin.group, builtin.resource, "" if ns else "ns", "n.1")
    assert parse_key(other) is None


segment = st.text(st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=12)


@given(group=st.sampled_from(["example.com", "a.b.c"]), resource=segment,
       namespace=st.one_of(st.just(""), segment), name=segment)
def test_custom_resource_round_trip(group, resource, namespace, name):
    key = object_key(group, resource, namespace, name)
    assert parse_key(key) == ObjectKey(group, resource, namespace, name)
