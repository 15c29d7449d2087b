"""May a running router switch from topology `old` to `new`? (DESIGN §4: rules may only be appended.)

Two steps, both must pass before the router swaps topologies:
1. `check_reload(old, new)`: what can be refused without looking at data. The old rules must be
   an unchanged prefix of the new rules (compared without line numbers, so editing comments or
   adding shards above them is fine); no shard removed, no endpoint changed; same default.
   TLS and compaction settings may change; shards may be added.
2. `await find_moved_key(old, new, list_keys)`: given 1, a key can only change shard if no old
   rule matched it (so it lives on the old default shard) and an appended rule now sends it
   elsewhere. So only the default shard is scanned, and only inside the bounds of the appended
   rules that name another shard. Any key found there whose route differs is returned.
"""
from __future__ import annotations

from typing import AsyncIterator, Callable

from .keys import merge
from .load import TopologyError
from .model import Rule, Topology

ListKeys = Callable[[str, bytes, bytes], AsyncIterator[bytes]]


def _rule(rule: Rule) -> str:
    return f"{rule.summary()} -> {rule.shard}"


def check_reload(old: Topology, new: Topology) -> None:
    problems: list[str] = []
    if new.default != old.default:
        problems.append(f"{new.source}:{new.default_line or 1}: default changed from "
                        f"{old.default!r} to {new.default!r}: keys no rule matches would move")
    for name, spec in old.shards.items():
        now = new.shards.get(name)
        if now is None:
            problems.append(f"{old.source}:{spec.line}: shard {name!r} was removed: its keys "
                            f"would be stranded (shards may be added, not removed)")
        elif now.endpoint != spec.endpoint:
            problems.append(f"{new.source}:{now.line}: shard {name!r} endpoint changed from "
                            f"{spec.endpoint} to {now.endpoint}: its keys live at the old one "
                            f"(TLS and compaction settings may change, the endpoint may not)")
    problems.extend(_rule_problems(old, new))
    if problems:
        raise TopologyError(problems)


def _rule_problems(old: Topology, new: Topology) -> list[str]:
    """At most one problem: the first position where the old rules stop being a prefix."""
    hint = "existing rules may not change; new rules go after the last existing one"
    for i, o in enumerate(old.rules):
        if i >= len(new.rules):
            gone = "; ".join(f"line {r.line}: {_rule(r)}" for r in old.rules[i:])
            return [f"{old.source}:{o.line}: {len(old.rules) - i} rule(s) removed ({gone}): "
                    f"{hint}"]
        n = new.rules[i]
        if n == o:
            continue
        if n in old.rules:
            return [f"{new.source}:{n.line}: rules were reordered or removed: rule #{i + 1} is "
                    f"now {_rule(n)}, was {_rule(o)} ({old.source}:{o.line}): {hint}"]
        if o in new.rules[i + 1:]:
            return [f"{new.source}:{n.line}: rule {_rule(n)} was inserted before the existing "
                    f"rule {_rule(o)} ({old.source}:{o.line}): {hint}"]
        return [f"{new.source}:{n.line}: rule #{i + 1} changed: now {_rule(n)}, was {_rule(o)} "
                f"({old.source}:{o.line}): {hint}"]
    return []


def scan_ranges(old: Topology, new: Topology) -> list[tuple[bytes, bytes]]:
    """The intervals of the old default shard where a key could change shard (given step 1)."""
    movers = [r for r in new.rules[len(old.rules):] if r.shard != old.default]
    return merge([iv for r in movers for iv in r.bounds()[0]])


async def find_moved_key(old: Topology, new: Topology,
                         list_keys: ListKeys) -> tuple[bytes, str, str] | None:
    """The first existing key (in key order) whose shard differs between old and new, else None.

    Calls check_reload first (raises TopologyError when the change is refused without data).
    """
    check_reload(old, new)
    for start, end in scan_ranges(old, new):
        keys = list_keys(old.default, start, end)
        try:
            async for key in keys:
                before, after = old.route(key), new.route(key)
                if before != after:
                    return key, before, after
        finally:
            aclose = getattr(keys, "aclose", None)
            if aclose is not None:
                await aclose()
    return None
