"""The loader: the format, defaults, and every validation problem with its line."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kubefabric.topology import TLSSpec, TopologyError, load_topology, parse_topology

GOOD = textwrap.dedent("""\
    # comment
    default: main
    shards:
      - name: main
        endpoint: embedded
        compaction:
          interval: 1h30m
          retention: 10000
      - name: pg
        endpoint: grpc://pg-0:2390, grpc://[::1]:2390
        tls:
          ca_file: /etc/ca.pem
          cert_file: /etc/client.pem
          key_file: /etc/client-key.pem
          server_name: pg.internal
        compaction: {interval: 300, retention: 1h}
    rules:
      - namespace: tenant-a
        shard: pg
    """)


def test_good_file():
    t = parse_topology(GOOD, "good.yaml")
    assert list(t.shards) == ["main", "pg"] and t.default == "main" and t.default_line == 2
    main, pg = t.shards.values()
    assert (main.endpoint, main.tls, main.compaction_interval, main.compaction_retention,
            main.line) == ("embedded", None, 5400.0, "10000", 4)
    assert main.embedded and main.addresses == ()
    assert pg.endpoint == "grpc://pg-0:2390,grpc://[::1]:2390"
    assert pg.addresses == ("pg-0:2390", "[::1]:2390")
    assert pg.tls == TLSSpec("/etc/ca.pem", "/etc/client.pem", "/etc/client-key.pem", "pg.internal")
    assert (pg.compaction_interval, pg.compaction_retention) == (300.0, "1h")
    assert t.rules[0].line == 18 and t.warnings == () and t.source == "good.yaml"


def test_single_shard_is_the_default_and_rules_are_optional():
    t = parse_topology("shards: [{name: only, endpoint: 'grpc://h:1'}]")
    assert t.default == "only" and t.rules == ()
    assert t.route(b"anything") == "only"


def test_load_topology_reads_a_file(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text(GOOD)
    assert load_topology(str(f)).source == str(f)
    with pytest.raises(TopologyError, match=rf"^{tmp_path}/missing.yaml: cannot read: "):
        load_topology(str(tmp_path / "missing.yaml"))
    f.write_bytes(b"shards: \xff\n")
    with pytest.raises(TopologyError, match="not UTF-8"):
        load_topology(str(f))


HEAD = "default: main\nshards:\n  - {name: main, endpoint: embedded}\n"  # lines 1-3


@pytest.mark.parametrize("text, problem", [
    # document level
    ("", "t:1: empty topology"),
    ("shards: [a\n", "t:2: invalid YAML"),
    ("- a\n", "t:1: the topology must be a mapping"),
    ("shards: []\nshardz: 1\n", "t:2: unknown key 'shardz' in the topology"),
    (HEAD + "default: x\n", "t:4: duplicate key 'default' in the topology (first at line 1)"),
    ("default: main\n", "t:1: no shards"),
    ("shards: []\n", "t:1: no shards: list at least one"),
    ("shards: {main: embedded}\n", "t:1: shards must be a list"),
    ("shards:\n  - {name: a, endpoint: embedded}\n  - {name: b, endpoint: 'grpc://b:1'}\n",
     "t:1: no default: add 'default: SHARD'"),
    ("default: nope\nshards:\n  - {name: main, endpoint: embedded}\n",
     "t:1: default: unknown shard 'nope' (shards: main)"),
    ("default: [a]\nshards:\n  - {name: main, endpoint: embedded}\n",
     "t:1: default must be a single value, not a list"),
    # shards
    (HEAD + "  - {name: main, endpoint: 'grpc://h:1'}\n", "t:4: duplicate shard name 'main' (first at line 3)"),
    (HEAD + "  - {endpoint: 'grpc://h:1'}\n", "t:4: shard without a name"),
    (HEAD + "  - {name: Bad.Name, endpoint: 'grpc://h:1'}\n", "t:4: bad shard name 'Bad.Name'"),
    (HEAD + "  - {name: b}\n", "t:4: shard 'b' has no endpoint"),
    (HEAD + "  - {name: b, endpoint: 'http://h:1'}\n", "t:4: bad endpoint 'http://h:1'"),
    (HEAD + "  - {name: b, endpoint: 'grpc://h'}\n", "t:4: bad endpoint 'grpc://h'"),
    (HEAD + "  - {name: b, endpoint: 'grpc://h:70000'}\n", "t:4: bad endpoint 'grpc://h:70000': port"),
    (HEAD + "  - {name: b, endpoint: 'grpc://h:1/path'}\n", "t:4: bad endpoint"),
    (HEAD + "  - {name: b, endpoint: 'grpc://h:1,grpc://h:1'}\n", "t:4: endpoint 'grpc://h:1,grpc://h:1' lists an address twice"),
    (HEAD + "  - {name: b, endpoint: embedded}\n", "t:4: more than one embedded shard: 'main' (line 3)"),
    (HEAD + "  - {name: b, endpoint: 'grpc://h:1', pool: 3}\n", "t:4: unknown key 'pool' in shard"),
    (HEAD + "  - name: b\n    endpoint: 'grpc://h:1'\n    tls: {ca: x}\n", "t:6: unknown key 'ca' in tls"),
    (HEAD + "  - name: b\n    endpoint: 'grpc://h:1'\n    tls: {cert_file: c}\n", "t:6: tls: cert_file and key_file go together"),
    (HEAD + "  - name: b\n    endpoint: 'grpc://h:1'\n    tls: {ca_file: 3}\n", "t:6: tls ca_file must be a string, not a number"),
    ("shards:\n  - name: b\n    endpoint: embedded\n    tls: {ca_file: x}\n", "t:4: tls on an embedded shard"),
    (HEAD + "  - name: b\n    endpoint: 'grpc://h:1'\n    compaction: {interval: 5x}\n", "t:6: bad compaction interval '5x'"),
    (HEAD + "  - name: b\n    endpoint: 'grpc://h:1'\n    compaction: {interval: 0}\n", "t:6: bad compaction interval 0"),
    (HEAD + "  - name: b\n    endpoint: 'grpc://h:1'\n    compaction: {interval: -1s}\n", "t:6: bad compaction interval '-1s'"),
    (HEAD + "  - name: b\n    endpoint: 'grpc://h:1'\n    compaction: {retention: 1 day}\n", "t:6: bad compaction retention '1 day'"),
    (HEAD + "  - name: b\n    endpoint: 'grpc://h:1'\n    compaction: {every: 1h}\n", "t:6: unknown key 'every' in compaction"),
    # rules
    (HEAD + "rules: {prefix: /a}\n", "t:4: rules must be a list"),
    (HEAD + "rules:\n  - /a\n", "t:5: rule must be a mapping"),
    (HEAD + "rules:\n  - {shard: main}\n", "t:5: a rule needs one matcher"),
    (HEAD + "rules:\n  - {prefix: /a, regexp: /b, shard: main}\n", "t:5: a rule has one matcher, this one has prefix and regexp"),
    (HEAD + "rules:\n  - {prefix: /a}\n", "t:5: rule without a shard"),
    (HEAD + "rules:\n  - prefix: /a\n    shard: nope\n", "t:6: unknown shard 'nope' (shards: main)"),
    (HEAD + "rules:\n  - {prefix: /a, shard: main, name: x}\n", "t:5: unknown key 'name' in rule"),
    (HEAD + "rules:\n  - {prefix: '', shard: main}\n", "t:5: empty prefix"),
    (HEAD + "rules:\n  - {prefix: 12, shard: main}\n", "t:5: prefix must be a string, not a number"),
    (HEAD + "rules:\n  - {regexp: '/a[', shard: main}\n", "t:5: bad regexp '/a['"),
    (HEAD + "rules:\n  - {regexp: '', shard: main}\n", "t:5: empty regexp"),
    (HEAD + "rules:\n  - {namespace: Tenant_A, shard: main}\n", "t:5: bad namespace 'Tenant_A'"),
    (HEAD + "rules:\n  - {prefix: /a, resources: [pods], shard: main}\n", "t:5: resources: only goes with a namespace"),
    (HEAD + "rules:\n  - {namespace: a, resources: [], shard: main}\n", "t:5: resources: empty list"),
    (HEAD + "rules:\n  - namespace: a\n    resources:\n      - pods\n      - Pods\n    shard: main\n", "t:8: bad resource 'Pods'"),
    (HEAD + "rules:\n  - {namespace: a, resources: [widgets.example], shard: main}\n", "t:5: bad resource 'widgets.example': a custom resource is 'plural.group'"),
    (HEAD + "rules:\n  - {namespace: a, resources: pods, shard: main}\n", "t:5: resources must be a list"),
    (HEAD + "rules:\n  - {customresource: example.com, shard: main}\n", "t:5: customresource must be a mapping"),
    (HEAD + "rules:\n  - {customresource: {resource: w}, shard: main}\n", "t:5: customresource needs a group"),
    (HEAD + "rules:\n  - {customresource: {group: example}, shard: main}\n", "t:5: bad group 'example'"),
    (HEAD + "rules:\n  - {customresource: {group: apps}, shard: main}\n", "t:5: group 'apps' is built in"),
    (HEAD + "rules:\n  - {customresource: {group: a.io, resource: W.x}, shard: main}\n", "t:5: bad resource 'W.x'"),
    (HEAD + "rules:\n  - {customresource: {group: a.io, kind: W}, shard: main}\n", "t:5: unknown key 'kind' in customresource"),
])
def test_problems_name_their_line(text, problem):
    with pytest.raises(TopologyError) as err:
        parse_topology(text, "t")
    assert problem in str(err.value), str(err.value)
    assert all(p.startswith("t:") for p in err.value.problems)


def test_every_problem_is_reported_in_line_order():
    text = textwrap.dedent("""\
        shards:
          - {name: a, endpoint: embedded}
          - {name: a, endpoint: "grpc://x"}
        rules:
          - {prefix: "", shard: a}
          - {regexp: "(", shard: zz}
        """)
    with pytest.raises(TopologyError) as err:
        parse_topology(text, "f.yaml")
    lines = str(err.value).splitlines()
    assert [line.split(":")[1] for line in lines] == ["1", "3", "3", "5", "6", "6"], lines
    assert isinstance(err.value, ValueError)


def test_unreachable_rule_is_a_warning():
    t = parse_topology(HEAD + textwrap.dedent("""\
          - {name: b, endpoint: "grpc://b:1"}
        rules:
          - {prefix: /registry/, shard: b}
          - {prefix: /registry/events/, shard: main}
          - {customresource: {group: a.io}, shard: main}
          - {namespace: t, resources: [pods], shard: main}
          - {prefix: /other/, shard: main}
          - {namespace: t, shard: main}
        """), "w.yaml")
    assert len(t.warnings) == 4, t.warnings
    assert t.warnings[0].startswith("w.yaml:7: warning: rule at line 7 (prefix /registry/events/) "
                                    "is unreachable: every key it can match is matched first by "
                                    "rule at line 6 (prefix /registry/)")
    assert [w.split(":")[1] for w in t.warnings] == ["7", "8", "9", "11"]


def test_non_ascii_prefix_warns_about_utf8():
    t = parse_topology(HEAD + 'rules:\n  - {prefix: "/a\\xff", shard: main}\n', "u")
    assert t.rules[0].prefix == b"/a\xc3\xbf"
    assert t.warnings == ("u:5: warning: prefix contains U+00FF, which stands for its UTF-8 bytes; "
                          "for raw bytes use !!binary (prefix) or a single-quoted \\xNN (regexp)",)


def test_the_documented_example_is_valid():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "topology.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    t = parse_topology(example, "docs/topology.md")
    assert t.warnings == () and len(t.shards) == 3 and len(t.rules) == 6
    assert t.route(b"/registry/services/endpoints/tenant-b/s") == "tenants"


INDEXED = textwrap.dedent("""\
    shards: [{name: main, endpoint: embedded}]
    rules:
      - customresource: {group: example.com, resource: widgets}
        shard: main
        index: {labels: true, fields: [status.phase, spec.customer]}
      - prefix: /registry/pods/
        shard: main
        index: {}
      - {regexp: '/registry/leases/team-a/.*', shard: main, index: {fields: [spec.holderIdentity]}}
      - {prefix: /registry/events/, shard: main}
    """)


def test_index_settings():
    t = parse_topology(INDEXED, "i.yaml")
    widgets, pods, leases, events = (r.index for r in t.rules)
    assert (widgets.labels, widgets.fields) == (True, ("spec.customer", "status.phase"))
    assert (pods.labels, pods.fields) == (False, ())
    assert (leases.labels, leases.fields) == (False, ("spec.holderIdentity",))
    assert events is None and t.warnings == ()
    assert widgets.summary() == "labels, spec.customer, status.phase"


@pytest.mark.parametrize("index, problem", [
    ("{labels: yes please}", "i.yaml:5: index labels must be true or false, not"),
    ("{labels: true, fields: spec.x}", "i.yaml:5: index fields must be a list"),
    ("{fields: ['spec..x']}", "i.yaml:5: bad index field 'spec..x': a dot-separated path"),
    ("{fields: [spec.x, spec.x]}", "i.yaml:5: index field spec.x is listed twice"),
    ("{fields: [[a]]}", "i.yaml:5: index field must be a single value, not a list"),
    ("{label: true}", "i.yaml:5: unknown key 'label' in index (expected labels, fields)"),
    ("true", "i.yaml:5: index must be a mapping of labels, fields"),
    ("{fields: [" + ", ".join(f"f{i}" for i in range(17)) + "]}",
     "i.yaml:5: index fields: at most 16 paths per rule, got 17"),
])
def test_bad_index_settings(index, problem):
    text = INDEXED.replace("{labels: true, fields: [status.phase, spec.customer]}", index)
    with pytest.raises(TopologyError) as err:
        parse_topology(text, "i.yaml")
    assert problem in str(err.value), str(err.value)


def test_index_on_a_regexp_needs_a_literal_prefix():
    text = INDEXED.replace("'/registry/leases/team-a/.*'", "'/registry/leases/team-[ab]/.*'")
    with pytest.raises(TopologyError, match=r"i.yaml:9: index: on a regexp rule needs a literal "
                                            r"prefix followed by \.\*"):
        parse_topology(text, "i.yaml")


def test_metadata_fields_are_always_indexed_and_only_warned_about():
    t = parse_topology(INDEXED.replace("[status.phase, spec.customer]", "[metadata.name, spec.x]"),
                       "i.yaml")
    assert t.rules[0].index.fields == ("spec.x",)
    assert t.warnings == ("i.yaml:5: warning: index field metadata.name is always indexed; "
                          "listing it changes nothing",)
