"""The per-shard tables (DESIGN §2), defined once with SQLAlchemy Core for every dialect.

Invariants:
- `log` is append-only except for compaction: one row per key change; a txn that changes n keys
  writes n rows sharing one `rev`, numbered by `sub` in the order of the txn's ops (etcd's event
  order). (key, rev, sub) is unique; a key appears twice in one rev only when a txn deletes it
  and then puts it again. `prev_rev` is the key's mod revision before the row's txn (0 if it
  did not exist then), so an event's prev_kv (etcd: the key at rev - 1) is the live row
  (key, prev_rev).
  A deletion is a row with deleted=1, create_rev=0, version=0 and an empty value.
- `kv` indexes the log's newest live row per key (deleted keys are absent): it is written in
  the same database transaction as the log rows and points at the row holding the value,
  (key, mod_rev, deleted=0), so reads at the newest revision do not scan history and values
  are stored once.
- `meta` holds named integers (schema version, compact revision, clock floor), never key rows.
- `leases` holds granted leases; a key's lease is the `lease` column of its kv/log rows.
- `leader` is the shard's leader lease: term, address, holder and deadline (one row).
- `index` holds the label and field rows of indexed objects (kubefabric.index): rows belong to
  one log row (key, rev, sub) of a put, are written in the same transaction as it (or by the
  backfill, for rows older than the index) and deleted with it by compaction, never updated; so
  the rows of the version of a key visible at revision R are exactly its index at R.
- `index_state` has one row per index the shard keeps (an `index:` rule of the topology): from
  which revision the writer indexes at write time, how far the backfill got, whether it is ready.
Keys and values are bytes compared bytewise: BLOB / bytea / VARBINARY, never a text collation.
"""
from __future__ import annotations

from sqlalchemy import (BigInteger, Column, Index, LargeBinary, MetaData, PrimaryKeyConstraint,
                        SmallInteger, String, Table)
from sqlalchemy.dialects import mysql

# 2: kf_leader holds a lease (holder, expires_at); stores upgrade a version-1 database on open
SCHEMA_VERSION = 2
# InnoDB (DYNAMIC rows) indexes hold at most 3072 bytes; kf_log's PRIMARY KEY is (key, rev, sub),
# so key + 8 + 8: VARBINARY(3056) is the widest key column (measured on MariaDB 10.11; same rule in MySQL 8).
MYSQL_MAX_KEY_BYTES = 3072 - 16

KeyBytes = LargeBinary().with_variant(mysql.VARBINARY(MYSQL_MAX_KEY_BYTES), "mysql", "mariadb")
ValueBytes = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")

metadata = MetaData()

log = Table(
    "kf_log", metadata,
    Column("key", KeyBytes, nullable=False),
    Column("rev", BigInteger, nullable=False),
    Column("sub", BigInteger, nullable=False),  # position of the change within its txn
    Column("create_rev", BigInteger, nullable=False),
    Column("prev_rev", BigInteger, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("lease", BigInteger, nullable=False),
    Column("deleted", SmallInteger, nullable=False),
    Column("value", ValueBytes, nullable=False),
    PrimaryKeyConstraint("key", "rev", "sub", name="kf_log_pk"),
    Index("kf_log_rev", "rev", "sub"),
    # SQLite: a rowid table on purpose. In a WITHOUT ROWID table a row lives in an index b-tree,
    # which keeps at most about a quarter page of a row in the page itself and puts the rest in
    # overflow pages of its own: values just over that (1-1.5 KiB with 4 KiB pages: typical
    # Kubernetes objects) took 4.6x their size on disk, against 1.0-1.4x in a rowid table.
    # Databases created before keep their WITHOUT ROWID table: the statements are the same.
)

kv = Table(
    "kf_kv", metadata,
    Column("key", KeyBytes, primary_key=True),
    Column("create_rev", BigInteger, nullable=False),
    Column("mod_rev", BigInteger, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("lease", BigInteger, nullable=False),
    Index("kf_kv_lease", "lease"),
    sqlite_with_rowid=False,
)

meta = Table(
    "kf_meta", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

leases = Table(
    "kf_leases", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("ttl", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),  # unix ms at grant; expiry restarts on open
)

# etcd's auth store (kubefabric.auth.state), in the default shard: users and roles as etcd's
# authpb messages by name, and the simple-token key. The enabled flag and the auth revision are
# meta rows. Rewritten whole by the writer at each change (auth stores are small).
auth = Table(
    "kf_auth", metadata,
    Column("kind", SmallInteger, nullable=False),  # 1 user, 2 role, 3 token key
    Column("name", KeyBytes, nullable=False),
    Column("value", ValueBytes, nullable=False),
    PrimaryKeyConstraint("kind", "name", name="kf_auth_pk"),
    sqlite_with_rowid=False,
)

# Index rows (kubefabric.index). Names and values are UTF-8 bytes, at most INDEX_TERM_BYTES
# (longer ones are stored as 0xFF + their SHA-256: never valid UTF-8, so never a real value).
# On MySQL/MariaDB the key column is narrower than kf_log's so that (kind, name, value, key, rev,
# sub) fits InnoDB's 3072-byte index entries; objects under longer keys are never indexed
# (Kubernetes keys stay under 700 bytes: kubefabric.query.objects.MAX_OBJECT_KEY).
INDEX_TERM_BYTES = 255
INDEX_MAX_KEY_BYTES = 1024
IndexKeyBytes = LargeBinary().with_variant(mysql.VARBINARY(INDEX_MAX_KEY_BYTES), "mysql", "mariadb")
IndexTerm = LargeBinary().with_variant(mysql.VARBINARY(INDEX_TERM_BYTES), "mysql", "mariadb")

index = Table(
    "kf_index", metadata,
    Column("key", IndexKeyBytes, nullable=False),
    Column("rev", BigInteger, nullable=False),
    Column("sub", BigInteger, nullable=False),
    Column("kind", SmallInteger, nullable=False),  # 1 label, 2 field
    Column("name", IndexTerm, nullable=False),     # label key or field path
    Column("value", IndexTerm, nullable=False),
    PrimaryKeyConstraint("key", "rev", "sub", "kind", "name", name="kf_index_pk"),
    Index("kf_index_term", "kind", "name", "value", "key", "rev", "sub"),
    sqlite_with_rowid=False,
)

index_state = Table(
    "kf_index_state", metadata,
    Column("id", String(64), primary_key=True),        # the index's identity (rule + settings)
    Column("description", String(1024), nullable=False),
    Column("since_rev", BigInteger, nullable=False),   # rows above it are indexed at write time
    Column("cursor", IndexKeyBytes, nullable=False),   # backfill: keys below it are done
    Column("ready", SmallInteger, nullable=False),     # 1: every retained row is indexed
    Column("rows", BigInteger, nullable=False),        # log rows backfilled so far
)

# The shard's leader lease (one row, id = 1; see kubefabric.shard.leadership): the term, the
# leader's address (replicas forward writes there), who holds it (host, pid, process start time:
# for logs and, on SQLite, to tell whether the holder still runs) and until when, in the
# database's clock (ms; SQLite: the host's CLOCK_MONOTONIC). Every write batch renews it in its own
# transaction, which is also the fence: a batch commits only while this row holds its term.
leader = Table(
    "kf_leader", metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("term", BigInteger, nullable=False),
    Column("address", String(255), nullable=False),
    Column("holder", String(255), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    implicit_returning=False,
)

META_SCHEMA_VERSION = "schema_version"

# What brings a database of an older schema version to this one, by version found: run by each
# store's open() before its idempotent CREATE statements, which then add what was dropped, and
# followed by recording SCHEMA_VERSION. 1: kf_leader had no lease columns (it holds no data that
# outlives an election: the term is also in kf_meta).
UPGRADES = {1: ("DROP TABLE IF EXISTS kf_leader",)}


def upgrade_statements(version: int) -> list[str]:
    """The statements that bring a database at schema `version` (0: new) up to date."""
    if version == 0 or version >= SCHEMA_VERSION:
        return []
    return [sql for v in range(version, SCHEMA_VERSION) for sql in UPGRADES.get(v, ())]
META_COMPACT_REV = "compact_rev"
META_CLOCK_FLOOR = "clock_floor"
# the shard's clock as of the newest commit, written by every batch that moves it: a read
# snapshot on a server database takes its header revision from here (rows alone miss clock
# moves that wrote no row, and the writer's in-memory state may be ahead of the snapshot)
META_CLOCK = "clock"
