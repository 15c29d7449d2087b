"""Misplaced keys: keys a shard holds that its topology routes to another shard.

They appear when a shard that served alone (or under other rules) is put behind a topology,
or when a router with older rules writes after another reloaded. A routed read must never show
them (routing reads filter by ownership: kv-router's crossrange, the merged watch feed and
history), and they must be found and reported: `scan` walks one shard, `Placement` keeps what
the router knows of each shard, `topology check --live` lists them and `topology move` moves
them (docs/topology.md#misplaced-keys).

Invariants:
- `owned(topology, name)` lists intervals every key of which routes to `name` (a subset of
  what it owns: rules that are not exact leave their bounds out). A key on shard `name` outside
  them may be misplaced; inside them it cannot be. So a scan of `suspect()` intervals, with each
  key checked by `topology.route`, finds every misplaced key, and only those.
- A scan examines at most `budget` keys per shard (the suspect intervals of prefix-like rules
  hold only misplaced keys, so that is a bound on misplaced keys; regexp and all-resources
  namespace rules make whole regions suspect, where legitimate keys are examined too). A scan
  that stopped early says so (`complete` False).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

from .keys import Interval, intersect, merge, subtract

PAGE = 1000
SCAN_BUDGET = 100_000   # keys examined per shard by a start-up or reload scan
SAMPLE = 10             # misplaced keys named in a log line


def owned(topology, name: str) -> list[Interval]:
    """Intervals every key of which routes to shard `name` (sorted, disjoint)."""
    cached = topology._cache.get(("owned", name))
    if cached is not None:
        return list(cached)
    remaining: list[Interval] = [(b"", b"")]  # keys no earlier rule may match
    out: list[Interval] = []
    for rule in topology.rules:
        ranges, exact = rule.bounds()
        for r in ranges:
            if exact and rule.shard == name:
                out.extend(iv for iv in (intersect(x, r) for x in remaining) if iv)
            remaining = subtract(remaining, r)  # matched (exact) or maybe matched: not provable
        if not remaining:
            break
    if topology.default == name:
        out.extend(remaining)
    result = tuple(merge(out))
    topology._cache[("owned", name)] = result
    return list(result)


def suspect(topology, name: str, start: bytes = b"", end: bytes = b"") -> list[Interval]:
    """The parts of [start, end) (end b"": unbounded) where shard `name` may hold misplaced keys."""
    rest: list[Interval] = [(start, end)]
    for iv in owned(topology, name):
        rest = subtract(rest, iv)
    return rest


@dataclass
class Scan:
    misplaced: list[tuple[bytes, str]] = field(default_factory=list)  # (key, owner), key order
    examined: int = 0
    complete: bool = True


async def scan(shard, name: str, topology, start: bytes = b"", end: bytes = b"",
               revision: int = 0, budget: int | None = SCAN_BUDGET) -> Scan:
    """The misplaced keys of `shard` (named `name` in `topology`) in [start, end), at `revision`
    (0: the latest), examining at most `budget` keys (None: no limit)."""
    out = Scan()
    for lo, hi in suspect(topology, name, start, end):
        key = lo or b"\x00"  # etcd has no empty key: \x00 is the first one
        range_end = hi or b"\x00"  # etcd's "every key from `key` on"
        while True:
            if budget is not None and out.examined >= budget:
                out.complete = False
                return out
            limit = PAGE if budget is None else min(PAGE, budget - out.examined)
            resp = await shard.range(pb.RangeRequest(key=key, range_end=range_end, keys_only=True,
                                                     limit=limit, revision=revision))
            for kv in resp.kvs:
                owner = topology.route(kv.key)
                if owner != name:
                    out.misplaced.append((kv.key, owner))
            out.examined += len(resp.kvs)
            if not resp.more or not resp.kvs:
                break
            key = resp.kvs[-1].key + b"\x00"
    return out


class Placement:
    """What a router knows of one shard's misplaced keys. `clean` only after a complete scan
    found none (and no read met one since): until then reads of that shard take the careful
    path (kv_router/crossrange.py)."""

    def __init__(self):
        self.clean = False
        self.found = 0        # misplaced keys the last scan (or a read) found
        self.complete = False  # the last scan examined every suspect key

    def scanned(self, result: Scan) -> None:
        self.found = len(result.misplaced)
        self.complete = result.complete
        self.clean = result.complete and not result.misplaced

    def met(self) -> None:
        """A read met a misplaced key of this shard."""
        self.clean = False
        self.found = max(self.found, 1)
