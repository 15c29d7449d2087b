"""A query answered without the index: read the range at the revision, decode every value,
keep the objects that satisfy the requirements. Also the oracle the index is tested against.

Invariant: the whole scan runs on the one snapshot `cur`, so the result is the store at `rev`
exactly, page after page.
"""
from __future__ import annotations

from kubefabric.etcd.keyrange import KeyRange
from kubefabric.shard.reads import fetch_rows

from .objects import view
from .requirements import Requirement, field_paths, matches

SCAN_PAGE = 512  # rows read per statement (bounds memory; the snapshot spans all pages)


async def scan(cur, rng: KeyRange, rev: int, head: int, reqs: tuple[Requirement, ...],
               limit: int) -> list:
    """Rows (key, create_rev, mod_rev, version, lease, value) of `rng` live at `rev` whose
    values decode and satisfy `reqs`, in key order: all of them, or the first limit + 1."""
    paths = field_paths(reqs)
    out: list = []
    start = rng.start
    while True:
        page = await fetch_rows(cur, KeyRange(start, rng.end), rev, head, SCAN_PAGE)
        for row in page:
            v = view(row[0], row[5], paths)
            if v is not None and matches(reqs, v.labels, v.fields):
                out.append(row)
                if limit and len(out) > limit:
                    return out
        if len(page) < SCAN_PAGE or rng.end is None:
            return out
        start = page[-1][0] + b"\x00"
