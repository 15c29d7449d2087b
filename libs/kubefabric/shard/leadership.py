"""Leadership of a shard: a lease in the shard's database, renewed by every write batch.

The lease row (kf_leader, one row) holds the term, the leader's address, who holds it (see
kubefabric.shard.holder) and `expires_at`, in the database's clock: PostgreSQL clock_timestamp(),
MariaDB/MySQL UTC_TIMESTAMP(6), in ms; on SQLite the host's CLOCK_MONOTONIC, which every replica
of one file shares (SQLite's WAL needs shared memory: one host).

Taking it (Campaign.take) is one transaction:
    UPDATE kf_leader SET term = seen + 1, holder = me, expires_at = now + lease
    WHERE term = seen AND expires_at <= now
(on SQLite also: WHERE term = seen AND holder = <a process this host knows has exited>), which
also records the term in kf_meta. One row changed: this replica leads with term seen + 1. Of two
replicas that saw the same term one wins: the other's UPDATE waits for the row lock, then finds
term seen + 1 and changes nothing.

Renewing it is the fence of every write batch (Lease.extend: the first statement of every write
transaction, and of an empty one every lease/4 while idle):
    UPDATE kf_leader SET expires_at = now + lease WHERE term = mine
One row changed, or the batch is refused (Fenced) and rolled back. (A leader whose lease ran out
but was not taken may renew it: the row still holding its term means no other leader existed
meanwhile.) The UPDATE keeps the row locked until the batch's COMMIT or ROLLBACK, so the check
and the commit are one step as far as a takeover is concerned:
- PostgreSQL (READ COMMITTED): a takeover's UPDATE waits for the row lock; once the batch commits
  it re-checks its WHERE on the new row version (EvalPlanQual, clock_timestamp() read again),
  finds the lease just extended and changes nothing. If the takeover locked the row first, the
  batch's UPDATE waits, then finds another term: fenced.
- InnoDB (REPEATABLE READ): an UPDATE reads the newest committed row version under an exclusive
  record lock (a locking read, not the transaction's snapshot): the same two cases.
- SQLite: one writer at a time (BEGIN IMMEDIATE): a batch and a takeover are two transactions in
  some order, and the later one sees the earlier one's row.
So a takeover happens before or after a batch, never between its fence and its commit: a
deposed leader that wakes up finds another term in its next batch and commits nothing.

The leader also stops on its own (Lease.valid): a renewal whose UPDATE was sent at t (monotonic)
makes the database's lease run to at least t + lease (the database read its clock after t). The
leader acts only until t + lease - margin (margin: lease/5, for clock rates and its own checks),
and a batch that would COMMIT later is rolled back; answers from memory (lease keep-alives,
TimeToLive, alarms) wait for a renewal first. So when the database is slow or unreachable, the
leader has stopped committing and answering for the lease before any replica can take over.

A frozen leader may hold the row lock (its batch open, its session silent): the stores end such
sessions on the server's side about a lease after their last statement (`limit_writer_silence`:
PostgreSQL idle_in_transaction_session_timeout, lock_timeout, statement_timeout, TCP keepalives;
MariaDB idle_transaction_timeout, innodb_lock_wait_timeout, max_statement_time), and a takeover
waiting for the lock goes ahead. SQLite has no such timeout: a frozen process keeps the file's
write lock as long as it lives. Its replicas share its host, so they can look at the holder's
process (kubefabric.shard.holder): a replica takes over at once when the recorded process is gone
(its PID free or reused: start time checked), and when the lease expired but that process still
holds the write lock (F_GETLK on the WAL index names the PID), it SIGKILLs it: at once when the
kernel shows it stopped (state T), after another half lease otherwise (a running leader rolls
back once its lease is out, so the lock is then held by a process that does not run). SQLite
discards the killed process's open transaction as after any crash. Any other holder of the write
lock (a backup, another tool) is waited for, never killed.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from kubefabric.store.contract import Store

from . import holder as holders
from .state import META_TERM  # kf_meta's copy of the term (replicas report it)

log = logging.getLogger("kubefabric.shard.leadership")

LEASE_S = 1.0          # default lease (etcd's default election timeout)
# The embedded shard has no replica waiting for its lease; a second process is refused and a
# restart after a crash takes over at once (both told by the holder's PID), so its lease only
# bounds how long a database locked by another process (a backup, a tool) may stall it before
# it takes the lease again: long, so that a request deadline fires first, and few renewals.
EMBEDDED_LEASE_S = 10.0
MARGIN = 0.2           # of the lease: the leader stops this much before the database's deadline
RENEW_EVERY = 0.25     # of the lease: idle renewal period
POLL_MIN_S = 0.01
SQLITE_POLL_S = 0.2    # SQLite replicas also look for an exited holder this often



class ShardBusy(Exception):
    """Another live process holds the shard's lease."""


def monotonic_ms() -> int:
    """The lease clock of SQLite (CLOCK_MONOTONIC is one clock for every process of a host)."""
    return int(time.monotonic() * 1000)


@dataclass(frozen=True)
class LeaderRow:
    term: int
    address: str
    holder: str
    expires_at: int   # database clock, ms
    now: int          # the database's clock when the row was read, ms

    @property
    def expired(self) -> bool:
        return self.expires_at <= self.now

    @property
    def remaining_s(self) -> float:
        return max(0, self.expires_at - self.now) / 1000


class Lease:
    """This process's term as leader, and until when (monotonic) it may act on it."""

    def __init__(self, term: int, lease_s: float, address: str, holder: str):
        self.term = term
        self.lease_s = lease_s
        self.ttl_ms = max(1, int(lease_s * 1000))
        self.address = address
        self.holder = holder
        self.deadline = 0.0   # monotonic: acts only before this
        self.renewed = 0.0    # monotonic send time of the last confirmed renewal
        holders.hold(holder)

    def valid(self) -> bool:
        return time.monotonic() < self.deadline

    def valid_after(self, sent: float) -> bool:
        """Still inside the lease a renewal sent at `sent` (not yet committed) gives."""
        return time.monotonic() < sent + self.lease_s * (1 - MARGIN)

    def renewal_due(self) -> float:
        return self.renewed + self.lease_s * RENEW_EVERY

    def confirm(self, sent: float, lease_s: float | None = None) -> None:
        """A renewal sent at `sent` (for `lease_s`, default the lease) committed. It replaced
        the database's deadline, so it replaces ours (renewals commit one after another)."""
        self.renewed = sent
        self.deadline = sent + (lease_s or self.lease_s) * (1 - MARGIN)

    def drop(self) -> None:
        """This term is over for this process (stepped down, closed)."""
        self.deadline = 0.0
        holders.release(self.holder)

    async def extend(self, cur, lease_s: float | None = None) -> float | None:
        """Renew inside the caller's write transaction (the fence), for `lease_s` (default: the
        lease): the send time, or None when another term took the lease."""
        sent = time.monotonic()
        ttl = self.ttl_ms if lease_s is None else int(lease_s * 1000)
        changed = await cur.execute("leader_renew", {"term": self.term, "ttl": ttl,
                                                     "now": monotonic_ms()})
        return sent if changed == 1 else None

    async def resign(self, store) -> None:
        """End the lease now (clean shutdown; best effort): a replica takes over at once."""
        self.drop()
        try:
            cur = await store.begin()
            await cur.execute("leader_resign", {"term": self.term})
            await store.commit()
        except Exception as exc:
            log.debug("resigning the lease failed: %s", exc)
            await store.rollback()


class Campaign:
    """How a replica (or the embedded shard) gets the lease: read the row, see whether it is
    free, take it."""

    def __init__(self, store: Store, address: str = "", lease_s: float = LEASE_S):
        self.store = store
        self.address = address
        self.lease_s = lease_s
        self.holder = holders.this_process()
        self.local = store.shares_host  # SQLite: the holder runs on this host
        self._reported = ""

    async def read(self) -> LeaderRow:
        """The lease row (created, expired and without a leader, when the database has none)."""
        for _ in range(2):
            async with self.store.snapshot() as cur:
                rows = await cur.rows("leader_get", {"now": monotonic_ms()})
                if not rows:
                    term = await cur.scalar("meta_value", {"name": META_TERM}) or 1
            if rows:
                return LeaderRow(*rows[0])
            cur = await self.store.begin()
            try:
                await cur.execute("insert_leader", {"term": term})
                await self.store.commit()
            except BaseException:
                await self.store.rollback()
                raise
        raise RuntimeError("the lease row disappeared while it was being created")

    def vacancy(self, row: LeaderRow) -> str | None:
        """Why the lease can be taken now, or None while its holder keeps it."""
        if row.expired:
            return "no leader yet" if not row.holder else f"the lease of {holders.describe(row.holder)} expired"
        if row.holder == self.holder:
            return "this process's earlier term ended"
        if (self.local or holders.is_this_process(row.holder)) and holders.gone(row.holder):
            return f"{holders.describe(row.holder)} no longer leads (exited or closed)"
        return None

    def live_local_holder(self, row: LeaderRow) -> bool:
        """The holder is another process of this host that still runs (SQLite)."""
        return (self.local and row.holder != self.holder
                and holders.local_pid(row.holder) is not None and not holders.gone(row.holder))

    def poll_after(self, row: LeaderRow) -> float:
        """When to look at the row again: right after the lease runs out (SQLite: sooner)."""
        wait = row.remaining_s + POLL_MIN_S
        return max(POLL_MIN_S, min(wait, SQLITE_POLL_S if self.local else self.lease_s))

    async def take(self, row: LeaderRow) -> Lease | None:
        """A new term (row.term + 1) when the row still holds row.term and is free; None when
        another replica was faster (or, on SQLite, the write lock is still held)."""
        term = row.term + 1
        values = {"term": term, "seen": row.term, "address": self.address, "holder": self.holder,
                  "ttl": max(1, int(self.lease_s * 1000)), "now": monotonic_ms(), "gone": row.holder}
        cur = await self._begin(row)
        if cur is None:
            return None
        sent = time.monotonic()
        try:
            if row.expired:
                changed = await cur.execute("leader_take", values)
            else:
                changed = await cur.execute("leader_take_from", values)
            if changed != 1:
                await self.store.rollback()
                return None
            await cur.execute("upsert_meta", {"name": META_TERM, "value": term})
            await self.store.commit()
        except BaseException:
            await self.store.rollback()
            raise
        lease = Lease(term, self.lease_s, self.address, self.holder)
        lease.confirm(sent)
        return lease

    async def acquire(self, wait_s: float) -> Lease:
        """The lease for a process that must lead (the embedded shard): taken as soon as it is
        free, within `wait_s`; ShardBusy when a live process of this host holds it, or the
        holder kept it that long."""
        deadline = time.monotonic() + wait_s
        while True:
            row = await self.read()
            if self.vacancy(row) is not None:
                lease = await self.take(row)
                if lease is not None:
                    return lease
            elif self.live_local_holder(row):
                raise ShardBusy(f"another process ({holders.describe(row.holder)}) is serving this store")
            left = deadline - time.monotonic()
            if left < 0:
                raise ShardBusy(f"the shard's lease is held by {holders.describe(row.holder)} "
                                f"(term {row.term}) and was not released within {wait_s:.0f}s")
            # one more look just after the deadline, not a whole lease later
            await asyncio.sleep(min(self.poll_after(row), left + POLL_MIN_S))

    # ---- SQLite: a frozen holder keeps the file's write lock ----

    async def _begin(self, row: LeaderRow):
        """The write transaction of a takeover; on SQLite waited for at most a quarter lease,
        then the write lock's holder is looked at (None: try again at the next poll)."""
        if not self.local:
            return await self.store.begin()
        try:
            async with asyncio.timeout(self.lease_s * RENEW_EVERY):
                return await self.store.begin()
        except TimeoutError:
            self._unblock(row)
            return None

    def _unblock(self, row: LeaderRow) -> None:
        pid = self.store.write_lock_holder()
        if pid is None:
            return  # released meanwhile
        recorded = holders.local_pid(row.holder)
        if pid != recorded or not row.expired:
            self._report(f"the database's write lock is held by pid {pid}, not by the expired "
                         f"leader ({holders.describe(row.holder)}): waiting for it")
            return
        overdue_s = (monotonic_ms() - row.expires_at) / 1000
        stopped = holders.state(pid) in ("T", "t")
        if not stopped and overdue_s < self.lease_s / 2:
            return
        why = "stopped" if stopped else f"{overdue_s:.1f}s past its lease"
        try:
            killed = holders.kill(row.holder)
        except PermissionError:
            self._report(f"the expired leader ({holders.describe(row.holder)}, {why}) holds the "
                         "database's write lock and this process may not stop it: waiting")
            return
        if killed:
            log.warning("the expired leader (%s, term %d) held the database's write lock, %s: "
                        "killed it (SIGKILL); its open transaction is discarded",
                        holders.describe(row.holder), row.term, why)

    def _report(self, text: str) -> None:
        if text != self._reported:
            self._reported = text
            log.warning("%s", text)
