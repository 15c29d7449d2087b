"""Shard conformance: the storage model (DESIGN §2) and the revision invariants (DESIGN §3),
driven in-process on `Shard` over every store kind of `store_factory` (see conftest.py).

Expected results come from harness.shard.model.Model (etcd's MVCC semantics), never from the shard itself.
"""
from __future__ import annotations

import asyncio
import random
import time

import pytest

from kubefabric.etcd import errors
from kubefabric.etcd.errors import EtcdError
from kubefabric.etcd.keyrange import EVERY_KEY, KeyRange
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.mvccpb.kv_pb2 import Event
from kubefabric.shard import history
from harness.shard.kit import (Recorder, check_every_revision, check_request, expect, head, log_rows, opened,
                      outcome, random_history, run_shard, show, without_prev)
from harness.shard.model import Model, prefix_end

ALL = dict(key=b"\x00", range_end=b"\x00")


def put(key, value=b"", **kw):
    return pb.RequestOp(request_put=pb.PutRequest(key=key, value=value, **kw))


def delete(key, end=b"", **kw):
    return pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key, range_end=end, **kw))


def test_fresh_store_is_at_revision_1(store_factory):
    async def body(shard):
        resp = await shard.range(pb.RangeRequest(**ALL))
        assert (resp.header.revision, resp.count, list(resp.kvs)) == (1, 0, [])
        assert resp.header.raft_term >= 1 and resp.header.cluster_id and resp.header.member_id
        assert await shard.history(EVERY_KEY, 1, 1) == []
        assert await log_rows(shard.store) == 0
        assert await shard.sync(1) == 1
    run_shard(store_factory, body)


def test_revisions_are_dense_and_no_op_requests_take_none(store_factory):
    async def body(shard):
        m, rec = Model(), Recorder(shard)

        async def step(req, rev):
            resp = await check_request(shard, m, req)
            assert not isinstance(resp, EtcdError) and resp.header.revision == rev, show(resp)

        await step(pb.PutRequest(key=b"a", value=b"1"), 2)
        await step(pb.PutRequest(key=b"a", value=b"1"), 3)            # same value: still a change
        await step(pb.DeleteRangeRequest(key=b"missing"), 3)         # no-op
        await step(pb.DeleteRangeRequest(key=b"x", range_end=b"y"), 3)
        never = pb.Compare(key=b"a", target=pb.Compare.VERSION, result=pb.Compare.GREATER, version=9)
        await step(pb.TxnRequest(compare=[never], success=[put(b"no")]), 3)  # empty failure branch
        await step(pb.TxnRequest(success=[pb.RequestOp(request_range=pb.RangeRequest(key=b"a"))]), 3)
        await step(pb.TxnRequest(compare=[never], failure=[put(b"b"), put(b"c")]), 4)
        await step(pb.DeleteRangeRequest(key=b"b", range_end=b"d"), 5)  # two keys, one revision
        assert isinstance(await outcome(shard.put(pb.PutRequest(key=b"z", lease=77))), EtcdError)
        assert await shard.lease_grant(5, 3600) == (5, 3600)
        assert await shard.lease_revoke(5) == 5                      # no keys: no revision
        assert await shard.sync(3) == 5
        assert (await shard.compact(4)).header.revision == 5
        m.compact(4)
        await step(pb.PutRequest(key=b"a", value=b"2"), 6)
        assert [r for r, _ in rec.published] == [2, 3, 4, 5, 6] and not rec.problems
    run_shard(store_factory, body)


def test_txn_rows_share_one_revision_in_op_order(store_factory):
    """A txn that updates, deletes a range, re-puts a deleted key (a "\\0" range_end escapes
    etcd's duplicate check) and creates: one revision, events in op order."""
    async def body(shard):
        m, rec = Model(), Recorder(shard)
        for key in (b"a1", b"m", b"n"):
            await check_request(shard, m, pb.PutRequest(key=key, value=b"old"))
        txn = pb.TxnRequest(success=[put(b"a1", b"new"), delete(b"m", b"\x00", prev_kv=True),
                                     put(b"m", b"again"), put(b"a2", b"created")])
        resp = await check_request(shard, m, txn)
        rev = resp.header.revision
        assert rev == 5
        events = await shard.history(EVERY_KEY, rev, rev)
        assert [(e.type, e.kv.key) for e in events] == [
            (Event.PUT, b"a1"), (Event.DELETE, b"m"), (Event.DELETE, b"n"), (Event.PUT, b"m"), (Event.PUT, b"a2")]
        assert {e.kv.mod_revision for e in events} == {rev}
        assert show(events) == show(rec.events(rev, rev)) == show(m.history(rev, rev))
        assert await log_rows(shard.store) == 3 + 5 == len(m.rows)
        await check_every_revision(shard, m, 1, rev)
    run_shard(store_factory, body)


def test_group_commit_concurrent_writes_are_dense_and_readable(store_factory):
    n = 300

    async def body(shard):
        base, rec = await head(shard), Recorder(shard)
        done = False

        async def writer(i):
            key, value = b"g/%03d" % i, b"%d" % i
            resp = await shard.put(pb.PutRequest(key=key, value=value))
            got = await shard.range(pb.RangeRequest(key=key))  # acknowledged => readable
            assert [(kv.value, kv.mod_revision) for kv in got.kvs] == [(value, resp.header.revision)]
            assert got.header.revision >= resp.header.revision
            return resp.header.revision

        async def reader():
            seen = 0
            while not done:  # every snapshot is exactly the state at its header revision
                resp = await shard.range(pb.RangeRequest(key=b"g/", range_end=b"g0", count_only=True))
                assert resp.count == resp.header.revision - base and resp.header.revision >= seen
                seen = resp.header.revision
                await asyncio.sleep(0)

        readers = [asyncio.create_task(reader()) for _ in range(3)]
        revs = await asyncio.gather(*(writer(i) for i in range(n)))
        done = True
        await asyncio.gather(*readers)
        assert sorted(revs) == list(range(base + 1, base + n + 1))
        assert rec.calls < n, "every put committed alone: no group commit"
        final = await shard.range(pb.RangeRequest(key=b"g/", range_end=b"g0"))
        assert [kv.mod_revision for kv in final.kvs] == revs
        assert [r for r, _ in rec.published] == list(range(base + 1, base + n + 1)) and not rec.problems
    run_shard(store_factory, body)


@pytest.mark.parametrize("seed", [1, 2])
def test_reads_at_every_past_revision_match_the_model(store_factory, seed):
    async def body(shard):
        m = Model()
        await random_history(shard, m, seed, steps=70)
        assert await log_rows(shard.store) == len(m.rows)
        await check_every_revision(shard, m, 1, m.head)
    run_shard(store_factory, body)


def test_compaction_removes_superseded_rows_and_keeps_later_reads(store_factory):
    async def body(shard):
        m = Model()
        await random_history(shard, m, 5, steps=80)
        before = await shard.history(EVERY_KEY, 1, m.head)
        last = 0
        for c in (m.head // 3, 2 * m.head // 3, m.head):
            assert show(await shard.compact(c, physical=True)) == show(m.compact(c))
            assert await log_rows(shard.store) == m.log_rows(), f"rows left after compaction at {c}"
            await check_request(shard, m, pb.RangeRequest(**ALL, revision=c - 1))  # COMPACTED
            await check_request(shard, m, pb.RangeRequest(key=b"a", revision=last))
            await check_every_revision(shard, m, c, m.head)
            after = [e for e in before if e.kv.mod_revision > c]
            assert show(await shard.history(EVERY_KEY, c + 1, m.head)) == show(after)
            last = c
        for bad in (m.compacted, m.compacted - 1, m.head + 1):
            assert show(await outcome(shard.compact(bad))) == show(expect(m.compact, bad))
        await check_request(shard, m, pb.PutRequest(key=b"after", value=b"1"))
        await check_every_revision(shard, m, m.compacted, m.head)
    run_shard(store_factory, body)


def test_physical_compaction_of_many_rows_runs_in_batches_between_writes(store_factory):
    rounds, width = 30, 128  # 3,712 superseded rows: four compaction batches of at most 1,000

    async def body(shard):
        for r in range(rounds):
            await shard.txn(pb.TxnRequest(success=[put(b"k/%03d" % i, b"%d" % r) for i in range(width)]))
        assert await log_rows(shard.store) == rounds * width
        c = await head(shard)
        task = asyncio.create_task(shard.compact(c, physical=True))
        while await log_rows(shard.store) == rounds * width:  # until a first batch is gone
            await asyncio.sleep(0)
        resp = await shard.put(pb.PutRequest(key=b"during", value=b"x"))
        assert resp.header.revision == c + 1
        left = await log_rows(shard.store)
        assert left > width + 1 and not task.done(), "compaction ran as one step: writers were blocked"
        await task
        assert await log_rows(shard.store) == width + 1
        got = await shard.range(pb.RangeRequest(key=b"k/", range_end=b"k0", revision=c))
        assert [kv.value for kv in got.kvs] == [b"%d" % (rounds - 1)] * width and got.count == width
    run_shard(store_factory, body)


def test_compaction_interrupted_by_close_finishes_after_reopen(store_factory):
    async def body():
        async with opened(store_factory()) as shard:
            for r in range(10):
                await shard.txn(pb.TxnRequest(success=[put(b"k/%03d" % i, b"%d" % r) for i in range(128)]))
            c = await head(shard)
            await shard.compact(c)  # logical now, rows removed in the background; closed at once
        async with opened(store_factory()) as shard:
            assert isinstance(await outcome(shard.range(pb.RangeRequest(key=b"k/", revision=c - 1))), EtcdError)
            deadline = time.monotonic() + 10
            while await log_rows(shard.store) != 128:
                assert time.monotonic() < deadline, "compaction did not resume after reopen"
                await asyncio.sleep(0.02)
    asyncio.run(body())


def test_reopen_continues_the_revision_and_raises_the_term(store_factory):
    async def body():
        m = Model()
        async with opened(store_factory()) as shard:
            await random_history(shard, m, 9, steps=30)
            await check_request(shard, m, pb.PutRequest(key=b"held", value=b"1", lease=2))
            await shard.compact(m.head - 5, physical=True)
            m.compact(m.head - 5)
            first = (await shard.range(pb.RangeRequest(key=b"a"))).header
        for _ in range(2):
            async with opened(store_factory()) as shard:
                h = (await shard.range(pb.RangeRequest(key=b"a"))).header
                assert h.revision == m.head, "revision changed across a restart"
                assert h.raft_term > first.raft_term, "the term did not rise on reopen"
                assert (h.cluster_id, h.member_id) == (first.cluster_id, first.member_id)
                first = h
                await check_request(shard, m, pb.PutRequest(key=b"next", value=b"%d" % m.head))
                assert len(await shard.history(EVERY_KEY, m.head, m.head)) == 1  # no reused revision
                await check_every_revision(shard, m, m.compacted - 1, m.head)  # leases and compaction kept
        async with opened(store_factory()) as shard:
            rec = Recorder(shard)
            assert await shard.lease_revoke(2) == m.lease_revoke(2)
            assert show(rec.events()) == show(m.history(m.head, m.head)) and b"held" not in m.live
    asyncio.run(body())


def test_sync_moves_the_clock_without_rows_and_survives_reopen(store_factory):
    async def body():
        m = Model()
        async with opened(store_factory()) as shard:
            rec = Recorder(shard)
            await check_request(shard, m, pb.PutRequest(key=b"a", value=b"1"))
            assert await shard.sync(100) == m.sync(100) == 100
            assert await shard.sync(50) == 100 and await head(shard) == 100
            assert await log_rows(shard.store) == 1 and len(rec.published) == 1
            await check_request(shard, m, pb.PutRequest(key=b"b", value=b"2"))  # 101
            await check_every_revision(shard, m, 1, m.head)
            c, s, d = await asyncio.gather(shard.put(pb.PutRequest(key=b"c")), shard.sync(500),
                                           shard.put(pb.PutRequest(key=b"d")))
            assert (c.header.revision, s, d.header.revision) == (102, 500, 501), "sync not applied in order"
        async with opened(store_factory()) as shard:
            assert await head(shard) >= 501
            resp = await shard.put(pb.PutRequest(key=b"e"))
            assert resp.header.revision > 501
        async with opened(store_factory()) as shard:
            await shard.sync(30_000)
        async with opened(store_factory()) as shard:  # the floor persisted by the sync itself
            assert await head(shard) >= 30_000
    asyncio.run(body())


def test_lease_revoke_deletes_attached_keys_at_one_revision(store_factory):
    async def body(shard):
        m, rec = Model(), None
        assert await shard.lease_grant(5, 3600) == (5, 3600) and m.lease_grant(5)
        assert isinstance(await outcome(shard.lease_grant(5, 60)), EtcdError)  # LEASE_EXIST
        for key, lease in ((b"x1", 5), (b"x2", 5), (b"y", 0), (b"x4", 5), (b"x2", 5), (b"x4", 0)):
            await check_request(shard, m, pb.PutRequest(key=key, value=key, lease=lease))
        await check_request(shard, m, pb.TxnRequest(success=[put(b"x3", b"t", lease=5)]))
        assert await shard.lease_keys(5) == [b"x1", b"x2", b"x3"]
        rec = Recorder(shard)
        rev = await shard.lease_revoke(5)
        assert rev == m.lease_revoke(5) == 9
        assert [r for r, _ in rec.published] == [rev]
        assert show(rec.events()) == show(await shard.history(EVERY_KEY, rev, rev)) == show(m.history(rev, rev))
        assert [e.type for e in rec.events()] == [Event.DELETE] * 3
        await check_every_revision(shard, m, rev - 1, rev)
        assert show(await outcome(shard.lease_revoke(5))) == show(errors.LEASE_NOT_FOUND)
        await check_request(shard, m, pb.PutRequest(key=b"x9", lease=5))  # LEASE_NOT_FOUND
    run_shard(store_factory, body)


def test_lease_expiry_deletes_attached_keys_at_one_revision(store_factory):
    async def body(shard):
        rec = Recorder(shard)
        await shard.lease_grant(9, 1)
        for key in (b"e1", b"e2"):
            await shard.put(pb.PutRequest(key=key, value=b"v", lease=9))
        before = await head(shard)
        deadline = time.monotonic() + 6
        while len(rec.published) < 3:
            assert time.monotonic() < deadline, "lease of 1 s did not expire within 6 s"
            await asyncio.sleep(0.05)
        rev, events = rec.published[2]
        assert rev == before + 1 and [(e.type, e.kv.key, e.prev_kv.key) for e in events] == [
            (Event.DELETE, b"e1", b"e1"), (Event.DELETE, b"e2", b"e2")]
        assert (await shard.range(pb.RangeRequest(**ALL))).count == 0
        assert await shard.lease_renew(9) == 0 and await shard.lease_keys(9) == []
    run_shard(store_factory, body, min_lease_ttl=1)


def test_listener_sees_every_revision_in_order_and_history_agrees(store_factory):
    async def body(shard):
        m, rec = Model(), Recorder(shard)
        await random_history(shard, m, 3, steps=80)
        await check_request(shard, m, pb.PutRequest(key=b"a", value=b"x"))
        await check_request(shard, m, pb.TxnRequest(success=[delete(b"a", b"\x00"), put(b"a", b"re")]))
        assert not rec.problems
        assert [r for r, _ in rec.published] == [r for r, _ in m.events] == list(range(2, m.head + 1))
        for rev, events in rec.published:
            assert {e.kv.mod_revision for e in events} == {rev}
        everything = await shard.history(EVERY_KEY, 1, m.head)
        assert show(everything) == show(rec.events())
        assert show(without_prev(everything)) == show(without_prev(m.history(1, m.head)))
        rng = random.Random(0)
        for key, end in ((b"a", prefix_end(b"a")), (b"\xff", b"\x00"), (b"a_", b""), (b"\\", b"b\x80")):
            lo = rng.randint(1, m.head)
            hi = rng.randint(lo, m.head)
            want = [e for e in rec.events(lo, hi) if KeyRange.of(key, end).contains(e.kv.key)]
            assert show(await shard.history(KeyRange.of(key, end), lo, hi)) == show(want)
    run_shard(store_factory, body)


def test_event_prev_kv_is_the_key_before_the_txn(store_factory):
    """etcd's prev_kv is the key at mod_revision - 1 (checked against etcd 3.4): after a put in the
    same txn a DELETE's prev_kv is the value before the txn, or none for a key the txn created."""
    async def body(shard):
        m, rec = Model(), Recorder(shard)
        await check_request(shard, m, pb.PutRequest(key=b"k", value=b"v1"))
        await check_request(shard, m, pb.TxnRequest(success=[put(b"k", b"v2"), delete(b"k", b"\x00")]))
        await check_request(shard, m, pb.TxnRequest(success=[put(b"n", b"v9"), delete(b"n", b"\x00")]))
        await random_history(shard, m, 4, steps=60)
        assert show(rec.events()) == show(m.history(1, m.head))
        assert show(await shard.history(EVERY_KEY, 1, m.head)) == show(m.history(1, m.head))
    run_shard(store_factory, body)


def test_a_request_failing_mid_apply_fails_alone_in_its_batch(store_factory):
    """[delete k.."\\0", put k ignore_value] passes every pre-check (k exists before the txn) but has
    no value to keep once the delete ran (etcd panics here). It is refused alone (KEY_NOT_FOUND),
    its delete undone, taking no revision, while its batch neighbours commit densely."""
    async def body(shard):
        rec = Recorder(shard)
        await shard.put(pb.PutRequest(key=b"z", value=b"1"))
        bad = pb.TxnRequest(success=[delete(b"z", b"\x00"), put(b"z", ignore_value=True)])
        first, refused, second = await asyncio.gather(outcome(shard.put(pb.PutRequest(key=b"o1", value=b"x"))),
                                                      outcome(shard.txn(bad)),
                                                      outcome(shard.put(pb.PutRequest(key=b"o2", value=b"y"))))
        assert show(refused) == show(errors.KEY_NOT_FOUND)
        assert [show(r) for r in (first, second)] == ["header {\n  revision: 3\n}\n", "header {\n  revision: 4\n}\n"]
        got = await shard.range(pb.RangeRequest(**ALL))
        assert [(kv.key, kv.value) for kv in got.kvs] == [(b"o1", b"x"), (b"o2", b"y"), (b"z", b"1")]
        assert got.header.revision == 4 and [r for r, _ in rec.published] == [2, 3, 4]
        assert [(e.type, e.kv.key) for e in rec.events()] == [(Event.PUT, k) for k in (b"z", b"o1", b"o2")]
        assert show(await shard.history(EVERY_KEY, 1, 4)) == show(rec.events())
    run_shard(store_factory, body)



class _FailingAfterWrite:
    """The writer's cursor, except that the put of `key` meets a real database error after its
    rows were written (PostgreSQL then aborts the whole transaction, SQLite keeps it)."""

    def __init__(self, cur, key: bytes):
        self._cur, self._key = cur, key

    def __getattr__(self, name):
        return getattr(self._cur, name)

    async def execute(self, name: str, values: dict) -> int:
        changed = await self._cur.execute(name, values)
        if name == "upsert_kv" and values["key"] == self._key:
            await self._cur.fetch("SELECT * FROM kf_no_such_table", ())
        return changed


def test_puts_deletes_and_txns_take_no_savepoint_and_a_database_error_still_fails_alone(store_factory):
    """Put, DeleteRange and Txn run without a savepoint of their own. A database error after a put's
    first write undoes the whole transaction; the batch runs again, the bad put fails alone with
    none of its rows left, its neighbours commit densely and nothing rolled back was acknowledged."""
    store = store_factory()
    savepoints = []
    real_savepoint, real_begin = store.savepoint, store.begin

    async def savepoint():
        savepoints.append(1)
        await real_savepoint()

    async def begin():
        return _FailingAfterWrite(await real_begin(), b"bad")

    store.savepoint, store.begin = savepoint, begin

    async def main():
        async with opened(store) as shard:
            rec = Recorder(shard)
            await shard.put(pb.PutRequest(key=b"z", value=b"1"))
            await asyncio.gather(*(shard.put(pb.PutRequest(key=b"p%d" % i, value=b"v")) for i in range(3)),
                                 shard.delete_range(pb.DeleteRangeRequest(key=b"p0")),
                                 shard.txn(pb.TxnRequest(success=[put(b"t", b"v")])))
            assert savepoints == [], "a put, a delete or a txn took a savepoint"
            first, refused, deleted, second = await asyncio.gather(
                outcome(shard.put(pb.PutRequest(key=b"o1", value=b"x"))),
                outcome(shard.put(pb.PutRequest(key=b"bad", value=b"b"))),
                outcome(shard.delete_range(pb.DeleteRangeRequest(key=b"z"))),
                outcome(shard.put(pb.PutRequest(key=b"o2", value=b"y"))))
            assert isinstance(refused, EtcdError) and refused.message.startswith("etcdserver: internal error"), refused
            assert [r.header.revision for r in (first, deleted, second)] == [8, 9, 10]
            assert deleted.deleted == 1 and len(savepoints) == 4  # the second run: one per request
            got = await shard.range(pb.RangeRequest(**ALL))
            assert [(kv.key, kv.value) for kv in got.kvs] == [(b"o1", b"x"), (b"o2", b"y"), (b"p1", b"v"), (b"p2", b"v"), (b"t", b"v")]
            assert got.header.revision == 10 and [r for r, _ in rec.published] == list(range(2, 11))
            assert b"bad" not in [e.kv.key for e in rec.events()]
            assert show(await shard.history(EVERY_KEY, 1, 10)) == show(rec.events())
            assert (await shard.put(pb.PutRequest(key=b"o3"))).header.revision == 11
    asyncio.run(main())


ODD_KEYS = [b"\x00", b"\x00\x00", b"\x00a", b"a", b"A", b"a ", b"a\x00", b"a\x00b", b"a%", b"a%b", b"a_",
            b"a_b", b"ab", b"a\\", b"a\\%", b"\\", b"%", b"_", b"'", b"\x7f", b"\x80", b"\xc3\xa9", b"\xe9",
            b"\xed\xa0\x80", b"\xff", b"\xff\x00", b"\xff\xff", b"a'; DROP TABLE kf_log; --"]


def test_keys_of_any_bytes_store_range_and_sort_bytewise(store_factory):
    async def body(shard):
        m = Model()
        for key in ODD_KEYS:
            await check_request(shard, m, pb.PutRequest(key=key, value=b"\x00" + key + b"\xff"))
        got = await shard.range(pb.RangeRequest(**ALL))
        assert [kv.key for kv in got.kvs] == sorted(ODD_KEYS)
        assert all(kv.value == b"\x00" + kv.key + b"\xff" for kv in got.kvs)
        mid = m.head
        await check_request(shard, m, pb.DeleteRangeRequest(key=b"a%", range_end=prefix_end(b"a%")))
        await check_request(shard, m, pb.DeleteRangeRequest(key=b"\\"))
        await check_request(shard, m, pb.PutRequest(key=b"a_", value=b"changed"))
        for rev in (0, mid):  # the newest state and an older one: both read paths
            for start in ODD_KEYS:
                await check_request(shard, m, pb.RangeRequest(key=start, revision=rev))
                await check_request(shard, m, pb.RangeRequest(key=start, range_end=prefix_end(start), revision=rev))
                await check_request(shard, m, pb.RangeRequest(key=start, range_end=b"\x00", revision=rev,
                                                              sort_order=pb.RangeRequest.DESCEND, limit=3))
                for end in ODD_KEYS[::3]:
                    await check_request(shard, m, pb.RangeRequest(key=start, range_end=end, revision=rev))
        cmp = pb.Compare(key=b"a\x00b", target=pb.Compare.VALUE, result=pb.Compare.EQUAL, value=b"\x00a\x00b\xff")
        assert (await check_request(shard, m, pb.TxnRequest(compare=[cmp]))).succeeded
        hist = await shard.history(KeyRange(b"a%", prefix_end(b"a%")), 1, m.head)
        assert [(e.type, e.kv.key) for e in hist] == [
            (Event.PUT, b"a%"), (Event.PUT, b"a%b"), (Event.DELETE, b"a%"), (Event.DELETE, b"a%b")]
    run_shard(store_factory, body)


@pytest.mark.parametrize("page", [1, 3, 7])
def test_history_pages_never_split_or_repeat_a_revision(store_factory, monkeypatch, page):
    monkeypatch.setattr(history, "HISTORY_PAGE", page)

    async def body(shard):
        m, rec = Model(), Recorder(shard)
        for size in (1, 2, 3, 7, 8, 12, 1, 6, 14):
            keys = [b"h/%02d" % i for i in range(size)]
            await check_request(shard, m, pb.TxnRequest(success=[put(k, b"%d" % size) for k in keys]))
            await check_request(shard, m, pb.PutRequest(key=b"h/single", value=b"%d" % size))
        await check_request(shard, m, pb.DeleteRangeRequest(key=b"h/", range_end=b"h0"))
        for lo in range(1, m.head + 1, 2):
            for hi in (lo, lo + 1, lo + 4, m.head):
                assert show(await shard.history(EVERY_KEY, lo, hi)) == show(rec.events(lo, hi)), (lo, hi)
    run_shard(store_factory, body)
