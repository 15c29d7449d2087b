"""The SQL of the label and field index (kubefabric.index), written once in SQLAlchemy Core and
compiled per dialect like every other statement (statements.BUILDERS holds these builders too).

A query plan is one SELECT whose shape is encoded in the `shape` string the statement cache
keys on: "<key shape>;<head|at>;<requirements>", requirements as comma-separated tokens
"<kind><op><number of values>" in plan order, e.g. "bounded;at;1=1,1notin2,2!=1". When the first
token is a positive requirement (=, in, exists) the index drives the plan: its rows for that
requirement, in key order within the range, are joined to the log (the version live at the
revision) and checked against the other requirements by primary-key lookups. Otherwise the
range drives (as a Range does) and every requirement is such a lookup; an object counts only
when it has index rows at all (its metadata.name row), as the scan only counts objects that decode.

Bound parameters: start/end (key range), rev, limit, n<i> (the name of requirement i), v<i>_<j>
(its values), since/lo/hi for the backfill, and the columns of kf_index / kf_index_state.
"""
from __future__ import annotations

from sqlalchemy import FromClause, and_, bindparam, delete, exists, insert, select, update

from .keyshape import key_cond
from .schema import index, index_state, kv, log

LABEL, FIELD = 1, 2
ANCHOR = b"metadata.name"  # every indexed object has this field row
POSITIVE = ("=", "in", "exists")
OPS = ("!exists", "exists", "notin", "in", "!=", "=")  # longest first, for parsing tokens


def parse_shape(shape: str) -> tuple[str, str, list[tuple[int, str, int]]]:
    key_shape, mode, spec = shape.split(";")
    reqs = []
    for token in filter(None, spec.split(",")):
        kind, rest = int(token[0]), token[1:]
        op = next(o for o in OPS if rest.startswith(o))
        reqs.append((kind, op, int(rest[len(op):])))
    return key_shape, mode, reqs


def _term(t, i: int, op: str, n: int):
    """Conditions on index rows `t` for requirement i (name and, for =/in/notin/!=, values)."""
    conds = [t.c.name == bindparam(f"n{i}")]
    if op in ("=", "!="):
        conds.append(t.c.value == bindparam(f"v{i}_0"))
    elif op in ("in", "notin"):
        conds.append(t.c.value.in_([bindparam(f"v{i}_{j}") for j in range(n)]))
    return conds


def _lookup(key, rev, sub, kind: int, conds):
    """EXISTS: the object version (key, rev[, sub]) has an index row of `kind` meeting
    `conds(x)` (x: the index alias of the subquery)."""
    x = index.alias("x")
    where = [x.c.key == key, x.c.rev == rev, x.c.kind == kind]
    if sub is not None:
        where.append(x.c.sub == sub)
    return exists().where(and_(*where, *conds(x)))


def _requirement(key, rev, sub, i: int, kind: int, op: str, n: int):
    """A WHERE condition: the object version satisfies requirement i."""
    found = _lookup(key, rev, sub, kind, lambda x: _term(x, i, op, n))
    return found if op in POSITIVE else ~found


def _newer(key, rev, sub):
    """A later change of the same key at or below :rev exists (the version is superseded)."""
    n = log.alias("newer")
    later = (n.c.rev > rev) | and_(n.c.rev == rev, n.c.sub > sub)
    return exists().where(and_(n.c.key == key, later, n.c.rev <= bindparam("rev")))


def index_query(shape: str, limited: bool):
    key_shape, mode, reqs = parse_shape(shape)
    driven = bool(reqs) and reqs[0][1] in POSITIVE
    joined: FromClause
    if driven:
        d = index.alias("d")
        kind, op, n = reqs[0]
        on_log = (log.c.key == d.c.key) & (log.c.rev == d.c.rev) & (log.c.sub == d.c.sub)
        where = [d.c.kind == kind, *_term(d, 0, op, n), key_cond(d.c.key, key_shape)]
        if mode == "head":
            joined = d.join(kv, (kv.c.key == d.c.key) & (kv.c.mod_rev == d.c.rev)).join(log, on_log)
            cols = (kv.c.key, kv.c.create_rev, kv.c.mod_rev, kv.c.version, kv.c.lease, log.c.value)
        else:
            joined = d.join(log, on_log)
            cols = (log.c.key, log.c.create_rev, log.c.rev, log.c.version, log.c.lease, log.c.value)
            where += [d.c.rev <= bindparam("rev"), ~_newer(d.c.key, d.c.rev, d.c.sub)]
        key, rev, sub = d.c.key, d.c.rev, d.c.sub
        rest = list(enumerate(reqs))[1:]
        order = d.c.key
    else:
        if mode == "head":
            joined = kv.join(log, (log.c.key == kv.c.key) & (log.c.rev == kv.c.mod_rev)
                             & (log.c.deleted == 0))
            cols = (kv.c.key, kv.c.create_rev, kv.c.mod_rev, kv.c.version, kv.c.lease, log.c.value)
            key, rev, sub = kv.c.key, kv.c.mod_rev, None
            where = [key_cond(kv.c.key, key_shape)]
        else:
            joined = log
            cols = (log.c.key, log.c.create_rev, log.c.rev, log.c.version, log.c.lease, log.c.value)
            key, rev, sub = log.c.key, log.c.rev, log.c.sub
            where = [key_cond(log.c.key, key_shape), log.c.rev <= bindparam("rev"),
                     log.c.deleted == 0, ~_newer(log.c.key, log.c.rev, log.c.sub)]
        anchor = _lookup(key, rev, sub, FIELD, lambda x: [x.c.name == ANCHOR])
        where.append(anchor)
        rest = list(enumerate(reqs))
        order = key
    for i, (kind, op, n) in rest:
        where.append(_requirement(key, rev, sub, i, kind, op, n))
    stmt = select(*cols).select_from(joined).where(*where).order_by(order)
    return stmt.limit(bindparam("limit")) if limited else stmt


# ---- writes: the writer and the backfill ----

# The writer passes index rows as tuples in this order (Compiled.args takes them as they are;
# tests/shard/test_index_rows.py checks that every dialect binds the columns in this order).
INDEX_COLUMNS = ("key", "rev", "sub", "kind", "name", "value")


def index_insert(shape: str = "", limited: bool = False):
    return insert(index).values({c: bindparam(c) for c in INDEX_COLUMNS})


def index_delete_row(shape: str = "", limited: bool = False):
    """The index rows of one log row (compaction, and the backfill before it rewrites them)."""
    return delete(index).where(index.c.key == bindparam("key"), index.c.rev == bindparam("rev"),
                               index.c.sub == bindparam("sub"))


def index_delete_range(shape: str = "", limited: bool = False):
    """The index rows of every version at or below :since of the keys in [:start, :end) (the
    backfill rewrites them all; rows of keys no rule indexes any more go too)."""
    return delete(index).where(key_cond(index.c.key, "bounded"), index.c.rev <= bindparam("since"))


def index_delete_from(shape: str = "", limited: bool = False):
    """index_delete_range for every key >= :start."""
    return delete(index).where(key_cond(index.c.key, "unbounded"), index.c.rev <= bindparam("since"))


def backfill_rows(shape: str = "bounded", limited: bool = True):
    """Put rows (not tombstones) at or below :since in the key range, in log order."""
    stmt = (select(log.c.key, log.c.rev, log.c.sub, log.c.value)
            .where(key_cond(log.c.key, shape), log.c.rev <= bindparam("since"),
                   log.c.deleted == 0)
            .order_by(log.c.key, log.c.rev, log.c.sub))
    return stmt.limit(bindparam("limit")) if limited else stmt


def backfill_key_rows(shape: str = "", limited: bool = False):
    """Every put row of one key at or below :since (a key with more versions than one page)."""
    return (select(log.c.key, log.c.rev, log.c.sub, log.c.value)
            .where(log.c.key == bindparam("start"), log.c.rev <= bindparam("since"),
                   log.c.deleted == 0)
            .order_by(log.c.rev, log.c.sub))


# ---- index state ----

def index_state_all(shape: str = "", limited: bool = False):
    s = index_state
    return select(s.c.id, s.c.description, s.c.since_rev, s.c.cursor, s.c.ready,
                  s.c.rows).order_by(s.c.id)


def index_state_insert(shape: str = "", limited: bool = False):
    return insert(index_state).values({c: bindparam(c) for c in
                                       ("id", "description", "since_rev", "cursor", "ready", "rows")})


def index_state_delete(shape: str = "", limited: bool = False):
    return delete(index_state).where(index_state.c.id == bindparam("id"))


def index_state_progress(shape: str = "", limited: bool = False):
    return (update(index_state).where(index_state.c.id == bindparam("id"))
            .values(cursor=bindparam("cursor"), ready=bindparam("ready"), rows=bindparam("rows")))


BUILDERS = {f.__name__: f for f in (
    index_query, index_insert, index_delete_row, index_delete_range, index_delete_from,
    backfill_rows, backfill_key_rows,
    index_state_all, index_state_insert, index_state_delete, index_state_progress)}
