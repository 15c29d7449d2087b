"""The topology: shards, ordered routing rules, the default shard (DESIGN §4).

Invariants:
- Routing: rules are tried in file order, the first rule whose `matches(key)` is true names the
  shard; a key no rule matches goes to `default`. `route` is a pure function of the key.
- Every rule knows `bounds()`: intervals containing every key it can match (a superset), and
  whether it is *exact* (it matches every key in those intervals). `key_ranges()` is the
  public view: the bounds of rules whose matchable keys are a union of prefixes, else None.
- `shards_for_range` never leaves out the shard of a key inside the range (it may include
  shards conservatively when a rule is not exact), and includes `default` unless every key of
  the range is provably matched by some rule.
All objects are immutable; a reload builds a new Topology.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from .keys import (REGISTRY, Interval, common_prefix, covered, intersect, namespaced_parts,
                   prefix_interval, storage_path, subtract)

NONE, SOME, ALL = 0, 1, 2  # how much of an interval a rule matches (SOME: maybe some keys)


@dataclass(frozen=True)
class TLSSpec:
    """TLS for the router -> shard hop. ca_file None: system trust roots; cert/key: client cert."""
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None


@dataclass(frozen=True)
class ShardSpec:
    name: str
    endpoint: str  # "embedded" or "grpc://host:port[,grpc://host:port...]" (validated by load)
    tls: TLSSpec | None = None
    compaction_interval: float | None = None  # seconds; None = router default
    compaction_retention: str | None = None   # etcd --auto-compaction-retention syntax
    line: int = field(default=0, compare=False)

    @property
    def embedded(self) -> bool:
        return self.endpoint == "embedded"

    @property
    def addresses(self) -> tuple[str, ...]:
        """The host:port of each replica (empty for the embedded shard)."""
        if self.embedded:
            return ()
        return tuple(e.strip()[len("grpc://"):] for e in self.endpoint.split(","))


@dataclass(frozen=True)
class IndexSpec:
    """A rule's `index:` setting: the shard keeps label rows (labels) and rows for the field
    paths `fields` (besides metadata.name and metadata.namespace, always kept) of the objects
    the rule matches, so queries with those requirements are answered by SQL (kubefabric.index)."""
    labels: bool = False
    fields: tuple[str, ...] = ()  # sorted, distinct

    def summary(self) -> str:
        parts = (["labels"] if self.labels else []) + list(self.fields)
        return ", ".join(parts) or "metadata only"


# ---------------------------------------------------------------------------------------------
# rules

@dataclass(frozen=True, kw_only=True)
class Rule:
    """One routing rule. Equality ignores `line` (reload compares rules across file edits) and
    `index` (indexing does not move keys: it may be added, changed or removed on reload)."""
    kind: ClassVar[str] = ""
    shard: str
    line: int = field(default=0, compare=False)
    index: IndexSpec | None = field(default=None, compare=False)

    def matches(self, key: bytes) -> bool:
        raise NotImplementedError

    def bounds(self) -> tuple[list[Interval], bool]:
        """(intervals containing every key this rule can match, exact)."""
        raise NotImplementedError

    def key_ranges(self) -> list[Interval] | None:
        ranges, exact = self.bounds()
        return list(ranges) if exact else None

    def classify(self, start: bytes, end: bytes) -> int:
        """NONE: matches no key of the nonempty interval [start, end); ALL: every key;
        SOME: maybe some (conservative)."""
        ranges, exact = self.bounds()
        if not any(intersect((start, end), r) for r in ranges):
            return NONE
        if exact and covered([(start, end)], ranges):
            return ALL
        return SOME

    def summary(self) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        return f"rule at line {self.line} ({self.summary()})"


def show(key: bytes) -> str:
    """Printable form of a key: ASCII as is, backslash doubled, other bytes as \\xNN."""
    out = []
    for b in key:
        if b == 0x5C:
            out.append("\\\\")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


@dataclass(frozen=True, kw_only=True)
class PrefixRule(Rule):
    kind: ClassVar[str] = "prefix"
    prefix: bytes

    def matches(self, key: bytes) -> bool:
        return key.startswith(self.prefix)

    def bounds(self):
        return [prefix_interval(self.prefix)], True

    def summary(self) -> str:
        return f"prefix {show(self.prefix)}"


@dataclass(frozen=True, kw_only=True)
class RegexpRule(Rule):
    """`pattern` (bytes) must match the WHOLE key (re.fullmatch, DOTALL: `.` is any byte)."""
    kind: ClassVar[str] = "regexp"
    pattern: bytes
    _re: re.Pattern = field(init=False, compare=False, repr=False)
    _bounds: tuple = field(init=False, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "_re", re.compile(self.pattern, re.DOTALL))
        literal, exact = literal_prefix(self.pattern)
        object.__setattr__(self, "_bounds", ([prefix_interval(literal)], exact))

    def matches(self, key: bytes) -> bool:
        return self._re.fullmatch(key) is not None

    def bounds(self):
        return self._bounds

    def key_ranges(self):
        return None  # by contract; bounds() still narrows range routing to the literal prefix

    def summary(self) -> str:
        return f"regexp {show(self.pattern)}"


def literal_prefix(pattern: bytes) -> tuple[bytes, bool]:
    """(bytes every full match starts with, whether the pattern is exactly that + `.*`).

    Uses the stdlib regex parser; any surprise answers (b"", False), which is always safe.
    """
    try:
        from re import _constants as c, _parser as p  # private: a Python without them answers safely
        parsed = p.parse(pattern, re.DOTALL)
        if parsed.state.flags & (re.IGNORECASE | re.VERBOSE):
            return b"", False
        items = list(parsed)
        out = bytearray()
        i = 0
        while i < len(items) and items[i] in ((c.AT, c.AT_BEGINNING), (c.AT, c.AT_BEGINNING_STRING)):
            i += 1
        while i < len(items) and items[i][0] is c.LITERAL:
            out.append(items[i][1])
            i += 1
        rest = items[i:]
        while rest and rest[-1] in ((c.AT, c.AT_END), (c.AT, c.AT_END_STRING)):
            rest.pop()
        exact = (len(rest) == 1 and rest[0][0] in (c.MAX_REPEAT, c.MIN_REPEAT)
                 and rest[0][1][0] == 0 and rest[0][1][1] == c.MAXREPEAT
                 and list(rest[0][1][2]) == [(c.ANY, None)])
        return bytes(out), exact
    except Exception:  # noqa: BLE001 - private stdlib API: fall back to "could be anything"
        return b"", False


@dataclass(frozen=True, kw_only=True)
class NamespaceRule(Rule):
    """Namespaced objects of `namespace` (keys.namespaced_parts), all resources or only
    `resources` (names as written; mapped by keys.storage_path). Cluster-scoped keys never match.
    With resources the rule is exactly a union of prefixes /registry/<path>/<namespace>/."""
    kind: ClassVar[str] = "namespace"
    namespace: str
    resources: tuple[str, ...] | None = None
    _prefixes: tuple[bytes, ...] = field(init=False, compare=False, repr=False)
    _ns: bytes = field(init=False, compare=False, repr=False)

    def __post_init__(self):
        prefixes = []
        for r in self.resources or ():
            path, err = storage_path(r)
            if err:
                raise ValueError(err)
            prefixes.append(REGISTRY + f"{path}/{self.namespace}/".encode())
        object.__setattr__(self, "_prefixes", tuple(prefixes))
        object.__setattr__(self, "_ns", self.namespace.encode())

    def matches(self, key: bytes) -> bool:
        if self.resources is not None:
            return key.startswith(self._prefixes)
        parts = namespaced_parts(key)
        return parts is not None and parts[1] == self._ns

    def bounds(self):
        if self.resources is not None:
            return [prefix_interval(p) for p in self._prefixes], True
        return [prefix_interval(REGISTRY)], False

    def classify(self, start: bytes, end: bytes) -> int:
        if self.resources is not None:
            return super().classify(start, end)
        if intersect((start, end), prefix_interval(REGISTRY)) is None:
            return NONE
        # Every key of the interval starts with p; if p already fixes resource and namespace,
        # all keys get the same answer (namespaced_parts' invariant).
        parts = namespaced_parts(common_prefix(start, end))
        if parts is None:
            return SOME
        return ALL if parts[1] == self._ns else NONE

    def summary(self) -> str:
        if self.resources is None:
            return f"namespace {self.namespace}, all resources"
        return f"namespace {self.namespace}, resources {', '.join(self.resources)}"


@dataclass(frozen=True, kw_only=True)
class CustomResourceRule(Rule):
    """Keys under /registry/<group>/<resource>/ (or /registry/<group>/ without resource)."""
    kind: ClassVar[str] = "customresource"
    group: str
    resource: str | None = None

    @property
    def prefix(self) -> bytes:
        tail = f"{self.group}/{self.resource}/" if self.resource else f"{self.group}/"
        return REGISTRY + tail.encode()

    def matches(self, key: bytes) -> bool:
        return key.startswith(self.prefix)

    def bounds(self):
        return [prefix_interval(self.prefix)], True

    def summary(self) -> str:
        if self.resource:
            return f"customresource {self.resource}.{self.group}"
        return f"customresource group {self.group}"


def unreachable(rules: tuple[Rule, ...] | list[Rule]) -> list[tuple[Rule, list[Rule]]]:
    """Rules every key of which an earlier exact rule already matches, with those rules."""
    out = []
    for i, rule in enumerate(rules):
        ranges, _ = rule.bounds()
        earlier = [r for r in rules[:i] if r.bounds()[1]]
        cover = [iv for r in earlier for iv in r.bounds()[0]]
        if covered(ranges, cover):
            used = [r for r in earlier
                    if any(intersect(a, b) for a in ranges for b in r.bounds()[0])]
            out.append((rule, used))
    return out


# ---------------------------------------------------------------------------------------------
# topology

_CACHE_MAX = 4096


@dataclass(frozen=True)
class Topology:
    shards: dict[str, ShardSpec]  # in file order
    rules: tuple[Rule, ...]       # in file order
    default: str
    source: str = "<topology>"
    warnings: tuple[str, ...] = ()
    default_line: int = field(default=0, compare=False)
    _cache: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self):
        names = set(self.shards)
        if self.default not in names:
            raise ValueError(f"default shard {self.default!r} is not a shard")
        for r in self.rules:
            if r.shard not in names:
                raise ValueError(f"{r.describe()} names unknown shard {r.shard!r}")

    def route(self, key: bytes) -> str:
        for rule in self.rules:
            if rule.matches(key):
                return rule.shard
        return self.default

    def explain(self, key: bytes) -> tuple[str, Rule | None]:
        for rule in self.rules:
            if rule.matches(key):
                return rule.shard, rule
        return self.default, None

    def shards_for_range(self, start: bytes, end: bytes | None) -> list[str]:
        """Shards (file order) that may own a key of the range; never empty.

        end None: the single key `start`; end b"": every key >= start; else [start, end).
        An empty range ([start, end) with start >= end) answers [route(start)], so the router
        can forward it to one shard that returns the empty result with its header.
        """
        if end is None or (end != b"" and start >= end):
            return [self.route(start)]
        cached = self._cache.get((start, end))
        if cached is not None:
            return list(cached)
        # Invariant of the loop: `remaining` holds every key of the range no earlier rule
        # matches for sure; a key first matched by rule R is in `remaining` when R is visited.
        remaining: list[Interval] = [(start, end)]
        found: set[str] = set()
        for rule in self.rules:
            ranges, exact = rule.bounds()
            if exact:
                if any(intersect(iv, r) for iv in remaining for r in ranges):
                    found.add(rule.shard)
                    for r in ranges:
                        remaining = subtract(remaining, r)
            else:
                kept = []
                for iv in remaining:
                    how = rule.classify(*iv)
                    if how != NONE:
                        found.add(rule.shard)
                    if how != ALL:
                        kept.append(iv)
                remaining = kept
            if not remaining:
                break
        if remaining:
            found.add(self.default)
        result = tuple(n for n in self.shards if n in found)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[(start, end)] = result
        return list(result)
