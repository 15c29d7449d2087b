"""The shard's leader lease (kubefabric.shard.leadership) on every store: SQLite, PostgreSQL and
MariaDB (real servers). Two campaigns on one database stand for two replicas: one term at a time,
takeover only once the lease ran out (or its holder exited), every renewal fenced by the term,
and a takeover serialised with a batch that holds the lease row: it happens before or after the
batch, never between its fence and its commit. The process-level behaviour (SIGSTOP a leader
under load) is tests/robustness/test_frozen_leader.py."""
from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time

import pytest

from kubefabric.shard import holder as holders
from kubefabric.shard.core import Shard, ShardBusy
from kubefabric.shard.leadership import Campaign, LeaderRow

LEASE_S = 1.0


def run(coro):
    return asyncio.run(coro)


async def opened(store_factory, name: str, n: int = 2):
    stores = [store_factory(name) for _ in range(n)]
    for s in stores:
        await s.open()
        await s.limit_writer_silence(LEASE_S)
    return stores


async def close(*stores) -> None:
    for s in stores:
        await s.close()


@contextlib.asynccontextmanager
async def a_holds_the_lease(store_factory, name: str):
    """Two replicas' stores a and b on one database, their campaigns ca and cb, and the lease a
    took: (a, b, ca, cb, lease_a); both stores closed on the way out."""
    a, b = await opened(store_factory, name)
    try:
        ca, cb = Campaign(a, "a:1", LEASE_S), Campaign(b, "b:1", LEASE_S)
        yield a, b, ca, cb, await ca.take(await ca.read())
    finally:
        await close(a, b)


async def take_when_free(campaign: Campaign, timeout: float = 10.0):
    """A replica's loop: read the row, take the lease when it is free."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await campaign.read()
        if campaign.vacancy(row) is not None and (lease := await campaign.take(row)) is not None:
            return lease
        await asyncio.sleep(campaign.poll_after(row))
    raise AssertionError(f"the lease was not free within {timeout}s: {row}")


async def write_marker(store, lease, name: str) -> bool:
    """One fenced batch: renew, write a meta row, commit; False when fenced (rolled back)."""
    cur = await store.begin()
    sent = await lease.extend(cur)
    if sent is None:
        await store.rollback()
        return False
    await cur.execute("upsert_meta", {"name": name, "value": lease.term})
    await store.commit()
    lease.confirm(sent)
    return True


async def markers(store) -> dict:
    async with store.snapshot() as cur:
        return {k: v for k, v in await cur.rows("meta_all", {}) if k.startswith("by_")}


def test_one_term_at_a_time_and_a_resigned_lease_is_taken_at_once(store_factory):
    async def body():
        a, b = await opened(store_factory, "one")
        try:
            ca, cb = Campaign(a, "a:1", LEASE_S), Campaign(b, "b:1", LEASE_S)
            row = await ca.read()
            assert (row.term, row.holder, row.expired) == (1, "", True)  # a new database: no leader
            lease_a = await ca.take(row)
            assert lease_a.term == 2 and lease_a.valid()  # etcd's first term
            assert await ca.take(row) is None  # the row moved on: the same view cannot win twice
            seen = await cb.read()
            assert (seen.term, seen.address, cb.vacancy(seen)) == (2, "a:1", None)
            assert await write_marker(a, lease_a, "by_a")
            await lease_a.resign(a)
            lease_b = await cb.take(await cb.read())  # no waiting for the lease to run out
            assert lease_b.term == 3 and not lease_a.valid()
            assert not await write_marker(a, lease_a, "by_a_after")  # fenced: rolled back
            assert await write_marker(b, lease_b, "by_b")
            assert await markers(b) == {"by_a": 2, "by_b": 3}
            async with b.snapshot() as cur:  # replicas report the term from kf_meta
                assert await cur.scalar("meta_value", {"name": "term"}) == 3
        finally:
            await close(a, b)
    run(body())


def test_a_second_shard_gives_up_after_its_wait_not_a_lease_later(store_factory):
    """Shard.open(wait_s) on a lease another live holder keeps: ShardBusy once wait_s is over
    (the embedded lease is 10 s; the poll once slept a whole lease past the deadline)."""
    async def body():
        first = Shard(store_factory("busy"))
        await first.open()
        try:
            t0 = time.monotonic()
            with pytest.raises(ShardBusy):
                await Shard(store_factory("busy")).open(wait_s=0.5)
            assert time.monotonic() - t0 < 3.0
        finally:
            await first.close()
    run(body())


def test_the_lease_is_taken_over_only_once_it_ran_out(store_factory):
    async def body():
        async with a_holds_the_lease(store_factory, "expiry") as (a, b, ca, cb, lease_a):
            t0 = time.monotonic()
            lease_b = await take_when_free(cb)  # a stopped renewing: it is "frozen"
            took = time.monotonic() - t0
            assert took > LEASE_S * 0.7, f"taken over {took:.2f}s after the last renewal"
            assert lease_b.term == lease_a.term + 1
            assert not lease_a.valid()  # a's own clock stopped it before b could take over
            assert not await write_marker(a, lease_a, "by_a")  # a wakes up: fenced, nothing committed
            assert await markers(b) == {}
    run(body())


def test_renewals_keep_the_lease_and_an_unchallenged_expired_lease_may_be_renewed(store_factory):
    async def body():
        async with a_holds_the_lease(store_factory, "renew") as (a, b, ca, cb, lease_a):
            for _ in range(6):  # 1.5 leases of renewals: b never finds it free
                await asyncio.sleep(LEASE_S / 4)
                assert await write_marker(a, lease_a, "by_a")
                assert cb.vacancy(await cb.read()) is None
            await asyncio.sleep(LEASE_S * 1.5)
            assert not lease_a.valid() and cb.vacancy(await cb.read()) is not None
            assert await write_marker(a, lease_a, "by_a")  # nobody took it: a's term goes on
            assert lease_a.valid() and cb.vacancy(await cb.read()) is None
    run(body())


def test_a_takeover_waits_for_the_batch_that_holds_the_lease_row(store_factory):
    """a's lease ran out; a renews it inside a batch (fence) and keeps the batch open while b
    tries to take over with the row it read before: b waits for the row (lock, or SQLite's write
    lock), then finds the lease renewed and takes nothing; a's batch commits."""
    async def body():
        async with a_holds_the_lease(store_factory, "race") as (a, b, ca, cb, lease_a):
            await asyncio.sleep(LEASE_S * 1.2)
            stale = await cb.read()
            assert cb.vacancy(stale) is not None  # b sees it free...
            cur = await a.begin()
            sent = await lease_a.extend(cur)  # ...but a renews first, in an open batch
            assert sent is not None
            await cur.execute("upsert_meta", {"name": "by_a", "value": lease_a.term})
            takeover = asyncio.ensure_future(cb.take(stale))
            await asyncio.sleep(LEASE_S / 2)
            await a.commit()
            assert await takeover is None
            assert await markers(b) == {"by_a": lease_a.term}
            assert (await cb.read()).term == lease_a.term
    run(body())


def test_a_deposed_leaders_open_batch_never_commits(store_factory):
    """a is "frozen" in the middle of a batch, holding the lease row. On a server database the
    server ends a's silent session after about a lease, b takes over, and a's COMMIT fails. On
    SQLite a keeps the write lock in this process (a separate process would be stopped by b:
    test_frozen_leader), so b cannot take over until a's batch ends; a's next batch is fenced."""
    async def body():
        async with a_holds_the_lease(store_factory, "frozen") as (a, b, ca, cb, lease_a):
            cur = await a.begin()
            assert await lease_a.extend(cur) is not None
            await cur.execute("upsert_meta", {"name": "by_a", "value": lease_a.term})
            if a.shares_host:  # SQLite
                await asyncio.sleep(LEASE_S * 1.5)
                assert await cb.take(await cb.read()) is None  # the write lock is a's
                await a.rollback()
            lease_b = await take_when_free(cb)
            assert lease_b.term == lease_a.term + 1
            if not a.shares_host:
                with pytest.raises(Exception):
                    await a.commit()
                await a.rollback()
            assert await markers(b) == {}
    run(body())


def test_sqlite_takes_over_at_once_from_an_exited_holder(sqlite_kind):
    """Only replicas of a SQLite file share a host (server databases wait for the expiry)."""
    async def body():
        a = sqlite_kind.store("exited")
        await a.open()
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            gone = holders.this_process().replace(f"pid={holders.parse(holders.this_process())['pid']} ",
                                                  f"pid={child.pid} ")
            gone = gone.replace(f"start={holders.parse(gone)['start']} ", f"start={holders.start_ticks(child.pid)} ")
            campaign = Campaign(a, "a:1", 60)
            row = await campaign.read()
            cur = await a.begin()  # a leader of another process, with a long lease
            await cur.execute("leader_take", {"term": 2, "seen": row.term, "address": "x:1", "holder": gone,
                                              "ttl": 60_000, "now": int(time.monotonic() * 1000)})
            await a.commit()
            row = await campaign.read()
            assert campaign.vacancy(row) is None and campaign.live_local_holder(row)
            child.kill()
            child.wait()
            row = await campaign.read()
            assert campaign.vacancy(row) == (f"pid {child.pid} on {holders.parse(gone)['host']} no "
                                             "longer leads (exited or closed)")
            lease = await campaign.take(row)
            assert lease is not None and lease.term == 3
        finally:
            child.kill()
            child.wait()
            await close(a)
    run(body())


def test_leader_row_reports_the_remaining_lease():
    row = LeaderRow(term=3, address="a:1", holder="", expires_at=10_500, now=10_000)
    assert (row.expired, row.remaining_s) == (False, 0.5)
    assert LeaderRow(3, "a:1", "", 10_000, 10_000).expired


FROZEN_HOLDER = """
import asyncio, sys
from backend_sqlite.store import SqliteStore
from kubefabric.shard.leadership import Campaign

async def main():
    store = SqliteStore(sys.argv[1])
    await store.open()
    campaign = Campaign(store, "frozen:1", float(sys.argv[2]))
    lease = await campaign.take(await campaign.read())
    cur = await store.begin()  # the write lock, until this process ends
    await lease.extend(cur)
    await cur.execute("upsert_meta", {"name": "by_frozen", "value": lease.term})
    print(lease.term, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_sqlite_stops_an_expired_holder_that_keeps_the_write_lock(sqlite_kind):
    """A leader frozen (SIGSTOP) inside a write transaction keeps SQLite's write lock; once its
    lease ran out, the replica that wants to take over SIGKILLs it (start time checked) and
    takes the lease; the frozen leader's transaction is gone."""
    async def body():
        b = sqlite_kind.store("stopped")
        await b.open()
        child = subprocess.Popen([sys.executable, "-c", FROZEN_HOLDER, str(b.data_dir), str(LEASE_S)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            term = int(child.stdout.readline())
            child.send_signal(signal.SIGSTOP)
            assert b.write_lock_holder() == child.pid
            cb = Campaign(b, "b:1", LEASE_S)
            lease = await take_when_free(cb)
            assert lease.term == term + 1
            assert child.wait(5) == -signal.SIGKILL
            assert await markers(b) == {}
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            await b.close()
    run(body())


def test_a_long_batch_leaves_requests_for_the_next_one_instead_of_outliving_its_lease(store_factory):
    """Each request takes 0.15 s in the writer; ten are queued at once with a 1 s lease. A batch
    stops taking requests a quarter lease after its renewal, so they commit over several
    batches, each within its lease; none fails and the writer keeps its term."""
    async def body():
        shard = Shard(store_factory("long"), lease_s=LEASE_S)
        await shard.open()
        try:
            term, batches = shard.lease.term, []

            async def slow(applier, n):
                batches.append(applier)  # kept: ids stay unique
                await asyncio.sleep(0.15)
                return n

            done = await asyncio.gather(*(shard.writer.submit(slow, n) for n in range(10)))
            assert done == list(range(10))
            count = len({id(a) for a in batches})
            assert count >= 4, f"{count} batches"
            assert shard.is_leader and shard.lease.term == term  # never stepped down
        finally:
            await shard.close()
    run(body())
