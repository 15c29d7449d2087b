"""What SQLite does differently: upsert syntax and the lease clock. Everything else is shared in
kubefabric.store.statements."""
from __future__ import annotations

from sqlalchemy import bindparam
from sqlalchemy.dialects import sqlite

from kubefabric.store.schema import kv, leader, meta
from kubefabric.store.statements import (UPDATED_KV_COLUMNS, StatementCache, kv_upsert_values,
                                         leader_row_values)


def upsert_kv(shape: str = "", limited: bool = False):
    stmt = sqlite.insert(kv).values(kv_upsert_values())
    return stmt.on_conflict_do_update(index_elements=[kv.c.key],
                                      set_={c: stmt.excluded[c] for c in UPDATED_KV_COLUMNS})


def upsert_meta(shape: str = "", limited: bool = False):
    stmt = sqlite.insert(meta).values(name=bindparam("name"), value=bindparam("value"))
    return stmt.on_conflict_do_update(index_elements=[meta.c.name], set_={"value": stmt.excluded.value})


def insert_leader(shape: str = "", limited: bool = False):
    return sqlite.insert(leader).values(leader_row_values()).on_conflict_do_nothing()


def statements() -> StatementCache:
    """Lease times are the :now parameter: the host's CLOCK_MONOTONIC in ms (every replica of a
    SQLite file runs on its host; see kubefabric.shard.leadership)."""
    return StatementCache(sqlite.dialect(paramstyle="qmark"), upsert_kv, upsert_meta, insert_leader)
