"""What PostgreSQL does differently: upsert syntax, the clock and the driver's parameter style.

Everything else is shared in kubefabric.store.statements. Statements are compiled with
SQLAlchemy's asyncpg dialect in the "numeric_dollar" paramstyle: `$1, $2, …`, one number per
distinct parameter name (a name used twice, like :rev in at_rows, is the same `$n` both times),
and `Compiled.params` lists the names in number order, so `Compiled.args(values)` is exactly
the positional argument tuple asyncpg expects. The dialect also renders bind casts (`$1::BYTEA`,
`$2::BIGINT`), so every prepared statement has fixed parameter types.
"""
from __future__ import annotations

from sqlalchemy import BigInteger, literal_column
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

from kubefabric.store.statements import StatementCache, on_conflict_upserts

PARAMSTYLE = "numeric_dollar"


upsert_kv, upsert_meta, insert_leader = on_conflict_upserts(postgresql.insert)


def now_ms():
    """The server's clock in ms as the statement runs (clock_timestamp(): not the transaction's
    start, and re-read when an UPDATE re-checks a row another transaction just changed)."""
    return literal_column("CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)", BigInteger)


def statements() -> StatementCache:
    return StatementCache(PGDialect_asyncpg(paramstyle=PARAMSTYLE), upsert_kv, upsert_meta,
                          insert_leader, now_ms)
