"""Reload: only appended rules; and the data check that refuses a re-route of existing keys."""
from __future__ import annotations

import asyncio
import bisect

import pytest

from kubefabric.topology import TopologyError, check_reload, find_moved_key, parse_topology
from kubefabric.topology.reload import scan_ranges

SHARDS = """\
default: main
shards:
  - {name: main, endpoint: embedded}
  - name: pg
    endpoint: grpc://pg:2390
"""
RULES = """\
rules:
  - {prefix: /registry/events/, shard: pg}
  - {namespace: tenant-a, resources: [pods], shard: pg}
"""
OLD = parse_topology(SHARDS + RULES, "old.yaml")


def new(text: str):
    return parse_topology(text, "new.yaml")


@pytest.mark.parametrize("text", [
    SHARDS + RULES,                                                         # unchanged
    "# a comment moves every line\n" + SHARDS + RULES,                      # lines do not matter
    SHARDS + "  - {name: extra, endpoint: 'grpc://x:1'}\n" + RULES,         # shard added
    SHARDS.replace("grpc://pg:2390", "grpc://pg:2390\n    tls: {ca_file: /ca}\n"
                   "    compaction: {interval: 1m}") + RULES,               # settings changed
    SHARDS + RULES + "  - {namespace: tenant-b, shard: pg}\n",             # appended
    SHARDS + RULES + "  - {prefix: /registry/x/, shard: main}\n",          # appended, to default
    SHARDS + RULES.replace("shard: pg}\n", "shard: pg, index: {labels: true}}\n"),  # indexed
])
def test_allowed(text):
    check_reload(OLD, new(text))


@pytest.mark.parametrize("text, problem", [
    (SHARDS.replace("default: main", "default: pg") + RULES,
     "new.yaml:1: default changed from 'main' to 'pg'"),
    (SHARDS.replace("grpc://pg:2390", "grpc://pg2:2390") + RULES,
     "new.yaml:4: shard 'pg' endpoint changed from grpc://pg:2390 to grpc://pg2:2390"),
    ("default: main\nshards:\n  - {name: main, endpoint: embedded}\nrules: []\n",
     "old.yaml:4: shard 'pg' was removed"),
    (SHARDS + "rules:\n  - {prefix: /registry/events/, shard: pg}\n",
     "old.yaml:8: 1 rule(s) removed (line 8: namespace tenant-a, resources pods -> pg)"),
    (SHARDS + "rules:\n  - {prefix: /registry/events/, shard: main}\n"
     "  - {namespace: tenant-a, resources: [pods], shard: pg}\n",
     "new.yaml:7: rule #1 changed: now prefix /registry/events/ -> main, was prefix "
     "/registry/events/ -> pg (old.yaml:7)"),
    (SHARDS + "rules:\n  - {prefix: /registry/events/, shard: pg}\n"
     "  - {namespace: tenant-a, resources: [pods, configmaps], shard: pg}\n",
     "new.yaml:8: rule #2 changed"),
    (SHARDS + "rules:\n  - {namespace: tenant-a, resources: [pods], shard: pg}\n"
     "  - {prefix: /registry/events/, shard: pg}\n",
     "new.yaml:7: rules were reordered or removed"),
    (SHARDS + "rules:\n  - {prefix: /registry/leases/, shard: pg}\n" + RULES[7:],
     "new.yaml:7: rule prefix /registry/leases/ -> pg was inserted before the existing rule "
     "prefix /registry/events/ -> pg (old.yaml:7)"),
])
def test_refused(text, problem):
    with pytest.raises(TopologyError) as err:
        check_reload(OLD, new(text))
    assert problem in str(err.value), str(err.value)


def test_several_problems_together():
    text = SHARDS.replace("default: main", "default: pg").replace("pg:2390", "pg:1") + \
        "rules: []\n"
    with pytest.raises(TopologyError) as err:
        check_reload(OLD, new(text))
    assert len(err.value.problems) == 3


class FakeShards:
    """Existing keys per shard, sorted; list_keys as the router's shard clients would answer."""

    def __init__(self, topo, keys):
        self.keys: dict[str, list[bytes]] = {}
        for k in sorted(keys):
            self.keys.setdefault(topo.route(k), []).append(k)
        self.calls = []

    async def list_keys(self, shard, start, end):
        self.calls.append((shard, start, end))
        keys = self.keys.get(shard, [])
        for k in keys[bisect.bisect_left(keys, start):]:
            if end and k >= end:
                return
            yield k


KEYS = [b"/registry/pods/tenant-a/p", b"/registry/pods/tenant-b/p", b"/registry/pods/tenant-c/p",
        b"/registry/events/tenant-b/e", b"/registry/configmaps/tenant-b/c",
        b"/registry/namespaces/tenant-b", b"/kubefabric/members/m"]


def moved(text, keys=KEYS):
    fake = FakeShards(OLD, keys)
    return asyncio.run(find_moved_key(OLD, new(text), fake.list_keys)), fake.calls


def test_appended_rule_that_moves_an_existing_key_is_found():
    (key, before, after), calls = moved(SHARDS + RULES + "  - {namespace: tenant-b, shard: pg}\n")
    # events of tenant-b stay on pg (the earlier prefix rule); the configmap is the first mover
    assert (key, before, after) == (b"/registry/configmaps/tenant-b/c", "main", "pg")
    assert calls == [("main", b"/registry/", b"/registry0")]  # only the default shard, bounded


def test_appended_rule_over_empty_ranges_is_fine():
    result, calls = moved(SHARDS + RULES + "  - {namespace: tenant-z, resources: [pods, secrets],"
                                           " shard: pg}\n")
    assert result is None
    assert calls == [("main", b"/registry/pods/tenant-z/", b"/registry/pods/tenant-z0"),
                     ("main", b"/registry/secrets/tenant-z/", b"/registry/secrets/tenant-z0")]


def test_appended_rule_to_the_default_shard_scans_nothing():
    result, calls = moved(SHARDS + RULES + "  - {prefix: /registry/, shard: main}\n")
    assert result is None and calls == []


def test_keys_already_routed_by_an_old_rule_do_not_count():
    # tenant-a pods are on pg already; appending a broader rule for pg moves none of them,
    # but it does move the main shard's tenant-c pod
    result, _ = moved(SHARDS + RULES + "  - {prefix: /registry/pods/, shard: pg}\n")
    assert result == (b"/registry/pods/tenant-b/p", "main", "pg")
    result, _ = moved(SHARDS + RULES + "  - {prefix: /registry/pods/tenant-a/, shard: main}\n")
    assert result is None


def test_regexp_rule_scans_its_literal_prefix():
    result, calls = moved(SHARDS + RULES + "  - {regexp: '/kubefabric/mem.*s/m', shard: pg}\n")
    assert result == (b"/kubefabric/members/m", "main", "pg")
    assert calls == [("main", b"/kubefabric/mem", b"/kubefabric/men")]


def test_refused_change_raises_before_scanning():
    with pytest.raises(TopologyError):
        moved(SHARDS.replace("default: main", "default: pg") + RULES)


def test_scan_ranges_are_merged():
    t = new(SHARDS + RULES + "  - {prefix: /a/, shard: pg}\n  - {prefix: /a/b/, shard: pg}\n"
            "  - {prefix: /b, shard: pg}\n")
    assert scan_ranges(OLD, t) == [(b"/a/", b"/a0"), (b"/b", b"/c")]


def test_stops_the_iterator_early():
    closed = []

    async def list_keys(shard, start, end):
        try:
            yield b"/registry/configmaps/tenant-b/a"
            yield b"/registry/configmaps/tenant-b/b"
        finally:
            closed.append(True)

    t = new(SHARDS + RULES + "  - {namespace: tenant-b, shard: pg}\n")
    assert asyncio.run(find_moved_key(OLD, t, list_keys))[0] == b"/registry/configmaps/tenant-b/a"
    assert closed == [True]
