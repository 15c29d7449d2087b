"""MysqlStore against a real MariaDB (tests/harness/mariadb.py): what only a server database can
get wrong. Bytes semantics of VARBINARY keys, the key length limit, snapshots established on
entry, the writer connection's server-side timeouts, errors that name the server but never the
password, durability across a crash, and the disk-full errors the writer turns into NOSPACE.
"""
from __future__ import annotations

import asyncio
import os

import pymysql
import pytest

from backend_mysql.store import MIN_MAX_ALLOWED_PACKET, MysqlStore, MysqlStoreError
from harness.databases import while_open
from harness.mariadb import MariadbServer
from harness.servers import free_port
from kubefabric.dsn import parse_dsn
from kubefabric.etcd import errors
from kubefabric.etcd.errors import EtcdError
from kubefabric.etcd.keyrange import KeyRange
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.shard.core import Shard, ShardBusy
from kubefabric.store import schema

KEYS = [b"a", b"a\x00", b"a ", b"a  ", b"a\x00\x00", b"a \x00", b"A", b"\x00", b"\x00\x00", b" ", b"\xff",
        b"\xff\xff", b"\xc3\x28", b"\xed\xa0\x80", b"%", b"a%", b"_", b"a_", b"\\", b"a\\", b"'", b"\"", b"a\n"]


def run(coro):
    return asyncio.run(coro)


async def write(store, rows: list[tuple[bytes, bytes]], rev: int) -> None:
    """Put each (key, value) at `rev` in one writer transaction, as the shard's Applier does."""
    cur = await store.begin()
    await cur.executemany("insert_log", [dict(key=k, rev=rev, sub=i, create_rev=rev, prev_rev=0, version=1,
                                              lease=0, deleted=0, value=v) for i, (k, v) in enumerate(rows)])
    for k, _ in rows:
        await cur.execute("upsert_kv", dict(key=k, create_rev=rev, mod_rev=rev, version=1, lease=0))
    await store.commit()


async def latest(store, start: bytes, end: bytes | None = b"") -> list[tuple[bytes, bytes]]:
    shape = "single" if end is None else ("unbounded" if end == b"" else "bounded")
    async with store.snapshot() as cur:
        rows = await cur.rows("latest_rows", {"start": start, "end": end}, shape)
    return [(r[0], r[5]) for r in rows]


async def opened(store: MysqlStore) -> MysqlStore:
    await store.open()
    return store


# ---- bytes ----

def test_keys_of_any_bytes_stay_distinct_and_sort_bytewise(mariadb_kind):
    async def body():
        async with while_open(mariadb_kind.store("bytes")) as store:
            await write(store, [(k, b"v" + k) for k in KEYS], rev=2)
            got = await latest(store, b"\x00")
            assert got == sorted((k, b"v" + k) for k in KEYS)
            assert all(type(k) is bytes and type(v) is bytes for k, v in got)
            for k in KEYS:  # equality never pads: b"a" is not b"a " nor b"a\0"
                assert await latest(store, k, None) == [(k, b"v" + k)]
            assert [k for k, _ in await latest(store, b"a", b"a\x01")] == [b"a", b"a\x00", b"a\x00\x00"]
            assert [k for k, _ in await latest(store, b"a ", b"a!")] == [b"a ", b"a \x00", b"a  "]
            assert [k for k, _ in await latest(store, b"\xff")] == [b"\xff", b"\xff\xff"]
            assert [k for k, _ in await latest(store, b"%", b"&")] == [b"%"]  # never a LIKE pattern
    run(body())


def test_the_primary_key_of_the_same_bytes_plus_a_trailing_space_or_nul_is_a_new_row(mariadb_kind):
    async def body():
        async with while_open(mariadb_kind.store("pk")) as store:
            await write(store, [(b"k", b"1")], rev=2)
            await write(store, [(b"k ", b"2"), (b"k\x00", b"3")], rev=3)  # no duplicate-key error
            assert await latest(store, b"k", b"l") == [(b"k", b"1"), (b"k\x00", b"3"), (b"k ", b"2")]
    run(body())


# ---- statements and DSNs ----

def test_every_statement_has_one_bound_value_per_marker_in_order():
    from backend_mysql.dialect import statements
    from kubefabric.store.statements import BUILDERS

    stmts = statements()
    keys = ("single", "bounded", "unbounded")
    # index_query's shape also names its plan (kubefabric.store.index_statements.parse_shape)
    plans = [f"{k};{mode};{reqs}" for k in keys for mode in ("head", "at")
             for reqs in ("1=1,1notin2,2!=1", "2in4,1exists0", "1!exists0,2!=1", "")]
    for name in [*BUILDERS, "upsert_kv", "upsert_meta"]:
        for shape in (plans if name == "index_query" else keys):
            for limited in (False, True):
                c = stmts.get(name, shape, limited)
                assert c.sql.count("%s") == len(c.params), (name, shape, limited, c.sql)
                assert "%" not in c.sql.replace("%s", "")
    history = stmts.get("history", "bounded", True)
    assert history.sql.rstrip().endswith("LIMIT %s") and history.params[-1] == "limit"


def test_a_mariadb_scheme_dsn_opens_the_same_store(mariadb_server, mariadb_kind):
    async def body():
        mysql_store = await opened(mariadb_kind.store("scheme"))
        dsn = mariadb_server.dsn(mariadb_kind.database("scheme")).replace("mysql://", "mariadb://")
        mariadb_store = await opened(MysqlStore(dsn))
        try:
            await write(mysql_store, [(b"k", b"v")], rev=2)
            assert await latest(mariadb_store, b"k", None) == [(b"k", b"v")]
        finally:
            await mysql_store.close()
            await mariadb_store.close()
    run(body())


# ---- key length ----

def test_the_key_column_is_the_widest_an_innodb_primary_key_of_key_rev_sub_allows(mariadb_server, mariadb_kind):
    db = mariadb_kind.database("width")
    ddl = "CREATE TABLE `{}`.w{} (k VARBINARY({}) NOT NULL, rev BIGINT NOT NULL, sub BIGINT NOT NULL, " \
          "PRIMARY KEY (k, rev, sub)) ENGINE=InnoDB ROW_FORMAT=DYNAMIC"
    widest = MysqlStore.max_key_bytes
    assert widest == schema.MYSQL_MAX_KEY_BYTES == 3072 - 16
    mariadb_server.admin(ddl.format(db, 1, widest))
    with pytest.raises(pymysql.err.OperationalError) as err:
        mariadb_server.admin(ddl.format(db, 2, widest + 1))
    assert err.value.args[0] == 1071  # ER_TOO_LONG_KEY: max key length is 3072 bytes


def test_the_longest_key_works_and_one_byte_more_is_refused_by_the_database(mariadb_kind):
    async def body():
        async with while_open(mariadb_kind.store("long")) as store:
            longest = b"\xff" + os.urandom(store.max_key_bytes - 1)  # incompressible
            await write(store, [(longest, b"v")], rev=2)
            assert await latest(store, longest, None) == [(longest, b"v")]
            with pytest.raises(pymysql.err.DataError) as err:
                await write(store, [(longest + b"\x00", b"v")], rev=3)
            assert err.value.args[0] == 1406  # ER_DATA_TOO_LONG (strict mode: never truncated)
            await store.rollback()
            assert await latest(store, longest[:1]) == [(longest, b"v")]
    run(body())


def test_etcd_sized_values_fit_through_max_allowed_packet_both_ways(mariadb_kind):
    """A 1.5 MiB value under the longest key, overwritten: the history row carries both values."""
    async def body():
        async with while_open(Shard(mariadb_kind.store("big"))) as shard:
            key = os.urandom(shard.store.max_key_bytes)
            first, second = os.urandom(3 * 2 ** 19), b"'\\\x00" * 2 ** 19
            await shard.put(pb.PutRequest(key=key, value=first))
            await shard.put(pb.PutRequest(key=key, value=second))
            events = await shard.history(KeyRange(key, None), 1, 3)
            assert [e.kv.value for e in events] == [first, second]
            assert events[1].prev_kv.value == first
    run(body())


def test_open_refuses_a_server_whose_max_allowed_packet_is_too_small(mariadb_server, mariadb_kind):
    mariadb_server.admin("SET GLOBAL max_allowed_packet = %s", (4 * 1024 * 1024,))
    try:
        with pytest.raises(MysqlStoreError, match=r"max_allowed_packet is 4194304 bytes.*at least 8388608"):
            run(mariadb_kind.store("packet").open())
    finally:
        mariadb_server.admin("SET GLOBAL max_allowed_packet = %s", (64 * 1024 * 1024,))
    assert MIN_MAX_ALLOWED_PACKET == 8 * 1024 * 1024


# ---- snapshots ----

def test_a_snapshot_is_established_on_entry(mariadb_kind):
    async def body():
        async with while_open(mariadb_kind.store("snap")) as store:
            async with store.snapshot() as before:  # no statement run in it yet
                await write(store, [(b"k", b"1")], rev=2)
                async with store.snapshot() as after:
                    assert await after.scalar("max_rev", {}) == 2
                    assert await after.scalar("latest_count", {"start": b"\x00"}, "unbounded") == 1
                assert await before.scalar("max_rev", {}) is None
                assert await before.scalar("latest_count", {"start": b"\x00"}, "unbounded") == 0
    run(body())


# ---- the writer connection (leadership itself: tests/shard/test_leadership.py) ----

def test_a_killed_writer_connection_loses_its_uncommitted_writes(mariadb_server, mariadb_kind):
    async def body():
        async with while_open(mariadb_kind.store("kill")) as a:
            await write(a, [(b"committed", b"1")], rev=2)
            cur = await a.begin()
            await cur.execute("upsert_meta", {"name": "pending", "value": 1})
            (connection,), = await cur.fetch("SELECT CONNECTION_ID()")
            mariadb_server.admin(f"KILL {int(connection)}")
            with pytest.raises(pymysql.err.OperationalError):
                await a.commit()
            await a.rollback()  # never raises on a broken connection
            with pytest.raises(MysqlStoreError, match="writer connection .* is closed"):
                await a.begin()
            async with a.snapshot() as cur:
                assert "pending" not in dict(await cur.rows("meta_all", {}))
                assert await cur.scalar("max_rev", {}) == 2
    run(body())


def test_the_writer_session_cannot_stay_silent_in_a_transaction(mariadb_kind):
    """limit_writer_silence: the server ends the writer's session once it sat idle in a
    transaction for about a lease (a frozen leader's batch), its lock waits after two."""
    async def body():
        async with while_open(mariadb_kind.store("silent")) as store:
            await store.limit_writer_silence(0.4)
            (idle, lock_wait, statement), = await store._w.fetch(
                "SELECT @@idle_transaction_timeout, @@innodb_lock_wait_timeout, @@max_statement_time")
            assert (idle, lock_wait, float(statement)) == (1, 1, 10.0)
            cur = await store.begin()
            await cur.execute("upsert_meta", {"name": "pending", "value": 1})
            await asyncio.sleep(2.5)
            with pytest.raises(pymysql.err.OperationalError):
                await store.commit()
            await store.rollback()
    run(body())


def test_a_second_shard_on_the_same_database_is_refused_while_the_first_serves(mariadb_kind):
    async def body():
        async with while_open(Shard(mariadb_kind.store("busy"))) as first:
            second = Shard(mariadb_kind.store("busy"))
            with pytest.raises(ShardBusy, match="lease is held by pid .* not released within 1s"):
                await second.open(wait_s=1)
    run(body())


# ---- errors ----

def test_open_errors_name_the_server_never_the_password(mariadb_server, mariadb_kind):
    port = free_port()  # nothing listens there: a stopped server
    dsn = mariadb_server.dsn(mariadb_kind.database("gone")).replace(f":{mariadb_server.port}/", f":{port}/")
    with pytest.raises(MysqlStoreError) as err:
        run(MysqlStore(parse_dsn(dsn)).open())
    text = str(err.value)
    assert f"127.0.0.1:{port}" in text and "cannot connect" in text and "gone" in text
    assert MariadbServer.PASSWORD not in text and "p@ss" not in text
    wrong = mariadb_server.dsn("x").replace("kf%20p", "kf%20q")  # a wrong password
    with pytest.raises(MysqlStoreError, match="Access denied") as err:
        run(MysqlStore(parse_dsn(wrong)).open())
    assert "q@ss" not in str(err.value) and err.value.__cause__ is None


@pytest.mark.parametrize("exc, full", [
    (pymysql.err.OperationalError(1114, "The table 'kf_log' is full"), True),
    (pymysql.err.OperationalError(1021, "Disk full (/tmp/#sql_1.MAI); waiting for someone to free some space..."), True),
    (pymysql.err.InternalError(1030, 'Got error 28 "No space left on device" from storage engine InnoDB'), True),
    (pymysql.err.OperationalError(1026, 'Error writing file \'./ib_logfile0\' (Errcode: 28 "No space left on device")'), True),
    (pymysql.err.IntegrityError(1062, "Duplicate entry 'k' for key 'PRIMARY'"), False),
    (pymysql.err.OperationalError(1205, "Lock wait timeout exceeded; try restarting transaction"), False),
    (pymysql.err.InternalError(1030, 'Got error 128 "Too many transactions" from storage engine InnoDB'), False),
    (OSError(28, "No space left on device"), False),  # not the database's refusal
])
def test_is_disk_full_recognises_the_servers_disk_full_errors(exc, full):
    assert MysqlStore.is_disk_full(exc) is full


# ---- a private server: crash, restart, a full tablespace ----

@pytest.fixture
def own_server():
    """A server of this test's own (system tablespace capped at 32 MiB, no file per table), for
    crashes and a real "table is full"."""
    server = MariadbServer(extra_args=("--innodb-file-per-table=0",
                                       "--innodb-data-file-path=ibdata1:12M:autoextend:max:32M"))
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def test_committed_writes_survive_a_crash_and_the_writer_notices_the_restart(own_server):
    own_server.create_database("crash")

    async def body():
        shard = Shard(MysqlStore(parse_dsn(own_server.dsn("crash"))))
        await shard.open()
        for i in range(20):
            await shard.put(pb.PutRequest(key=b"k%d" % i, value=b"v"))
        own_server.kill()
        with pytest.raises(EtcdError):
            await shard.put(pb.PutRequest(key=b"lost", value=b"v"))
        own_server.restart()  # recovers the crashed data directory
        await shard.close()
        async with while_open(Shard(MysqlStore(parse_dsn(own_server.dsn("crash"))))) as shard:
            got = await shard.range(pb.RangeRequest(key=b"\x00", range_end=b"\x00"))
            assert got.header.revision == 21 and len(got.kvs) == 20
    run(body())


def test_a_full_tablespace_raises_etcds_nospace_alarm(own_server):
    own_server.create_database("full")

    async def body():
        async with while_open(Shard(MysqlStore(parse_dsn(own_server.dsn("full"))))) as shard:
            for i in range(200):  # 200 x 1 MiB > the 32 MiB tablespace
                try:
                    await shard.put(pb.PutRequest(key=b"k%d" % i, value=os.urandom(2 ** 20)))
                except EtcdError as err:
                    assert err.code == errors.NO_SPACE.code, err
                    break
            else:
                pytest.fail("the tablespace never filled up")
            with pytest.raises(EtcdError) as err:  # the alarm refuses writes from now on
                await shard.put(pb.PutRequest(key=b"more", value=b"v"))
            assert err.value.code == errors.NO_SPACE.code
    run(body())


# ---- cancellation: a connection left mid-protocol is never reused ----

def test_a_statement_cancelled_mid_flight_never_leaves_its_connection_in_use(mariadb_kind):
    async def cancelled(coro) -> None:
        task = asyncio.create_task(coro)
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def slow_read(store):
        async with store.snapshot() as cur:
            await cur.fetch("SELECT SLEEP(1)")

    async def body():
        async with while_open(mariadb_kind.store("cancel")) as store:
            await write(store, [(b"k", b"v")], rev=2)
            await cancelled(slow_read(store))
            for _ in range(2 * store.read_pool_size):  # every pooled connection answers its own query
                assert await latest(store, b"k", None) == [(b"k", b"v")]
            cur = await store.begin()
            await cancelled(cur.fetch("SELECT SLEEP(1)"))
            await store.rollback()  # closes the connection: its reply is still on the way
            with pytest.raises(MysqlStoreError, match="writer connection .* is closed"):
                await store.begin()  # never on a connection left mid-protocol: reopen the store
            assert await latest(store, b"k", b"l") == [(b"k", b"v")]
    run(body())


# ---- TLS from the DSN ----

def _certificates(directory) -> dict[str, str]:
    """A CA, and a server certificate for 127.0.0.1 signed by it; plus an unrelated CA."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(subject, key, issuer, issuer_key, ca: bool, san=None):
        now = datetime.datetime.now(datetime.timezone.utc)
        b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san))]), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    def write(fname, data):
        path = directory / fname
        path.write_bytes(data)
        return str(path)

    out = {}
    for ca_name in ("ca", "other-ca"):
        key = ec.generate_private_key(ec.SECP256R1())
        out[ca_name] = (key, cert(ca_name, key, ca_name, key, True))
        out[ca_name + ".pem"] = write(ca_name + ".pem", out[ca_name][1].public_bytes(serialization.Encoding.PEM))
    ca_key, _ = out["ca"]
    key = ec.generate_private_key(ec.SECP256R1())
    out["server.pem"] = write("server.pem", cert("127.0.0.1", key, "ca", ca_key, False, "127.0.0.1")
                              .public_bytes(serialization.Encoding.PEM))
    out["server.key"] = write("server.key", key.private_bytes(serialization.Encoding.PEM,
                                                              serialization.PrivateFormat.TraditionalOpenSSL,
                                                              serialization.NoEncryption()))
    return out


def test_tls_parameters_of_the_dsn_reach_the_server(tmp_path):
    files = _certificates(tmp_path)
    server = MariadbServer(extra_args=(f"--ssl-ca={files['ca.pem']}", f"--ssl-cert={files['server.pem']}",
                                       f"--ssl-key={files['server.key']}"))
    try:
        server.start()
        server.create_database("tls")
        server.admin(f"ALTER USER '{server.USER}'@'127.0.0.1' REQUIRE SSL")

        async def cipher(query: str) -> str:
            async with while_open(MysqlStore(parse_dsn(server.dsn("tls") + query))) as store:
                async with store.snapshot() as cur:
                    return (await cur.fetch("SHOW SESSION STATUS LIKE 'Ssl_cipher'"))[0][1]

        assert run(cipher(f"?ssl-ca={files['ca.pem']}"))  # VERIFY_IDENTITY: CA and 127.0.0.1
        assert run(cipher("?ssl-mode=REQUIRED"))  # encrypted, unverified
        with pytest.raises(MysqlStoreError, match="cannot connect.*(?i:certificate)"):
            run(cipher(f"?ssl-ca={files['other-ca.pem']}&ssl-mode=VERIFY_CA"))
        with pytest.raises(MysqlStoreError, match="Access denied"):  # the user requires TLS
            run(cipher(""))
    finally:
        server.cleanup()
