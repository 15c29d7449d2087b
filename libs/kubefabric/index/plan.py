"""Queries answered from the index: when a shard may, and the statement that does it.

The index may answer a query on a snapshot when the index rules whose state rows (read in that
snapshot) are ready, and that keep what the requirements read (labels; the field paths other
than metadata.name/namespace), together match every key of the range (rules.covers). Then the
result equals the scan's on every retained revision (see maintain.py for why).
"""
from __future__ import annotations

from kubefabric.etcd.keyrange import KeyRange
from kubefabric.query.requirements import (EQ, EXISTS, IN, LABEL, METADATA_FIELDS, Requirement)
from kubefabric.store.statements import shape_of

from .maintain import read_states
from .rules import covers
from .terms import encode

# the driver: the requirement whose index rows the plan reads first (most selective first)
_DRIVE = {EQ: 0, IN: 1, EXISTS: 2}


async def why_not(cur, rules, rng: KeyRange, reqs: tuple[Requirement, ...]) -> str | None:
    """None when the index may answer the query on snapshot `cur`, else why not (a phrase)."""
    if not rules:
        return "no index rule covers the range"
    labels = any(r.kind == LABEL for r in reqs)
    fields = {r.name for r in reqs if r.kind != LABEL and r.name not in METADATA_FIELDS}
    capable = [r for r in rules if r.provides(labels, fields)]
    if not covers(capable, rng.start, rng.end):
        if covers(list(rules), rng.start, rng.end):
            wanted = (["labels"] if labels else []) + sorted(fields)
            return f"the index of this range does not keep {', '.join(wanted)}"
        return "no index rule covers the range"
    states = await read_states(cur)
    ready = [r for r in capable if (st := states.get(r.id)) is not None and st.ready]
    if not covers(ready, rng.start, rng.end):
        building = [r.description for r in capable if r not in ready]
        return f"index {'; '.join(building)} is still being built"
    return None


def statement(rng: KeyRange, reqs: tuple[Requirement, ...], rev: int, head: int,
              limit: int) -> tuple[str, dict]:
    """(shape, values) of the index_query statement for the query (rows as fetch_rows'),
    at most limit + 1 rows (limit 0: all)."""
    order = sorted(range(len(reqs)), key=lambda i: _DRIVE.get(reqs[i].op, 3))
    tokens, values = [], {"start": rng.start, "end": rng.end, "rev": rev, "limit": limit + 1}
    for pos, i in enumerate(order):
        r = reqs[i]
        vals = list(r.values) if r.op not in (EXISTS, "!exists") else []
        if len(vals) > 1:  # in/notin lists padded to a power of two: fewer distinct statements
            size = 1 << (len(vals) - 1).bit_length()
            vals += [vals[-1]] * (size - len(vals))
        tokens.append(f"{r.kind}{r.op}{len(vals)}")
        values[f"n{pos}"] = encode(r.name)
        for j, v in enumerate(vals):
            values[f"v{pos}_{j}"] = encode(v)
    mode = "head" if rev >= head else "at"
    return f"{shape_of(rng.end)};{mode};{','.join(tokens)}", values
