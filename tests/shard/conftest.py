"""The store under test, for every shard conformance test.

`store_factory` is parametrized over store kinds; the test bodies only ever call it, so the same
suite runs unchanged against every store: SQLite, PostgreSQL and MariaDB (real servers).

    store_factory()          a new, unopened store object on this test's database "db"
    store_factory("db")      another object on the same database (close + reopen = restart)
    store_factory("other")   a different, empty database
    store_factory.drop(name) removes a database (long hypothesis runs create many)

KUBEFABRIC_SHARD_STORES=sqlite,postgres (comma-separated) picks the kinds to run; default: all.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from backend_sqlite.store import SqliteStore


class SqliteKind:
    def __init__(self, root: Path):
        self.root = root

    def store(self, name: str):
        return SqliteStore(self.root / name)

    def drop(self, name: str) -> None:
        shutil.rmtree(self.root / name, ignore_errors=True)


# kind -> the fixture that provides it (database servers are started once per test session)
KINDS = {"sqlite": "sqlite_kind", "postgres": "postgres_kind", "mariadb": "mariadb_kind"}
SELECTED = [k for k in os.environ.get("KUBEFABRIC_SHARD_STORES", ",".join(KINDS)).split(",") if k]


class StoreFactory:
    def __init__(self, kind: str, backend):
        self.kind = kind
        self.backend = backend

    def __call__(self, name: str = "db"):
        return self.backend.store(name)

    def drop(self, name: str) -> None:
        self.backend.drop(name)

    def __repr__(self) -> str:
        return f"StoreFactory({self.kind})"


@pytest.fixture
def sqlite_kind(tmp_path):
    return SqliteKind(tmp_path)


@pytest.fixture(params=SELECTED)
def store_factory(request):
    kind = request.param
    if kind not in KINDS:
        raise ValueError(f"unknown store kind {kind!r} in KUBEFABRIC_SHARD_STORES (known: {sorted(KINDS)})")
    return StoreFactory(kind, request.getfixturevalue(KINDS[kind]))
