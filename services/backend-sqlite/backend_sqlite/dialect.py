"""What SQLite does differently: upsert syntax and the lease clock. Everything else is shared in
kubefabric.store.statements."""
from __future__ import annotations

from sqlalchemy.dialects import sqlite

from kubefabric.store.statements import StatementCache, on_conflict_upserts


upsert_kv, upsert_meta, insert_leader = on_conflict_upserts(sqlite.insert)


def statements() -> StatementCache:
    """Lease times are the :now parameter: the host's CLOCK_MONOTONIC in ms (every replica of a
    SQLite file runs on its host; see kubefabric.shard.leadership)."""
    return StatementCache(sqlite.dialect(paramstyle="qmark"), upsert_kv, upsert_meta, insert_leader)
