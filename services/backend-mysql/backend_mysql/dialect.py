"""What MySQL / MariaDB do differently: upsert syntax and DDL table options. Every other
statement is shared in kubefabric.store.statements.

- Upserts use INSERT … ON DUPLICATE KEY UPDATE col = VALUES(col). VALUES() works on MariaDB
  (which has no `AS new` row alias) and on MySQL 8 (deprecated there since 8.0.20, still valid),
  so one text serves both. SQLAlchemy picks the row-alias form only for a dialect that knows it
  talks to MySQL >= 8.0.20; ours is never connected, so it renders VALUES().
- paramstyle "format" (%s) is what aiomysql/PyMySQL interpolate client-side, escaping every
  value; `Compiled.args` lists the values in SQLAlchemy's positiontup order, which is the order
  of the %s markers (LIMIT included: `LIMIT %s` becomes `LIMIT 10000`).
"""
from __future__ import annotations

import re

from sqlalchemy import BigInteger, bindparam, literal_column
from sqlalchemy.dialects import mysql
from sqlalchemy.schema import CreateIndex, CreateTable

from kubefabric.store import schema
from kubefabric.store.schema import kv, leader, meta
from kubefabric.store.statements import (UPDATED_KV_COLUMNS, StatementCache, kv_upsert_values,
                                         leader_row_values)

# DYNAMIC is the row format whose indexes hold 3072 bytes (COMPACT/REDUNDANT: 767)
TABLE_OPTIONS = " ENGINE=InnoDB ROW_FORMAT=DYNAMIC"


def upsert_kv(shape: str = "", limited: bool = False):
    stmt = mysql.insert(kv).values(kv_upsert_values())
    return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in UPDATED_KV_COLUMNS})


def upsert_meta(shape: str = "", limited: bool = False):
    stmt = mysql.insert(meta).values(name=bindparam("name"), value=bindparam("value"))
    return stmt.on_duplicate_key_update(value=stmt.inserted.value)


def dialect() -> mysql.base.MySQLDialect:
    return mysql.dialect(paramstyle="format")


def insert_leader(shape: str = "", limited: bool = False):
    stmt = mysql.insert(leader).values(leader_row_values())
    return stmt.on_duplicate_key_update(id=stmt.inserted.id)  # exists: nothing changes


def now_ms():
    """The server's clock in ms (UTC_TIMESTAMP: independent of the session's time zone)."""
    return literal_column("(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) DIV 1000)",
                          BigInteger)


def statements() -> StatementCache:
    return StatementCache(dialect(), upsert_kv, upsert_meta, insert_leader, now_ms)


def tables_ddl() -> dict[str, list[str]]:
    """Per table: CREATE TABLE (InnoDB, DYNAMIC) followed by its CREATE INDEX statements.
    No IF NOT EXISTS on indexes (MySQL 8 has none): run a table's list only when it is missing."""
    d = dialect()
    out = {}
    for table in schema.metadata.sorted_tables:
        create = str(CreateTable(table).compile(dialect=d)).rstrip() + TABLE_OPTIONS
        # the PRIMARY KEY is always named PRIMARY: a constraint name only draws a warning
        create = re.sub(r"CONSTRAINT \w+ PRIMARY KEY", "PRIMARY KEY", create)
        out[table.name] = [create] + [str(CreateIndex(i).compile(dialect=d)) for i in table.indexes]
    return out
