"""The one writer of a shard (DESIGN §3.1): every mutation passes through this task, which
batches whatever is queued into one database transaction (group commit).

Invariants:
- Revisions are dense: a request that changes keys takes clock + 1; commit order is revision
  order; a batch that fails to commit is rolled back whole and the clock stays where it was.
- The clock only moves forward: writes, sync_rev (clock = max(clock, sync_rev), no row written)
  and nothing else. `state.committed` (the closed revision) is updated only after the batch's
  COMMIT returned, then the batch's events are published in revision order.
- While one batch commits (fsync), new requests queue up and form the next batch.
- Every batch first renews the leader's lease in its own transaction, which is the fence
  (kubefabric.shard.leadership): a batch whose term lost the lease is rolled back whole and the
  writer steps down. A batch stops taking requests once a quarter lease has passed since its
  renewal (the rest go first into the next batch), so it holds the lease row briefly, and one
  that still could not reach COMMIT within the lease it renewed is rolled back (NOT_LEADER:
  nothing applied). While no request comes, an empty batch renews the lease every quarter lease.
- A request that fails is undone alone and fails alone; no request of a batch is acknowledged
  before its COMMIT returned. Most requests run in a savepoint of their own. Those of
  WITHOUT_SAVEPOINT run without one (two statements less per put): they raise their etcd errors
  before their first write (a Txn all but one kind, see there), so such an error needs no undo;
  any other failure of one (a database error, or an etcd error after a write: Applier.wrote)
  rolls the whole transaction back and the batch runs again at once with a savepoint per
  request. So handlers must be re-runnable: what they change outside the transaction goes
  through the Applier (meta_updates, clock) or staged leases.
"""
from __future__ import annotations

import asyncio
import logging
import time
from time import perf_counter
from typing import TYPE_CHECKING, Awaitable, Callable, TypeVar

from kubefabric.etcd import errors
from kubefabric.etcd.errors import EtcdError
from kubefabric.logs import causes
from kubefabric.store import schema

from kubefabric.telemetry import metrics, tracing

from .apply import Applier
from .leadership import RENEW_EVERY

if TYPE_CHECKING:
    from kubefabric.index.rows import Indexer

log = logging.getLogger("kubefabric.writer")

MAX_BATCH = 512


BATCH_BUDGET = 0.25  # of the lease: a batch takes no more requests this long after its renewal


class Fenced(Exception):
    """This writer's term lost its lease (checked in every batch)."""


class LeaseRanOut(Exception):
    """A batch could not reach COMMIT within the lease it renewed: rolled back."""


class _Unguarded(Exception):
    """A request without a savepoint failed in a way only a rollback undoes."""


# Handlers that raise their etcd errors before their first write and can then fail only on a
# database error: unary Put and DeleteRange, and Txn (kube-apiserver's every write), whose path is
# checked before its first write (kubefabric.shard.apply) except for one case etcd itself panics
# on (a put with ignore_value/ignore_lease of a key the same txn deleted first): that one, after
# its rows were written, costs a rerun of its batch with savepoints, where it fails alone.
WITHOUT_SAVEPOINT: frozenset[Callable] = frozenset((Applier.put, Applier.delete_range, Applier.txn))


A = TypeVar("A")  # a writer handler's argument
R = TypeVar("R")  # and its result


def _reason(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0]


class Op:
    __slots__ = ("handler", "arg", "future", "sync_rev", "trace")

    def __init__(self, handler, arg, future, sync_rev: int = 0):
        self.handler = handler
        self.arg = arg
        self.future = future
        self.sync_rev = sync_rev  # the caller's clock: applied before the request (DESIGN §3.2)
        self.trace: dict | None = None  # the request's trace context (headers), when tracing is on


class Writer:
    def __init__(self, store, state, leases, publish: Callable[[list, int], None], quota, lease,
                 on_fenced: Callable[[str], None] = lambda why: None, max_batch: int = MAX_BATCH):
        self.store = store
        self.lease = lease  # kubefabric.shard.leadership.Lease of this writer's term
        self.state = state
        self.leases = leases
        self.publish = publish
        self.quota = quota
        self.lock = asyncio.Lock()  # held while a batch runs; Shard.defragment takes it too
        self.queue: asyncio.Queue[Op] = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.stopping = False
        self.committing = False  # a COMMIT may have reached the database, state not yet advanced
        self.on_fenced = on_fenced
        self.max_batch = max_batch  # 1: one database transaction per request (no group commit)
        self.abort_error: EtcdError = errors.STOPPING  # what submit() raises once stopping
        self._carry: list[Op] = []  # requests a batch left for the next one (still queued)
        self._getter: asyncio.Future | None = None  # a queue.get() a lease renewal interrupted
        # kubefabric.index: rows(rev, events) -> the index rows of a request's puts, written in
        # the batch's transaction (None: no index)
        self.indexer: Indexer | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="shard-writer")

    async def stop(self) -> None:
        """Finish every queued request, then stop."""
        self.stopping = True
        await self.queue.join()
        await self._cancel_task()

    async def _cancel_task(self) -> None:
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def abort(self, err: EtcdError) -> None:
        """Stop now: the running batch is cancelled (its transaction rolled back, its requests
        failed with `err`, nothing applied) and every queued request fails with `err`."""
        self.stopping = True
        self.abort_error = err
        await self._cancel_task()
        carried, self._carry = self._carry, []
        for op in carried:
            if not op.future.done():
                op.future.set_exception(err)
            self.queue.task_done()
        while not self.queue.empty():
            op = self.queue.get_nowait()
            if not op.future.done():
                op.future.set_exception(err)
            self.queue.task_done()

    async def submit(self, handler: Callable[[Applier, A], Awaitable[R]], arg: A, sync_rev: int = 0) -> R:
        """Run `handler(applier, arg)` inside the next batch, after moving the clock to at least
        `sync_rev`; returns its result."""
        if self.stopping:
            raise self.abort_error
        fut = asyncio.get_running_loop().create_future()
        op = Op(handler, arg, fut, sync_rev)
        self.queue.put_nowait(op)
        if not tracing.ENABLED:
            return await fut

        def capture() -> None:
            op.trace = tracing.carrier()
        return await tracing.in_span("kubefabric.writer.commit", fut, started=capture)

    async def _next_batch(self) -> list[Op]:
        """The queued requests (at least one; those the last batch left first), or [] when the
        lease is due for renewal first."""
        batch, self._carry = self._carry, []
        if self._getter is not None and self._getter.done():  # queued before what is queued now
            batch.append(self._getter.result())
            self._getter = None
        if not batch and self.queue.empty():
            if self._getter is None:
                self._getter = asyncio.ensure_future(self.queue.get())
            wait = self.lease.renewal_due() - time.monotonic()
            done, _ = await asyncio.wait((self._getter,), timeout=max(0.0, wait))
            if not done:
                return []
            batch, self._getter = [self._getter.result()], None
        while len(batch) < self.max_batch and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        return batch

    async def _run(self) -> None:
        self._getter = None
        try:
            while True:
                await self._run_batch(await self._next_batch())
        finally:
            getter, self._getter = self._getter, None
            if getter is not None and getter.done() and not getter.cancelled():
                op = getter.result()  # taken off the queue just as the writer was stopped
                if not op.future.done():
                    op.future.set_exception(self.abort_error)
                self.queue.task_done()
            elif getter is not None:
                getter.cancel()

    async def _run_batch(self, batch: list[Op]) -> None:
        left: list[Op] = []
        try:
            async with self.lock:
                left = await self._apply(batch)
        except asyncio.CancelledError:  # abort(): nothing of this batch was acknowledged
            # a COMMIT already sent may have landed: then the outcome is unknown (etcd's
            # "request timed out"), otherwise nothing was applied
            err = errors.TIMEOUT if self.committing else self.abort_error
            self.committing = False
            for op in batch:
                if not op.future.done():
                    op.future.set_exception(err)
            try:
                await asyncio.shield(self.store.rollback())
            except Exception:
                pass
            raise
        except Exception as exc:  # never let the one writer die: fail this batch, go on
            log.exception("writer failed on a batch of %d requests", len(batch))
            for op in batch:
                if not op.future.done():
                    op.future.set_exception(EtcdError(errors.STOPPING.code,
                                                      f"etcdserver: internal error: {exc}"))
        finally:
            self._carry = left
            for _ in range(len(batch) - len(left)):
                self.queue.task_done()

    async def _apply(self, batch: list[Op], guard_all: bool = False) -> list[Op]:
        """One database transaction; the requests it left for the next batch. guard_all: every
        request in a savepoint (the batch's second run, after one without failed)."""
        state = self.state
        left: list[Op] = []
        rerun = False
        outcomes: list[tuple[Op, object, EtcdError | None]] = []
        published: list[tuple[int, list]] = []
        index_rows: list[tuple] = []
        try:
            lease = self.lease
            try:  # waiting for the database's write lock (SQLite) ends with the lease
                async with asyncio.timeout(max(lease.deadline - time.monotonic(),
                                               lease.lease_s * RENEW_EVERY)):
                    cur = await self.store.begin()
            except TimeoutError:
                raise Fenced(f"the database stayed locked until the lease of term {lease.term} "
                             "ran out") from None
            renewal = await lease.extend(cur)
            if renewal is None:
                raise Fenced(f"term {lease.term} no longer holds the shard's lease")
            applier = Applier(cur, state.clock, state.compact_rev, self.leases, state.floor)
            budget = lease.lease_s * BATCH_BUDGET
            for i, op in enumerate(batch):
                if i and time.monotonic() - renewal > budget:
                    left = batch[i:]
                    break
                # a request in a savepoint: one that fails after writing (a bug, or a state no
                # pre-check foresaw) is undone alone and fails alone; one without (see the module
                # docstring): its failure after a write undoes the batch, which runs again
                guarded = guard_all or op.handler not in WITHOUT_SAVEPOINT
                applier.sync_to(op.sync_rev)
                applier.begin()
                if guarded:
                    await self.store.savepoint()
                try:
                    result = await op.handler(applier, op.arg)
                except Exception as exc:
                    if self.store.is_unavailable(exc):
                        raise  # the whole batch is lost with the connection
                    if not guarded:
                        if self.store.is_disk_full(exc):
                            raise
                        if applier.wrote or not isinstance(exc, EtcdError):
                            # not `from exc`: errors are often shared instances, and one raised
                            # again in the rerun would close a __cause__/__context__ cycle
                            raise _Unguarded(_reason(exc)) from None
                        # an etcd error before the request's first write: nothing to undo
                    else:
                        await self.store.rollback_to_savepoint()
                    if not isinstance(exc, EtcdError):
                        if self.store.is_disk_full(exc):
                            raise
                        log.exception("request failed inside the writer; undone alone")
                        exc = EtcdError(errors.STOPPING.code, f"etcdserver: internal error: {exc}")
                    applier.discard()
                    outcomes.append((op, None, exc))
                    continue
                if guarded:
                    await self.store.release()
                head, events = applier.end()
                if events:
                    if op.trace:  # the event path carries it on: the write's watchers join its trace
                        events = tracing.TracedEvents(events, op.trace)
                    published.append((head, events))
                    if self.indexer is not None:
                        index_rows += self.indexer.rows(head, events)
                outcomes.append((op, result, None))
            if index_rows:  # one statement for the batch (their log rows are in it)
                await cur.executemany("index_insert", index_rows)
            if applier.clock != state.clock:
                applier.meta_updates[schema.META_CLOCK] = applier.clock
            for name, value in applier.meta_updates.items():
                await cur.execute("upsert_meta", {"name": name, "value": value})
            if not lease.valid_after(renewal):
                raise LeaseRanOut(f"the batch could not commit within the lease of term "
                                  f"{lease.term} ({time.monotonic() - renewal:.2f}s after renewing it)")
            self.committing = True
            commit_started = perf_counter()
            await self.store.commit()
        except _Unguarded as exc:  # nothing of the batch is acknowledged yet: run it again
            log.warning("a request of a batch of %d failed without a savepoint (%s); the batch "
                        "runs again with a savepoint per request", len(batch), exc)
            rerun = True
        except Exception as exc:  # the database refused (or the outcome of COMMIT is unknown)
            await self._failed(batch, exc)
            return []
        if rerun:  # outside the except clause: the rerun's errors get no context from it
            self.leases.drop_staged()
            await self.store.rollback()
            return await self._apply(batch, guard_all=True)
        lease.confirm(renewal)
        self.leases.commit_staged()
        state.advance(applier.clock, applier.compact_rev, applier.meta_updates)
        self.committing = False
        if not batch:
            return []  # a renewal
        metrics.batch_committed(len(batch) - len(left), perf_counter() - commit_started)
        for op, result, err in outcomes:
            if op.future.done():
                continue
            if err is not None:
                op.future.set_exception(err)
            else:
                op.future.set_result(result)
        try:
            self.publish(published, state.committed)
        except Exception:  # a broken listener must not stop the writer
            log.exception("publishing revision %d failed", state.committed)
        return left

    async def _failed(self, batch: list[Op], exc: Exception) -> None:
        """The database refused the batch, or the outcome of its COMMIT is unknown."""
        unknown = self.committing  # COMMIT was sent: it may have landed (a lost connection)
        self.committing = False
        self.leases.drop_staged()
        try:
            await self.store.rollback()
        except Exception as rollback_exc:
            if not self.store.is_unavailable(rollback_exc):
                log.exception("rollback failed")
        err = None
        if isinstance(exc, Fenced):
            log.error("write batch refused: %s; stepping down", exc)
            self.lease.drop()
            err = errors.NOT_LEADER
            self.on_fenced(str(exc))
        elif isinstance(exc, LeaseRanOut):
            log.warning("write batch of %d requests rolled back: %s", len(batch), exc)
            err = errors.NOT_LEADER
        elif self.store.is_disk_full(exc):
            log.warning("a batch of %d requests failed for lack of space: %s", len(batch), exc)
            self.quota.raise_nospace(f"the database refused a write: {exc}")
            err = errors.NO_SPACE
        elif self.store.is_unavailable(exc):  # routine: one line, the cause, no traceback
            log.warning("write batch of %d requests failed: the database is unavailable: %s",
                        len(batch), causes(exc))
            # a COMMIT sent may have landed: unknown outcome, etcd's "request timed out"
            err = errors.TIMEOUT if unknown else errors.DB_UNAVAILABLE
        else:
            log.exception("write batch of %d requests failed: %s", len(batch), exc)
        if not isinstance(exc, Fenced) and (not batch or not self.lease.valid()):
            # the lease could not be renewed (the database or the connection to it failed):
            # step down rather than retry; the service reconnects and campaigns again
            why = f"renewing the lease of term {self.lease.term} failed: {_reason(exc)}"
            log.error("%s; stepping down", why)
            self.lease.drop()
            self.on_fenced(why)
        metrics.batch_failed()
        if err is None and unknown:
            err = errors.TIMEOUT  # etcd's answer when it cannot tell whether a write applied
        for op in batch:
            if not op.future.done():
                op.future.set_exception(err or EtcdError(errors.STOPPING.code, f"etcdserver: {exc}"))
