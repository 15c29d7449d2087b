"""No SQL built from strings in the shard and store code (libs/kubefabric/{store,shard} and the
SQLite store, services/backend-sqlite).

Every statement is SQLAlchemy Core compiled once by StatementCache, with every value bound; keys
are arbitrary bytes, so a key range is `key >= :start AND key < :end`, never LIKE (whose % _ \\
are wildcards in keys). The scanner parses the sources (ast) and reports:

- sql-from-string: an f-string, `%`, `+` or `.format` whose text looks like SQL
  (SELECT .. FROM, INSERT INTO, UPDATE .. SET, DELETE FROM, LIKE), or text()/literal_column()
  of a non-constant;
- like: a SQLAlchemy like/ilike/contains/startswith/endswith/regexp_match on a column (`.c.`),
  or a string constant with a LIKE / GLOB clause;
- execute: .execute/.executemany/.executescript/.exec_driver_sql whose SQL is not a string
  constant, except the entries of ALLOWED_EXECUTE (the cached-statement path and a few PRAGMAs).

test_scanner_* feed it synthetic snippets so a scanner that finds nothing cannot pass silently.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("libs/kubefabric/store", "libs/kubefabric/shard", "services/backend-sqlite/backend_sqlite")
SQLITE = "services/backend-sqlite/backend_sqlite/store.py"

# (path in the repository, source of the SQL argument) -> why it is safe
ALLOWED_EXECUTE = {
    (SQLITE, "c.sql"): "the cached-statement path: SQL compiled once by StatementCache, values bound",
    (SQLITE, "sql"): "the driver calls of the store's cursor (fetch, fetchval, run, run_many): "
                     "kubefabric.store.cursor.StatementCursor hands them only a cached "
                     "statement's c.sql (test_statement_cursor_hands_drivers_only_cached_sql)",
    (SQLITE, "ddl"): "CREATE TABLE/INDEX compiled by StatementCache.ddl() from schema.py, and "
                      "schema.UPGRADES' constant DROP TABLE statements",
    (SQLITE, "f'PRAGMA busy_timeout={OPEN_BUSY_MS}'"): "a module constant",
    (SQLITE, "f'PRAGMA busy_timeout={busy_ms}'"): "OPEN_BUSY_MS or READ_BUSY_MS, module constants",
    (SQLITE, "f'PRAGMA synchronous={self.synchronous}'"): "operator configuration, not request data",
    (SQLITE, "f'PRAGMA wal_autocheckpoint={self.WAL_CHECKPOINT_PAGES}'"): "a class constant",
}

SQL_SHAPE = re.compile(r"\bselect\b.*\bfrom\b|\binsert\s+into\b|\bupdate\b.*\bset\b|\bdelete\s+from\b",
                       re.IGNORECASE | re.DOTALL)
LIKE_SHAPE = re.compile(r"\b(LIKE|GLOB)\b|\blike\s+[?:%'\"$(]")
EXECUTES = {"execute", "executemany", "executescript", "exec_driver_sql"}
LIKE_METHODS = {"like", "ilike", "notlike", "notilike", "not_like", "not_ilike", "regexp_match",
                "contains", "startswith", "endswith"}
RAW_SQL_FUNCS = {"text", "literal_column"}


def _looks_like_sql(text: str) -> bool:
    return bool(SQL_SHAPE.search(text) or LIKE_SHAPE.search(text))


def _literal_text(node: ast.AST) -> str | None:
    """The constant text of a string-building expression ({} for interpolations), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        parts = [_literal_text(node.left), _literal_text(node.right)]
        if any(p is not None for p in parts):
            return " ".join(p or "{}" for p in parts)
    return None


def scan(source: str, path: str) -> list[tuple[str, str, int, str]]:
    """(rule, path, line, source) of every violation in one module."""
    tree = ast.parse(source)
    docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    out = []

    def flag(rule: str, node: ast.AST) -> None:
        out.append((rule, path, node.lineno, ast.unparse(node)))

    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr) or (isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod))):
            text = _literal_text(node)
            if text is not None and _looks_like_sql(text):
                flag("sql-from-string", node)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if LIKE_SHAPE.search(node.value):
                flag("like", node)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            first = node.args[0] if node.args else None
            receiver = _literal_text(func.value) if isinstance(func, ast.Attribute) else None
            if name == "format" and _looks_like_sql(receiver or ""):
                flag("sql-from-string", node)
            elif name in RAW_SQL_FUNCS and first is not None and not isinstance(first, ast.Constant):
                flag("sql-from-string", node)
            elif name in LIKE_METHODS and isinstance(func, ast.Attribute) and ".c." in ast.unparse(func.value) + ".":
                flag("like", node)
            elif name in {"like", "ilike", "notlike", "not_like"} and isinstance(func, ast.Attribute):
                flag("like", node)
            elif name in EXECUTES and isinstance(func, ast.Attribute) and first is not None:
                constant = isinstance(first, ast.Constant) and isinstance(first.value, str)
                if not constant and (path, ast.unparse(first)) not in ALLOWED_EXECUTE:
                    flag("execute", node)
    return out


def scanned_files() -> list[Path]:
    return sorted(p for d in SCANNED for p in (REPO / d).rglob("*.py"))


def test_shard_and_store_build_no_sql_from_strings():
    files = scanned_files()
    names = {p.relative_to(REPO).as_posix() for p in files}
    assert {SQLITE, "libs/kubefabric/store/statements.py", "libs/kubefabric/shard/apply.py",
            "libs/kubefabric/shard/core.py"} <= names
    violations = []
    for p in files:
        violations += scan(p.read_text(), p.relative_to(REPO).as_posix())
    assert violations == [], "SQL built from strings:\n" + "\n".join(
        f"  {path}:{line} [{rule}] {src}" for rule, path, line, src in violations)


def test_the_cached_statement_path_is_what_the_scan_allows():
    """The allowance is exercised: the scan really sees the SQLite store's execute calls."""
    tree = ast.parse((REPO / SQLITE).read_text())
    seen = {ast.unparse(n.args[0]) for n in ast.walk(tree) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute) and n.func.attr in EXECUTES and n.args}
    assert "c.sql" in seen


DRIVER_CALLS = {"fetch", "fetchval", "run", "run_many"}


def test_statement_cursor_hands_drivers_only_cached_sql():
    """What makes ALLOWED_EXECUTE's `sql` safe: every driver call StatementCursor makes passes
    the SQL of a statement from the cache (c = self.stmts.get(...); c.sql), never other text."""
    tree = ast.parse((REPO / "libs/kubefabric/store/cursor.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr in DRIVER_CALLS]
    assert len(calls) == 4, [ast.unparse(c) for c in calls]
    assert {ast.unparse(c.args[0]) for c in calls} == {"c.sql"}
    assigned = {ast.unparse(n.value.func) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                and [ast.unparse(t) for t in n.targets] == ["c"] and isinstance(n.value, ast.Call)}
    assert assigned == {"self.stmts.get"}


BAD = {
    "f-string select": ('sql = f"SELECT value FROM kf_log WHERE key = \'{key}\'"', "sql-from-string"),
    "percent insert": ('sql = "INSERT INTO kf_log (key) VALUES (%s)" % key', "sql-from-string"),
    "concatenated delete": ('sql = "DELETE FROM kf_kv WHERE key = " + repr(key)', "sql-from-string"),
    "format update": ('sql = "UPDATE kf_meta SET value = {}".format(v)', "sql-from-string"),
    "text of a variable": ("stmt = text(query)", "sql-from-string"),
    "lowercase f-string": ('q = f"select * from kf_kv where key >= {start}"', "sql-from-string"),
    "like on a key column": ("stmt = select(kv).where(kv.c.key.like(prefix + '%'))", "like"),
    "startswith on a column": ("stmt = select(log).where(log.c.key.startswith(prefix))", "like"),
    "raw LIKE clause": ('cur.execute("SELECT key FROM kf_kv WHERE key LIKE ?", (p,))', "like"),
    "execute of a variable": ("conn.execute(query, args)", "execute"),
    "executemany of a call": ("conn.executemany(build(name), rows)", "execute"),
    "execute of an f-string": ('conn.execute(f"PRAGMA {name}={value}")', "execute"),
}


@pytest.mark.parametrize("snippet,rule", BAD.values(), ids=list(BAD))
def test_scanner_flags_a_bad_snippet(snippet, rule):
    assert rule in {r for r, *_ in scan(snippet, "store/synthetic.py")}, snippet


def test_scanner_accepts_the_safe_idioms():
    safe = '''
"""Docstring mentioning SELECT x FROM t and LIKE, which is prose."""
stmt = select(kv.c.key).where(kv.c.key >= bindparam("start"), kv.c.key < bindparam("end"))
conn.execute("BEGIN IMMEDIATE")
conn.execute(c.sql, c.args(values))
await cur.execute("upsert_meta", {"name": name, "value": value})
log.info("compaction at revision %d removed %d rows", rev, n)
msg = f"etcdserver: internal error: {exc}"
ok = key.startswith(prefix) and span.contains(key)
'''
    assert scan(safe, SQLITE) == []
