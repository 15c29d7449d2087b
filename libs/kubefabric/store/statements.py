"""Every SQL statement of a shard, written once in SQLAlchemy Core and compiled per dialect.

Statements are compiled once per (dialect, name, shape) and cached as plain SQL with bound
parameters in positional order, so hot paths run prepared/cached text through the raw driver
(sqlite3, asyncpg, aiomysql) with no SQLAlchemy work per request. Nothing here concatenates
user data into SQL: every value is a bound parameter.

Key-range shapes (see kubefabric.etcd.keyrange): "single" (key = :start), "bounded"
(:start <= key < :end) and "unbounded" (key >= :start).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

from sqlalchemy import BigInteger, and_, bindparam, delete, exists, func, insert, literal_column, select, update
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from . import index_statements, schema
from .keyshape import key_cond, shape_of
from .schema import auth, kv, leader, leases, log, meta

ROW_COLUMNS = ("key", "create_rev", "mod_rev", "version", "lease")


class Compiled(NamedTuple):
    sql: str
    params: tuple[str, ...]    # bound parameter names in positional order
    constants: dict[str, object]  # values of the parameters SQLAlchemy made from literals

    def args(self, values: dict | tuple) -> tuple:
        """Positional arguments for the driver, from named values (a tuple: already positional,
        in `params` order; the index rows of the writer)."""
        if isinstance(values, tuple):
            return values
        consts = self.constants
        return tuple(values[n] if n in values else consts[n] for n in self.params)


def _limited(stmt, limited: bool):
    return stmt.limit(bindparam("limit")) if limited else stmt


# ---- reads at the newest revision (kv) ----

def _kv_with_value():
    """kv rows with each key's current value, read from the log row holding it.

    The value is a correlated subquery, not a join, so that every database walks kv in key
    order and stops at the limit, looking one log row up per key: with a join PostgreSQL
    misjudged how many rows match and sorted the whole range for each page (a page of 500 out
    of 500,000 keys took ~1 s instead of milliseconds)."""
    value = (select(log.c.value)
             .where(log.c.key == kv.c.key, log.c.rev == kv.c.mod_rev, log.c.deleted == 0)
             .order_by(log.c.sub.desc()).limit(1).scalar_subquery())
    return select(kv.c.key, kv.c.create_rev, kv.c.mod_rev, kv.c.version, kv.c.lease, value)


def latest_rows(shape: str, limited: bool):
    stmt = _kv_with_value().where(key_cond(kv.c.key, shape)).order_by(kv.c.key)
    return _limited(stmt, limited)


def latest_count(shape: str, limited: bool = False):
    return select(func.count()).select_from(kv).where(key_cond(kv.c.key, shape))


# ---- reads at an older revision (log): per key the newest row with rev <= :rev, if live ----

def _after(newer, l):
    """newer is a later change than l (of the same key)."""
    return (newer.c.rev > l.c.rev) | and_(newer.c.rev == l.c.rev, newer.c.sub > l.c.sub)


def _live_at(l):
    newer = log.alias("newer")
    superseded = exists().where(and_(newer.c.key == l.c.key, _after(newer, l),
                                     newer.c.rev <= bindparam("rev")))
    return and_(l.c.rev <= bindparam("rev"), l.c.deleted == 0, ~superseded)


def at_rows(shape: str, limited: bool):
    l = log.alias("l")
    stmt = (select(l.c.key, l.c.create_rev, l.c.rev, l.c.version, l.c.lease, l.c.value)
            .where(key_cond(l.c.key, shape), _live_at(l)).order_by(l.c.key))
    return _limited(stmt, limited)


def at_count(shape: str, limited: bool = False):
    l = log.alias("l")
    return select(func.count()).select_from(l).where(key_cond(l.c.key, shape), _live_at(l))


def max_rev(shape: str = "", limited: bool = False):
    return select(func.max(log.c.rev))


# ---- history: committed changes with their previous versions ----

def history(shape: str, limited: bool):
    l, p = log.alias("l"), log.alias("p")
    joined = l.outerjoin(p, and_(p.c.key == l.c.key, p.c.rev == l.c.prev_rev, p.c.deleted == 0))
    stmt = (select(l.c.rev, l.c.key, l.c.create_rev, l.c.prev_rev, l.c.version, l.c.lease,
                   l.c.deleted, l.c.value, p.c.create_rev, p.c.version, p.c.lease, p.c.value)
            .select_from(joined)
            .where(l.c.rev >= bindparam("lo"), l.c.rev <= bindparam("hi"), key_cond(l.c.key, shape))
            .order_by(l.c.rev, l.c.sub))
    return _limited(stmt, limited)


# ---- writes ----

def insert_log(shape: str = "", limited: bool = False):
    return insert(log).values({c: bindparam(c) for c in
                               ("key", "rev", "sub", "create_rev", "prev_rev", "version",
                                "lease", "deleted", "value")})


def delete_kv(shape: str = "", limited: bool = False):
    return delete(kv).where(kv.c.key == bindparam("key"))


def lease_rows(shape: str = "", limited: bool = False):
    return _kv_with_value().where(kv.c.lease == bindparam("lease")).order_by(kv.c.key)


def meta_all(shape: str = "", limited: bool = False):
    return select(meta.c.name, meta.c.value)


def meta_value(shape: str = "", limited: bool = False):
    return select(meta.c.value).where(meta.c.name == bindparam("name"))


def lease_all(shape: str = "", limited: bool = False):
    return select(leases.c.id, leases.c.ttl, leases.c.expires_at).order_by(leases.c.id)


def lease_insert(shape: str = "", limited: bool = False):
    return insert(leases).values(id=bindparam("id"), ttl=bindparam("ttl"),
                                 expires_at=bindparam("expires_at"))


def lease_delete(shape: str = "", limited: bool = False):
    return delete(leases).where(leases.c.id == bindparam("id"))


def compact_candidates(shape: str = "", limited: bool = True):
    """Rows at or below :compact that no read at or above :compact can see: superseded at or
    before :compact, or tombstones. Scanned in the revision window (:lo, :hi]."""
    l, newer = log.alias("l"), log.alias("newer")
    superseded = exists().where(and_(newer.c.key == l.c.key, _after(newer, l),
                                     newer.c.rev <= bindparam("compact")))
    return (select(l.c.key, l.c.rev, l.c.sub)
            .where(l.c.rev > bindparam("lo"), l.c.rev <= bindparam("hi"),
                   (l.c.deleted == 1) | superseded)
            .order_by(l.c.rev).limit(bindparam("limit")))


def compact_delete(shape: str = "", limited: bool = False):
    return delete(log).where(log.c.key == bindparam("key"), log.c.rev == bindparam("rev"),
                             log.c.sub == bindparam("sub"))


def log_count(shape: str = "", limited: bool = False):
    return select(func.count()).select_from(log)


# ---- HashKV (kubefabric.shard.hashkv): rows in etcd's bucket order, keyset-paged ----

_HASH_COLUMNS = ("rev", "sub", "key", "create_rev", "version", "lease", "deleted", "value")


def _after_position(l):
    """(rev, sub) after (:lo, :sub): the next page."""
    return (l.c.rev > bindparam("lo")) | and_(l.c.rev == bindparam("lo"), l.c.sub > bindparam("sub"))


def hash_kept(shape: str = "", limited: bool = True):
    """The rows etcd's compaction at :compact keeps (each key's newest row at or below it, if
    live) that are still the newest at :rev."""
    l, newer = log.alias("l"), log.alias("newer")
    superseded = exists().where(and_(newer.c.key == l.c.key, _after(newer, l),
                                     newer.c.rev <= bindparam("rev")))
    return (select(*(l.c[c] for c in _HASH_COLUMNS))
            .where(l.c.rev <= bindparam("compact"), l.c.deleted == 0, ~superseded, _after_position(l))
            .order_by(l.c.rev, l.c.sub).limit(bindparam("limit")))


def hash_rows(shape: str = "", limited: bool = True):
    """Every row above :compact up to :hi."""
    return (select(*(log.c[c] for c in _HASH_COLUMNS))
            .where(log.c.rev > bindparam("compact"), log.c.rev <= bindparam("hi"), _after_position(log))
            .order_by(log.c.rev, log.c.sub).limit(bindparam("limit")))


def hash_tombstones_at(shape: str = "", limited: bool = False):
    return select(func.count()).select_from(log).where(log.c.rev == bindparam("rev"), log.c.deleted == 1)


# ---- the auth store (kubefabric.auth.state) ----

def auth_all(shape: str = "", limited: bool = False):
    return select(auth.c.kind, auth.c.name, auth.c.value).order_by(auth.c.kind, auth.c.name)


def auth_clear(shape: str = "", limited: bool = False):
    return delete(auth)


def auth_insert(shape: str = "", limited: bool = False):
    return insert(auth).values(kind=bindparam("kind"), name=bindparam("name"), value=bindparam("value"))


# ---- leadership: the lease row (see kubefabric.shard.leadership) ----
# `now` is the database's clock in ms, a dialect's expression (StatementCache's now_ms); on SQLite
# it is the :now parameter. :ttl is the lease's length in ms.

def _ttl():
    return bindparam("ttl", type_=BigInteger)


def leadership_statements(now: Callable[[], Any]) -> dict[str, Callable]:
    def leader_get(shape: str = "", limited: bool = False):
        return select(leader.c.term, leader.c.address, leader.c.holder, leader.c.expires_at,
                      now().label("now")).where(leader.c.id == 1)

    def leader_take(shape: str = "", limited: bool = False):
        """A new term for a lease that expired (the row still holds the term :seen)."""
        return _take().where(leader.c.expires_at <= now())

    def leader_take_from(shape: str = "", limited: bool = False):
        """A new term from a holder known to have exited (:gone; SQLite, same host)."""
        return _take().where(leader.c.holder == bindparam("gone"))

    def _take():
        return (update(leader).where(leader.c.id == 1, leader.c.term == bindparam("seen"))
                .values(term=bindparam("term"), address=bindparam("address"),
                        holder=bindparam("holder"), expires_at=now() + _ttl()))

    def leader_renew(shape: str = "", limited: bool = False):
        """Extends this term's lease, unless another term took it: the fence of every batch."""
        return (update(leader).where(leader.c.id == 1, leader.c.term == bindparam("term"))
                .values(expires_at=now() + _ttl()))

    return {f.__name__: f for f in (leader_get, leader_take, leader_take_from, leader_renew)}


def leader_resign(shape: str = "", limited: bool = False):
    """Ends this term's lease now (a clean shutdown): a replica takes over without waiting."""
    return (update(leader).where(leader.c.id == 1, leader.c.term == bindparam("term"))
            .values(expires_at=literal_column("0")))


BUILDERS: dict[str, Callable] = {f.__name__: f for f in (
    latest_rows, latest_count, at_rows, at_count, max_rev, history, insert_log, delete_kv,
    lease_rows, meta_all, meta_value, lease_all, lease_insert, lease_delete, compact_candidates,
    compact_delete, log_count, leader_resign)}
BUILDERS.update(index_statements.BUILDERS)  # the label and field index (kubefabric.index)
BUILDERS.update({f.__name__: f for f in (hash_kept, hash_rows, hash_tombstones_at, auth_all,
                                         auth_clear, auth_insert)})


class StatementCache:
    """Compiles each statement once for one dialect; `get(name, shape, limited)`.

    The dialect provides upsert_kv, upsert_meta and insert_leader (insert the lease row unless
    it exists), and now_ms: an expression of the database's clock in ms (None: the :now
    parameter, which the caller passes)."""

    def __init__(self, dialect: Dialect, upsert_kv, upsert_meta, insert_leader, now_ms=None):
        self.dialect = dialect
        self._cache: dict[tuple[str, str, bool], Compiled] = {}
        self._extra = {"upsert_kv": upsert_kv, "upsert_meta": upsert_meta,
                       "insert_leader": insert_leader,
                       **leadership_statements(now_ms or (lambda: bindparam("now")))}

    def compile(self, stmt) -> Compiled:
        c = stmt.compile(dialect=self.dialect)
        names = tuple(c.positiontup or ())
        user = {"start", "end", "limit", "rev", "lo", "hi", "compact", "lease", "key", "id", "ttl",
                "expires_at", "name", "value", "create_rev", "mod_rev", "version", "prev_rev",
                "deleted", "sub", "term", "address", "now", "ttl", "seen", "holder", "gone",
                "kind"}
        constants = {n: v for n, v in c.params.items() if n not in user}
        return Compiled(str(c), names, constants)

    def get(self, name: str, shape: str = "", limited: bool = False) -> Compiled:
        key = (name, shape, limited)
        hit = self._cache.get(key)
        if hit is None:
            builder = self._extra.get(name) or BUILDERS[name]
            hit = self._cache[key] = self.compile(builder(shape, limited))
        return hit

    def ddl(self) -> list[str]:
        out = []
        for table in schema.metadata.sorted_tables:
            out.append(str(CreateTable(table, if_not_exists=True).compile(dialect=self.dialect)))
            for index in table.indexes:
                out.append(str(CreateIndex(index, if_not_exists=True).compile(dialect=self.dialect)))
        return out


def leader_row_values():
    """The first lease row: term :term, no leader, expired."""
    return {"id": literal_column("1"), "term": bindparam("term"), "address": literal_column("''"),
            "holder": literal_column("''"), "expires_at": literal_column("0")}


def kv_upsert_values():
    return {c: bindparam(c) for c in ROW_COLUMNS}


UPDATED_KV_COLUMNS = ("create_rev", "mod_rev", "version", "lease")


def on_conflict_upserts(dialect_insert: Callable) -> tuple[Callable, Callable, Callable]:
    """(upsert_kv, upsert_meta, insert_leader) for a dialect whose insert() has ON CONFLICT
    (PostgreSQL's and SQLite's share SQLAlchemy's API for it; MySQL's differs)."""
    def upsert_kv(shape: str = "", limited: bool = False):
        stmt = dialect_insert(kv).values(kv_upsert_values())
        return stmt.on_conflict_do_update(index_elements=[kv.c.key],
                                          set_={c: stmt.excluded[c] for c in UPDATED_KV_COLUMNS})

    def upsert_meta(shape: str = "", limited: bool = False):
        stmt = dialect_insert(meta).values(name=bindparam("name"), value=bindparam("value"))
        return stmt.on_conflict_do_update(index_elements=[meta.c.name], set_={"value": stmt.excluded.value})

    def insert_leader(shape: str = "", limited: bool = False):
        return dialect_insert(leader).values(leader_row_values()).on_conflict_do_nothing()

    return upsert_kv, upsert_meta, insert_leader
