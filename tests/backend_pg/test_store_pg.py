"""PostgreSQL-specific behaviour of backend_pg.store.PostgresStore, on a real PostgreSQL 15 server
(tests/harness/postgres.py): bytea keys, the key-size limit, snapshot isolation, the writer
connection's server-side timeouts, connection errors, SQLSTATE 53100, prepared statements, crash
durability.
The shared shard behaviour is tests/shard (KUBEFABRIC_SHARD_STORES=postgres).
"""
from __future__ import annotations

import asyncio
import os
import ssl
import time
import traceback

import asyncpg
import pytest

from backend_pg.store import MAX_KEY_BYTES, PostgresStore, StoreUnavailable, WriterLost, ssl_option
from harness.databases import while_open
from harness.postgres import PASSWORD, PostgresServer
from kubefabric.dsn import parse_dsn
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.shard.core import Shard

ODD_KEYS = [b"\x00", b"\x00\x00", b"\x00a", b"a", b"A", b"a\x00", b"a\x00b", b"a%", b"a%b", b"a_", b"a_b",
            b"ab", b"a\\", b"a\\%", b"\\", b"%", b"_", b"'", b"\x7f", b"\x80", b"\xc3\xa9", b"\xe9",
            b"\xed\xa0\x80", b"\xff", b"\xff\x00", b"\xff\xff"]


def run(coro):
    return asyncio.run(coro)


async def write(store, key: bytes, value: bytes = b"v", rev: int = 2) -> None:
    """One committed put through the store's writer statements (no Shard)."""
    cur = await store.begin()
    await cur.execute("insert_log", dict(key=key, rev=rev, sub=0, create_rev=rev, prev_rev=0, version=1,
                                         lease=0, deleted=0, value=value))
    await cur.execute("upsert_kv", dict(key=key, create_rev=rev, mod_rev=rev, version=1, lease=0))
    await store.commit()


async def latest(cur, start: bytes, end: bytes | None = None) -> list[tuple]:
    shape = "single" if end is None else ("unbounded" if end == b"" else "bounded")
    return await cur.rows("latest_rows", {"start": start, "end": end}, shape)


# ---- bytes ----

def test_keys_of_any_bytes_store_range_and_sort_as_bytes(postgres_kind):
    async def body():
        async with while_open(postgres_kind.store("db")) as store:
            cur = await store.begin()
            for i, key in enumerate(ODD_KEYS):
                await cur.execute("insert_log", dict(key=key, rev=2, sub=i, create_rev=2, prev_rev=0, version=1,
                                                     lease=0, deleted=0, value=b"\xff" + key))
                await cur.execute("upsert_kv", dict(key=key, create_rev=2, mod_rev=2, version=1, lease=0))
            await store.commit()
            async with store.snapshot() as cur:
                every = await latest(cur, b"", b"")
                assert [r[0] for r in every] == sorted(ODD_KEYS)
                assert all(type(r[0]) is bytes and type(r[5]) is bytes and r[5] == b"\xff" + r[0] for r in every)
                assert all(type(v) is int for r in every for v in r[1:5])
                for start in ODD_KEYS:
                    assert [r[0] for r in await latest(cur, start)] == [start]
                    for end in ODD_KEYS:
                        want = sorted(k for k in ODD_KEYS if start <= k < end)
                        assert [r[0] for r in await latest(cur, start, end)] == want, (start, end)
                    assert [r[0] for r in await latest(cur, start, b"")] == sorted(k for k in ODD_KEYS if k >= start)
    run(body())


def test_the_longest_key_works_and_one_byte_more_fails_with_program_limit_exceeded(postgres_kind):
    async def body():
        key = os.urandom(MAX_KEY_BYTES)  # random: PostgreSQL compresses index entries when it can
        async with while_open(Shard(postgres_kind.store("db"))) as shard:
            await shard.put(pb.PutRequest(key=key, value=b"x"))
            await shard.put(pb.PutRequest(key=key, value=b"y"))  # a second log row of the same key
            got = await shard.range(pb.RangeRequest(key=key))
            assert [(kv.key, kv.value, kv.version) for kv in got.kvs] == [(key, b"y", 2)]
            store = shard.store
            async with shard.writer.lock:  # the store's writer, while the shard's writer is idle
                with pytest.raises(asyncpg.ProgramLimitExceededError) as err:
                    await write(store, os.urandom(MAX_KEY_BYTES + 1), rev=shard.state.clock + 1)
                await store.rollback()
            assert err.value.sqlstate == "54000" and "index row size" in str(err.value)
            assert shard.store.max_key_bytes == MAX_KEY_BYTES
    run(body())


# ---- snapshots ----

def test_a_snapshot_sees_exactly_what_was_committed_before_it_was_entered(postgres_kind):
    async def body():
        async with while_open(postgres_kind.store("db")) as store:
            await write(store, b"a", b"1", rev=2)
            async with store.snapshot() as before:
                await write(store, b"b", b"2", rev=3)
                async with store.snapshot() as after:
                    assert [r[0] for r in await latest(before, b"", b"")] == [b"a"]
                    assert await before.scalar("max_rev", {}) == 2
                    assert [r[0] for r in await latest(after, b"", b"")] == [b"a", b"b"]
                    assert await after.scalar("max_rev", {}) == 3
                # still the old snapshot, statement after statement
                assert await before.scalar("latest_count", {"start": b""}, "unbounded") == 1
    run(body())


def test_reads_run_concurrently_on_separate_pooled_connections(postgres_kind):
    async def body():
        async with while_open(postgres_kind.store("db", read_pool_size=3)) as store:
            pids = set()

            async def read():
                async with store.snapshot() as cur:
                    pids.add(await cur.conn.fetchval("SELECT pg_backend_pid()"))
                    await cur.conn.execute("SELECT pg_sleep(0.2)")
            started = time.monotonic()
            await asyncio.gather(*(read() for _ in range(6)))
            assert len(pids) == 3 and time.monotonic() - started < 1.0  # 2 rounds of 3, not 6 in turn
    run(body())


def test_statements_are_prepared_once_per_connection(postgres_kind):
    async def body():
        async with while_open(postgres_kind.store("db", read_pool_size=1)) as store:
            sql = store.stmts.get("latest_rows", "bounded").sql
            for i in range(5):
                async with store.snapshot() as cur:
                    await latest(cur, b"a", b"z%d" % i)
            async with store.snapshot() as cur:
                n = await cur.conn.fetchval("SELECT count(*) FROM pg_prepared_statements WHERE statement = $1", sql)
            assert n == 1
    run(body())


# ---- the writer connection (leadership itself: tests/shard/test_leadership.py) ----

def test_a_killed_writer_connection_loses_its_open_writes_and_stays_dead(postgres_kind, postgres_server):
    async def body():
        async with while_open(postgres_kind.store("db")) as one:
            cur = await one.begin()
            await cur.execute("insert_log", dict(key=b"lost", rev=2, sub=0, create_rev=2, prev_rev=0, version=1,
                                                 lease=0, deleted=0, value=b"v"))
            pid = one._w.get_server_pid()
            assert postgres_server.sql(f"SELECT pg_terminate_backend({pid})") == "t"
            with pytest.raises((asyncpg.PostgresError, WriterLost)):  # never a commit
                await one.commit()
            await one.rollback()  # must not raise on a dead connection
            with pytest.raises(WriterLost):
                await one.begin()
            async with one.snapshot() as cur:  # the store still reads
                assert await cur.scalar("log_count", {}) == 0
    run(body())


def test_the_writer_session_cannot_stay_silent_in_a_transaction(postgres_kind):
    """limit_writer_silence: the server ends the writer's session once it sat idle in a
    transaction for about a lease (a frozen leader's batch), and its lock waits after two."""
    async def body():
        async with while_open(postgres_kind.store("db")) as store:
            await store.limit_writer_silence(0.3)
            settings = dict(await store._w.fetch(
                "SELECT name, setting FROM pg_settings WHERE name IN ('idle_in_transaction_session_timeout',"
                " 'lock_timeout', 'statement_timeout', 'tcp_keepalives_idle')"))
            assert settings == {"idle_in_transaction_session_timeout": "300", "lock_timeout": "600",
                                "statement_timeout": "10000", "tcp_keepalives_idle": "5"}, settings
            cur = await store.begin()
            await cur.execute("upsert_meta", {"name": "pending", "value": 1})
            await asyncio.sleep(1.0)
            with pytest.raises((asyncpg.PostgresError, WriterLost)):
                await store.commit()
            await store.rollback()
    run(body())


# ---- errors ----

def test_open_against_a_stopped_server_raises_a_clear_error_without_the_password():
    async def body(dsn, reason):
        store = PostgresStore(parse_dsn(dsn))
        with pytest.raises(StoreUnavailable) as err:
            await store.open()
        text = str(err.value)
        assert reason in text and "127.0.0.1" in text and str(store.dsn.port) in text and "/db" in text, text
        shown = "".join(traceback.format_exception(err.value))
        assert PASSWORD not in shown and parse_dsn(dsn).password not in shown and "***" in text
        await store.close()

    server = PostgresServer().start()
    try:
        server.create_database("db")
        run(body(server.dsn("db", password="wrong-secret"), "password authentication failed"))
        server.stop()
        run(body(server.dsn("db"), "Connect call failed"))
    finally:
        server.remove()


def test_is_disk_full_recognises_sqlstate_53100(postgres_kind):
    async def body():
        async with while_open(postgres_kind.store("db")) as store:
            cur = await store.begin()
            with pytest.raises(asyncpg.PostgresError) as full:
                await cur.conn.execute("DO $$ BEGIN RAISE EXCEPTION 'no space left' USING ERRCODE = 'disk_full'; END $$")
            await store.rollback()
            await write(store, b"k", rev=2)
            cur = await store.begin()
            with pytest.raises(asyncpg.PostgresError) as duplicate:
                await cur.execute("upsert_meta", {"name": "x", "value": 1})
                await cur.conn.execute("INSERT INTO kf_meta (name, value) VALUES ('x', 2)")
            await store.rollback()
        assert full.value.sqlstate == "53100" and PostgresStore.is_disk_full(full.value)
        assert duplicate.value.sqlstate == "23505" and not PostgresStore.is_disk_full(duplicate.value)
        try:
            raise RuntimeError("batch failed") from full.value
        except RuntimeError as wrapped:
            assert PostgresStore.is_disk_full(wrapped)
        assert not PostgresStore.is_disk_full(OSError(28, "No space left on device"))
    run(body())


# ---- durability ----

def test_committed_writes_survive_a_server_crash_and_the_old_writer_stays_dead(postgres_kind, postgres_server):
    async def body():
        async with while_open(Shard(postgres_kind.store("db"))) as shard:
            for i in range(20):
                await shard.put(pb.PutRequest(key=b"k%02d" % i, value=b"v%d" % i))
            postgres_server.kill()
            postgres_server.start()
            with pytest.raises(Exception):  # the writer connection died with the server
                await shard.put(pb.PutRequest(key=b"after", value=b"x"))
            assert shard.store._w.is_closed()
        async with while_open(Shard(postgres_kind.store("db"))) as shard:
            got = await shard.range(pb.RangeRequest(key=b"k", range_end=b"l"))
            assert [kv.key for kv in got.kvs] == [b"k%02d" % i for i in range(20)] and got.header.revision == 21
            assert (await shard.put(pb.PutRequest(key=b"after", value=b"x"))).header.revision == 22
    run(body())


# ---- TLS options (no server) ----

def test_ssl_params_map_to_asyncpg_like_libpq(tmp_path):
    ca = "/etc/ssl/certs/ca-certificates.crt"  # any readable CA bundle

    def opt(query):
        return ssl_option(parse_dsn("postgres://u:p@h/db" + query))
    assert opt("") is None and opt("?sslmode=disable") is False and opt("?sslmode=require") == "require"
    full, ca_only, require = (opt(f"?sslmode={m}&sslrootcert={ca}") for m in ("verify-full", "verify-ca", "require"))
    assert full.check_hostname and full.verify_mode == ssl.CERT_REQUIRED
    assert not ca_only.check_hostname and ca_only.verify_mode == ssl.CERT_REQUIRED
    assert not require.check_hostname and require.verify_mode == ssl.CERT_REQUIRED  # libpq: root cert given
    with pytest.raises(ValueError):
        opt("?sslmode=sometimes")
