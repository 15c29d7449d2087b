"""The index rows of object versions, as the writer (and the backfill) store them.

Invariant: the rows of a log row (key, rev, sub) are a pure function of its key, its value and
the shard's index rules: a label row per label when some rule matching the key wants labels,
a field row per field path of the matching rules plus metadata.name and metadata.namespace
(fields always have a row, "" when missing). Values that do not decode get no rows at all (and
never match a query, as in the scan), keys no rule matches neither.
"""
from __future__ import annotations

import logging

from prometheus_client import Counter

from kubefabric.proto.mvccpb.kv_pb2 import Event
from kubefabric.query.objects import view
from kubefabric.query.requirements import FIELD, LABEL

from .rules import IndexRule
from .terms import encode

log = logging.getLogger("kubefabric.index")

undecodable_total = Counter(
    "kubefabric_index_undecodable_values",
    "Values written under indexed keys that are not Kubernetes objects (stored, not indexed).")


class Indexer:
    """Computes index rows for the writer; `rules` is replaced whole when the topology changes.

    A row is a tuple in index_statements.INDEX_COLUMNS order: (key, rev, sub, kind, name, value)
    (the store binds it as it is: no per-row dict on the write path)."""

    def __init__(self, rules: tuple[IndexRule, ...] = ()):
        self.rules = rules
        self._warned: set[str] = set()  # index ids that logged an undecodable value already
        # the ids of the rules matching a key -> (field paths, labels wanted?): the union over
        # those rules; a pure function of the ids (an id is the rule's matcher and settings)
        self._settings: dict[tuple[str, ...], tuple[tuple[str, ...], bool]] = {}

    def covering(self, key: bytes) -> list[IndexRule]:
        return [r for r in self.rules if r.matches(key)]

    def _settings_of(self, rules: list[IndexRule]) -> tuple[tuple[str, ...], bool]:
        ids = tuple(r.id for r in rules)
        got = self._settings.get(ids)
        if got is None:
            got = self._settings[ids] = (tuple(sorted({p for r in rules for p in r.fields})),
                                         any(r.labels for r in rules))
        return got

    def rows_for(self, key: bytes, rev: int, sub: int, value: bytes) -> list[tuple]:
        rules = self.covering(key) if self.rules else ()
        if not rules:
            return []
        paths, labels = self._settings_of(rules)
        v = view(key, value, paths)
        if v is None:
            undecodable_total.inc()
            if rules[0].id not in self._warned:
                self._warned.add(rules[0].id)
                log.warning("index %s: the value of %r (revision %d) is not a Kubernetes object; "
                            "stored, not indexed, never matched by queries (logged once per index)",
                            rules[0].description, key[:200], rev)
            return []
        out = [(key, rev, sub, FIELD, encode(p), encode(val)) for p, val in v.fields.items()]
        if labels:
            out += [(key, rev, sub, LABEL, encode(k), encode(val)) for k, val in v.labels.items()]
        return out

    def rows(self, rev: int, events: list[Event]) -> list[tuple]:
        """Rows for the puts of one committed request: event i is its log row (rev, sub=i)."""
        out: list[tuple] = []
        if not self.rules:
            return out
        for sub, ev in enumerate(events):
            if ev.type == Event.PUT:
                kv = ev.kv
                out += self.rows_for(kv.key, rev, sub, kv.value)
        return out
