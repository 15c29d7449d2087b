"""A query's label and field requirements: checked once, then matched against decoded objects.

Semantics (Kubernetes label and field selectors; see proto/kubefabric/query/v1/query.proto):
requirements are ANDed; `!=`, `notin` and `!exists` also match objects without the label; a
field's value is a string ("" when the field is missing or not a scalar). The same `Requirement`
list drives both evaluations of a query: `matches` here (the scan, and the oracle of the
differential tests) and the SQL plans of the index (kubefabric.store.index_statements), which
must agree with it on every object.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from grpc import StatusCode

from kubefabric.etcd.errors import EtcdError
from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb

LABEL, FIELD = 1, 2  # what a requirement reads (also the `kind` column of the index rows)
EQ, NE, IN, NOTIN, EXISTS, NOT_EXISTS = "=", "!=", "in", "notin", "exists", "!exists"
POSITIVE = (EQ, IN, EXISTS)  # matched only by objects that have an index row for them

NAME_FIELD, NAMESPACE_FIELD = "metadata.name", "metadata.namespace"
METADATA_FIELDS = (NAME_FIELD, NAMESPACE_FIELD)  # always in the index

_LABEL_OPS = {
    qpb.LabelRequirement.EQUALS: EQ, qpb.LabelRequirement.NOT_EQUALS: NE,
    qpb.LabelRequirement.IN: IN, qpb.LabelRequirement.NOT_IN: NOTIN,
    qpb.LabelRequirement.EXISTS: EXISTS, qpb.LabelRequirement.DOES_NOT_EXIST: NOT_EXISTS,
}
_FIELD_OPS = {qpb.FieldRequirement.EQUALS: EQ, qpb.FieldRequirement.NOT_EQUALS: NE}

# Kubernetes' label syntax (apimachinery validation): a name part of at most 63 characters,
# optionally after a DNS-subdomain prefix and "/"; values are empty or like a name part.
_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
# a declared field path: dot-separated JSON member names
FIELD_PATH = re.compile(r"[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*\Z")
MAX_FIELD_PATH = 256
MAX_VALUES = 1024  # values of one in/notin requirement


@dataclass(frozen=True)
class Requirement:
    kind: int                # LABEL or FIELD
    name: str                # the label key or the field path
    op: str                  # EQ, NE, IN, NOTIN, EXISTS, NOT_EXISTS
    values: tuple[str, ...]  # sorted, distinct

    def holds(self, present: bool, value: str) -> bool:
        """Whether an object whose label/field is `value` (present or not) satisfies this."""
        op = self.op
        if op == EQ:
            return present and value == self.values[0]
        if op == NE:
            return not present or value != self.values[0]
        if op == IN:
            return present and value in self.values
        if op == NOTIN:
            return not present or value not in self.values
        if op == EXISTS:
            return present
        return not present

    def __str__(self) -> str:
        if self.op in (EXISTS, NOT_EXISTS):
            return f"{'!' if self.op == NOT_EXISTS else ''}{self.name}"
        if self.op in (IN, NOTIN):
            return f"{self.name} {self.op} ({','.join(self.values)})"
        return f"{self.name}{self.op}{self.values[0]}"


def _bad(message: str) -> EtcdError:
    return EtcdError(StatusCode.INVALID_ARGUMENT, f"kubefabric: {message}")


def check_label_key(key: str) -> str | None:
    """Why `key` is not a Kubernetes label key, or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _SUBDOMAIN.match(prefix)):
        return f"label key {key!r}: the prefix before '/' must be a DNS subdomain (at most 253)"
    if not name or len(name) > 63 or not _NAME.match(name):
        return (f"label key {key!r}: the name must be 1-63 characters, letters, digits, '-', '_' "
                f"and '.', starting and ending with a letter or digit")
    return None


def check_label_value(value: str) -> str | None:
    if value and (len(value) > 63 or not _NAME.match(value)):
        return (f"label value {value!r}: at most 63 characters, letters, digits, '-', '_' and "
                f"'.', starting and ending with a letter or digit (or empty)")
    return None


def _label(i: int, r: qpb.LabelRequirement) -> Requirement:
    op = _LABEL_OPS.get(r.operator)
    if op is None:
        raise _bad(f"label requirement {i + 1} ({r.key!r}) has no operator")
    if (problem := check_label_key(r.key)) is not None:
        raise _bad(f"label requirement {i + 1}: {problem}")
    values = tuple(r.values)
    want = {EQ: "exactly one value", NE: "exactly one value", IN: "at least one value",
            NOTIN: "at least one value", EXISTS: "no values", NOT_EXISTS: "no values"}[op]
    ok = (len(values) == 1 if op in (EQ, NE) else
          0 < len(values) <= MAX_VALUES if op in (IN, NOTIN) else not values)
    if not ok:
        raise _bad(f"label requirement {i + 1} ({r.key} {op}) takes {want}, got {len(values)}"
                   + (f" (at most {MAX_VALUES})" if len(values) > MAX_VALUES else ""))
    for v in values:
        if (problem := check_label_value(v)) is not None:
            raise _bad(f"label requirement {i + 1} ({r.key}): {problem}")
    return Requirement(LABEL, r.key, op, tuple(sorted(set(values))))


def _field(i: int, r: qpb.FieldRequirement) -> Requirement:
    op = _FIELD_OPS.get(r.operator)
    if op is None:
        raise _bad(f"field requirement {i + 1} ({r.path!r}) has no operator")
    if not FIELD_PATH.match(r.path) or len(r.path) > MAX_FIELD_PATH:
        raise _bad(f"field requirement {i + 1}: {r.path!r} is not a field path like spec.customer")
    return Requirement(FIELD, r.path, op, (r.value,))


def parse(req: qpb.QueryRequest) -> tuple[Requirement, ...]:
    """The request's requirements, checked. Raises EtcdError(INVALID_ARGUMENT) with a
    sentence. Any field path is accepted; the index answers only metadata.name,
    metadata.namespace and the paths its topology rule declares (others are scanned)."""
    if not req.key:
        raise _bad("a query needs a key (the start of its range)")
    if req.limit < 0:
        raise _bad(f"limit must not be negative, got {req.limit}")
    out = [_label(i, r) for i, r in enumerate(req.labels)]
    out += [_field(i, r) for i, r in enumerate(req.fields)]
    return tuple(out)


def field_paths(reqs: tuple[Requirement, ...]) -> set[str]:
    return {r.name for r in reqs if r.kind == FIELD}


def matches(reqs: tuple[Requirement, ...], labels: dict[str, str], fields: dict[str, str]) -> bool:
    """Whether a decoded object (its labels and field values) satisfies every requirement.
    A field absent from `fields` reads as "" (present: fields always have a value)."""
    for r in reqs:
        if r.kind == LABEL:
            value = labels.get(r.name)
            if not r.holds(value is not None, value or ""):
                return False
        elif not r.holds(True, fields.get(r.name, "")):
            return False
    return True
