"""The index answers every query exactly as the scan does (the range at the revision, decoded
and filtered), at every retained revision, on SQLite, PostgreSQL and MariaDB: random objects,
labels, field values, deletions, undecodable values, compaction, random selectors, ranges,
revisions and page sizes. Queries on indexed ranges must come from the index (`indexed`)."""
from __future__ import annotations

import random

import pytest

from harness.shard.index import check_queries, random_history, rules, wait_ready
from harness.shard.kit import run_shard


@pytest.mark.parametrize("seed", [1, 2])
def test_index_equals_the_scan_at_every_revision(store_factory, seed, say):
    async def body(shard):
        rng = random.Random(seed)
        await wait_ready(shard)
        first = (await shard.status()).committed_rev
        await random_history(shard, rng, 250)
        mid = (await shard.status()).committed_rev
        await shard.compact(first + (mid - first) // 3, physical=True)
        await random_history(shard, rng, 150)
        head = (await shard.status()).committed_rev
        indexed, total = await check_queries(shard, rng, 150, shard.state.compact_rev, head)
        say(f"{store_factory.kind} seed {seed}: {total} query pages equal the scan, "
            f"{indexed} from the index, revisions {shard.state.compact_rev}..{head}")
        assert indexed > total // 3
    run_shard(store_factory, body, index_rules=rules())
