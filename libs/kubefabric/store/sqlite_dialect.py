"""What SQLite does differently: upsert syntax. Everything else is shared in statements.py."""
from __future__ import annotations

from sqlalchemy import bindparam
from sqlalchemy.dialects import sqlite

from .schema import kv, meta
from .statements import UPDATED_KV_COLUMNS, StatementCache, kv_upsert_values


def upsert_kv(shape: str = "", limited: bool = False):
    stmt = sqlite.insert(kv).values(kv_upsert_values())
    return stmt.on_conflict_do_update(index_elements=[kv.c.key],
                                      set_={c: stmt.excluded[c] for c in UPDATED_KV_COLUMNS})


def upsert_meta(shape: str = "", limited: bool = False):
    stmt = sqlite.insert(meta).values(name=bindparam("name"), value=bindparam("value"))
    return stmt.on_conflict_do_update(index_elements=[meta.c.name], set_={"value": stmt.excluded.value})


def statements() -> StatementCache:
    return StatementCache(sqlite.dialect(paramstyle="qmark"), upsert_kv, upsert_meta)
