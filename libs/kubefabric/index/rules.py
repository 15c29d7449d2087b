"""Which keys a shard indexes, and with what: the `index:` rules of the topology that route to
the shard, as IndexRule objects with a stable identity.

A shard indexes a key when some index rule's matcher matches it (whichever rule routed it
there: indexing more keys than needed never makes a query wrong). The rows of one object
version are the union over every rule matching its key: labels if any of them wants labels,
the union of their fields, and always metadata.name and metadata.namespace.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from kubefabric.query.objects import VIEW_VERSION
from kubefabric.topology.keys import Interval, covered, merge
from kubefabric.topology.model import ALL, Rule, Topology


@dataclass(frozen=True)
class IndexRule:
    id: str             # stable across restarts and replicas: matcher + settings
    description: str    # for logs, metrics and `kubefabric topology status`
    rule: Rule          # the topology rule (its matcher)
    labels: bool
    fields: tuple[str, ...]

    def matches(self, key: bytes) -> bool:
        return self.rule.matches(key)

    def intervals(self) -> list[Interval]:
        """Disjoint intervals, in key order, containing every key the rule matches."""
        return merge(self.rule.bounds()[0])

    def provides(self, labels: bool, fields: set[str]) -> bool:
        return (self.labels or not labels) and fields.issubset(self.fields)


def of_rule(rule: Rule) -> IndexRule:
    spec = rule.index
    description = f"{rule.summary()} [{spec.summary()}]"
    identity = (f"{rule.kind}\0{rule.summary()}\0{int(spec.labels)}\0{','.join(spec.fields)}"
                f"\0{VIEW_VERSION}")
    return IndexRule(id=hashlib.sha256(identity.encode()).hexdigest()[:32], description=description,
                     rule=rule, labels=spec.labels, fields=spec.fields)


def index_rules(topology: Topology | None, shard: str) -> tuple[IndexRule, ...]:
    """The index rules of `shard` in `topology` (file order, duplicates once)."""
    if topology is None:
        return ()
    out: dict[str, IndexRule] = {}
    for rule in topology.rules:
        if rule.shard == shard and rule.index is not None:
            r = of_rule(rule)
            out.setdefault(r.id, r)
    return tuple(out.values())


def covers(rules: list[IndexRule], start: bytes, end: bytes | None) -> bool:
    """Whether every key of the range (end None: the key `start`; b"": unbounded) is matched
    by one of `rules` (conservative: False when that cannot be shown)."""
    if end is None:
        return any(r.matches(start) for r in rules)
    exact = [iv for r in rules if r.rule.bounds()[1] for iv in r.rule.bounds()[0]]
    if covered([(start, end)], exact):
        return True
    return any(r.rule.classify(start, end) == ALL for r in rules)
