"""Routing of real Kubernetes keys, matcher semantics and range -> shards."""
from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings, strategies as st

from kubefabric.topology import parse_topology
from kubefabric.topology.keys import namespaced_parts, prefix_end

TOPO = textwrap.dedent("""\
    default: main
    shards:
      - {name: main, endpoint: embedded}
      - {name: tenants, endpoint: "grpc://pg:2390"}
      - {name: events, endpoint: "grpc://maria:2391"}
      - {name: crs, endpoint: "grpc://crs:2392"}
    rules:
      - prefix: /registry/events/
        shard: events
      - namespace: tenant-a
        resources: [pods, services, endpoints, replicationcontrollers, ingresses.networking.k8s.io, deployments.apps, widgets.example.com]
        shard: tenants
      - namespace: tenant-b
        shard: tenants
      - customresource: {group: example.com, resource: gadgets}
        shard: crs
      - customresource: {group: stable.example.org}
        shard: crs
      - regexp: '/registry/leases/kube-node-lease/.*'
        shard: events
    """)


@pytest.fixture(scope="module")
def topo():
    return parse_topology(TOPO, "t.yaml")


@pytest.mark.parametrize("key, shard", [
    # namespace rule with resources (built-ins, irregular storage names, groups, a CR)
    (b"/registry/pods/tenant-a/web-0", "tenants"),
    (b"/registry/services/specs/tenant-a/web", "tenants"),        # services: services/specs
    (b"/registry/services/endpoints/tenant-a/web", "tenants"),    # endpoints: services/endpoints
    (b"/registry/controllers/tenant-a/rc", "tenants"),            # replicationcontrollers
    (b"/registry/ingress/tenant-a/ing", "tenants"),               # ingresses (networking.k8s.io)
    (b"/registry/deployments/tenant-a/d", "tenants"),             # apps group: no group segment
    (b"/registry/example.com/widgets/tenant-a/w", "tenants"),     # widgets.example.com
    (b"/registry/configmaps/tenant-a/cm", "main"),                # not in resources
    (b"/registry/pods/tenant-ab/x", "main"),                      # another namespace
    (b"/registry/pods/tenant-a", "main"),                         # no name segment
    # namespace rule without resources: every namespaced kind, built-in or custom
    (b"/registry/configmaps/tenant-b/cm", "tenants"),
    (b"/registry/services/specs/tenant-b/svc", "tenants"),
    (b"/registry/services/endpoints/tenant-b/svc", "tenants"),
    (b"/registry/leases/tenant-b/l", "tenants"),
    (b"/registry/other.io/things/tenant-b/t", "tenants"),
    # cluster-scoped objects are never matched by a namespace rule
    (b"/registry/namespaces/tenant-a", "main"),
    (b"/registry/namespaces/tenant-b", "main"),
    (b"/registry/clusterroles/tenant-b", "main"),
    (b"/registry/minions/tenant-b", "main"),
    (b"/registry/other.io/things/tenant-b", "main"),              # cluster-scoped CR named so
    (b"/registry/services/specs/tenant-b", "main"),               # not a namespace 'specs'
    (b"/registry/apiregistration.k8s.io/apiservices/v1.tenant-b", "main"),
    (b"/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com", "main"),
    (b"/registry/masterleases/10.0.0.1", "main"),
    (b"/registry/ranges/serviceips", "main"),
    (b"/registry/health", "main"),
    (b"compact_rev_key", "main"),
    (b"/kubefabric/members/a", "main"),
    # prefix, customresource, regexp
    (b"/registry/events/tenant-a/e1", "events"),                  # first rule wins over ns rule
    (b"/registry/events/tenant-b/e1", "events"),
    (b"/registry/example.com/gadgets/ns/g", "crs"),
    (b"/registry/example.com/gadgets/g", "crs"),                  # cluster-scoped too
    (b"/registry/example.com/gizmos/ns/g", "main"),
    (b"/registry/stable.example.org/crontabs/ns/c", "crs"),
    (b"/registry/leases/kube-node-lease/node-1", "events"),
    (b"/registry/leases/kube-system/kube-scheduler", "main"),
])
def test_routes_kubernetes_keys(topo, key, shard):
    assert topo.route(key) == shard
    assert topo.explain(key)[0] == shard


def test_explain_names_the_rule(topo):
    shard, rule = topo.explain(b"/registry/pods/tenant-a/x")
    assert rule.line == 10 and rule.kind == "namespace"
    assert rule.describe().startswith("rule at line 10 (namespace tenant-a, resources pods,")
    assert topo.explain(b"/registry/namespaces/tenant-a") == ("main", None)


def to_b(*rules: str):
    """Shards a (embedded, the default) and b; `rules` are YAML flow mappings."""
    return parse_topology('shards: [{name: a, endpoint: embedded}, {name: b, endpoint: "grpc://b:1"}]\n'
                          "default: a\nrules:\n" + "".join(f"  - {r}\n" for r in rules))


def test_regexp_is_a_full_match_on_bytes():
    t = to_b("{regexp: '/x/[0-9]+', shard: b}", "{regexp: '/bin/\\xff.*', shard: b}",
             "{regexp: '/nl/.*', shard: b}")
    assert t.route(b"/x/123") == "b"
    assert t.route(b"/x/123/more") == "a"       # fullmatch: the whole key
    assert t.route(b"/pre/x/123") == "a"        # not re.search
    assert t.route(b"/bin/\xff\x00\x01") == "b"  # any bytes, \xNN is one byte
    assert t.route(b"/bin/\xc3\xbf") == "a"
    assert t.route(b"/nl/a\nb") == "b"          # DOTALL: . is any byte, newline too
    assert t.rules[0].key_ranges() is None


def test_prefix_is_utf8_or_binary():
    t = to_b('{prefix: "/café/", shard: b}', "{prefix: !!binary L2Jpbi//, shard: b}")
    assert t.route("/café/x".encode()) == "b"
    assert t.rules[1].prefix == b"/bin/\xff"
    assert t.route(b"/bin/\xff\x01") == "b" and t.route(b"/bin/\xfe") == "a"
    assert t.rules[0].key_ranges() == [("/café/".encode(), "/café0".encode())]


def test_key_ranges(topo):
    events, ns_a, ns_b, gadgets, group, regexp = topo.rules
    assert events.key_ranges() == [(b"/registry/events/", b"/registry/events0")]
    assert (b"/registry/services/specs/tenant-a/", b"/registry/services/specs/tenant-a0") \
        in ns_a.key_ranges()
    assert (b"/registry/example.com/widgets/tenant-a/", b"/registry/example.com/widgets/tenant-a0") \
        in ns_a.key_ranges()
    assert ns_b.key_ranges() is None and regexp.key_ranges() is None
    assert gadgets.key_ranges() == [(b"/registry/example.com/gadgets/", b"/registry/example.com/gadgets0")]
    assert group.key_ranges() == [(b"/registry/stable.example.org/", b"/registry/stable.example.org0")]


def rng(prefix: bytes):
    return prefix, prefix_end(prefix)


@pytest.mark.parametrize("start, end, shards", [
    (*rng(b"/registry/pods/"), ["main", "tenants"]),             # cluster-wide list, split by ns
    (*rng(b"/registry/pods/tenant-c/"), ["main"]),               # other namespace: exact
    (*rng(b"/registry/pods/tenant-a/"), ["tenants"]),            # inside the ns rule: exact
    (*rng(b"/registry/pods/tenant-b/"), ["tenants"]),            # ns rule without resources
    (*rng(b"/registry/configmaps/tenant-a/"), ["main"]),
    (*rng(b"/registry/events/"), ["events"]),                    # inside a prefix rule
    (*rng(b"/registry/events/tenant-b/"), ["events"]),
    # tenant-b's gadgets go to tenants: the namespace rule comes before the customresource rule
    (*rng(b"/registry/example.com/gadgets/"), ["tenants", "crs"]),
    (*rng(b"/registry/example.com/gadgets/tenant-c/"), ["crs"]),
    (*rng(b"/registry/example.com/"), ["main", "tenants", "crs"]),
    (*rng(b"/registry/leases/kube-node-lease/"), ["events"]),    # regexp literal + .*: exact
    (*rng(b"/registry/leases/"), ["main", "tenants", "events"]),  # regexp: conservative
    (*rng(b"/registry/namespaces/"), ["main", "tenants"]),       # ns-all rule: conservative
    (*rng(b"/kubefabric/"), ["main"]),                           # outside /registry/
    (b"", b"", ["main", "tenants", "events", "crs"]),           # everything
    (b"/registry/events/a", b"/registry/events/b", ["events"]),
    (b"/registry/events/", b"/registry/f", ["main", "tenants", "events", "crs"]),
])
def test_shards_for_range(topo, start, end, shards):
    assert topo.shards_for_range(start, end) == shards
    assert topo.shards_for_range(start, end) == shards  # cached answer is the same


def test_shards_for_single_key_and_empty_range(topo):
    assert topo.shards_for_range(b"/registry/pods/tenant-a/x", None) == ["tenants"]
    assert topo.shards_for_range(b"/registry/events/z", b"/registry/events/a") == ["events"]


def test_brief_example():
    t = parse_topology(textwrap.dedent("""\
        default: main
        shards: [{name: main, endpoint: embedded}, {name: pg, endpoint: "grpc://pg:1"},
                 {name: ev, endpoint: "grpc://ev:1"}]
        rules:
          - {namespace: tenant-a, resources: [pods], shard: pg}
          - {prefix: /registry/events/, shard: ev}
        """))
    assert t.shards_for_range(*rng(b"/registry/pods/")) == ["main", "pg"]
    assert t.shards_for_range(*rng(b"/registry/pods/tenant-b/")) == ["main"]
    assert t.shards_for_range(*rng(b"/registry/events/")) == ["ev"]


def test_union_of_prefix_rules_covers_a_range():
    t = parse_topology(textwrap.dedent("""\
        default: main
        shards: [{name: main, endpoint: embedded}, {name: x, endpoint: "grpc://x:1"}]
        rules:
          - {prefix: /a, shard: x}
          - {prefix: /b, shard: x}
        """))
    assert t.shards_for_range(b"/a", b"/c") == ["x"]
    assert t.shards_for_range(b"/a", b"/c\x00") == ["main", "x"]


def test_namespaced_parts():
    assert namespaced_parts(b"/registry/pods/ns/n") == (b"pods", b"ns")
    assert namespaced_parts(b"/registry/services/specs/ns/n") == (b"services/specs", b"ns")
    assert namespaced_parts(b"/registry/services/other/n") == (b"services", b"other")
    assert namespaced_parts(b"/registry/a.io/things/ns/n") == (b"a.io/things", b"ns")
    for key in (b"/registry/pods/ns", b"/registry/a.io/things/n", b"/registry//ns/n",
                b"/registry/pods//n", b"/other/pods/ns/n", b"/registry/a.io//ns/n"):
        assert namespaced_parts(key) is None, key


# -- property: shards_for_range never misses the shard of a key inside the range ---------------

PROP = parse_topology(textwrap.dedent("""\
    default: d
    shards: [{name: d, endpoint: embedded}, {name: a, endpoint: "grpc://a:1"},
             {name: b, endpoint: "grpc://b:1"}, {name: c, endpoint: "grpc://c:1"}]
    rules:
      - {prefix: /registry/events/, shard: a}
      - {namespace: t1, resources: [pods, services, w.x.io], shard: b}
      - {namespace: t2, shard: c}
      - {regexp: '/registry/pods/t[0-9]/.*', shard: a}
      - {regexp: '/registry/.*/z', shard: b}
      - {customresource: {group: x.io}, shard: c}
      - {prefix: "/registry/pods/t3/\\xff", shard: b}
    """))

SEGMENTS = [b"registry", b"pods", b"services", b"specs", b"events", b"x.io", b"w", b"t1", b"t2",
            b"t3", b"z", b"", b"\xff", b"\x00", b"a"]
keys = st.lists(st.sampled_from(SEGMENTS), max_size=6).map(lambda s: b"/" + b"/".join(s)) | \
    st.binary(max_size=12)


@settings(max_examples=600, deadline=None)
@given(keys, keys, keys, st.booleans())
def test_shards_for_range_never_misses(k, a, b, unbounded):
    start, end = min(a, b), max(a, b)
    if unbounded:
        end = b""
    inside = start <= k and (end == b"" or k < end)
    if not inside:
        k = start
        if end != b"" and start >= end:
            return
    shards = PROP.shards_for_range(start, end)
    assert PROP.route(k) in shards, (k, start, end, shards)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=5))
def test_prefix_ranges_never_miss(segs):
    prefix = b"/" + b"/".join(segs)
    shards = PROP.shards_for_range(prefix, prefix_end(prefix))
    for extra in (b"", b"/", b"/n", b"\xff", b"/t1/x", b"/specs/t1/x"):
        assert PROP.route(prefix + extra) in shards
