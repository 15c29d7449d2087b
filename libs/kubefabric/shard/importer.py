"""A bulk import that keeps revisions (`kubefabric migrate`): changes taken from an etcd
history, written into an empty shard with their own revisions, sub revisions, create
revisions, versions and leases, instead of new ones from the clock.

Invariants:
- Only into an empty shard (no change ever written, clock at 1): a history cannot be merged
  with another one. `check_empty` refuses anything else.
- Batches arrive in revision order (the etcd key bucket's order) and each runs as one writer
  request, so it commits whole; `kf_kv` follows the log (each key's newest live change), and a
  change's prev_rev is the key's previous live change seen by the import (0 for the first change
  of a key the history holds: its older versions were compacted away, as in any shard).
- The last batch (`finish`) sets the clock floor, the clock and the compact revision: the shard
  opens at exactly the imported revision (DESIGN §3.4: never below a revision it reported),
  refuses reads below the compact revision, and its next write takes revision + 1.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from kubefabric.auth import state as auth_state
from kubefabric.auth.state import AuthState
from kubefabric.auth.tokens import new_secret
from kubefabric.store import schema

from .authstore import META_GENERATION


class NotEmpty(Exception):
    """The target shard already holds data."""


@dataclass
class Batch:
    changes: list = field(default_factory=list)  # kubefabric.snapshot.load.Change, revision order
    # the last batch only:
    finish: bool = False
    revision: int = 0
    compact_rev: int = -1
    leases: list[tuple[int, int]] = field(default_factory=list)  # (ID, TTL)
    auth: AuthState | None = None
    # each change's prev_rev, taken from the Tracker the first time the batch is applied: a
    # writer may run a batch again (kubefabric.shard.writer), the Tracker has moved on by then
    prev_revs: list[int] | None = None


class Tracker:
    """Each key's newest live mod revision across batches (for prev_rev)."""

    def __init__(self):
        self.live: dict[bytes, int] = {}


async def check_empty(cur) -> None:
    newest = await cur.scalar("max_rev", {}) or 0
    if newest:
        raise NotEmpty(f"it already holds changes up to revision {newest}; migrate imports "
                       f"into an empty shard only (a new --data-dir or database)")


async def apply_batch(applier, arg: tuple[Batch, Tracker]) -> None:
    """A writer handler (kubefabric.shard.writer): the batch's rows, then on the last batch the
    shard's clock, compaction point, leases and auth store."""
    batch, tracker = arg
    if batch.prev_revs is None:
        batch.prev_revs = []
        for c in batch.changes:
            batch.prev_revs.append(tracker.live.get(c.key, 0))
            if c.deleted:
                tracker.live.pop(c.key, None)
            else:
                tracker.live[c.key] = c.rev
    rows, final = [], {}
    for c, prev in zip(batch.changes, batch.prev_revs):
        rows.append({"key": c.key, "rev": c.rev, "sub": c.sub, "create_rev": c.create_rev,
                     "prev_rev": prev, "version": c.version, "lease": c.lease,
                     "deleted": int(c.deleted), "value": c.value})
        final[c.key] = c
    await applier.cur.executemany("insert_log", rows)
    gone = [{"key": k} for k, c in final.items() if c.deleted]
    live = [{"key": k, "create_rev": c.create_rev, "mod_rev": c.rev, "version": c.version,
             "lease": c.lease} for k, c in final.items() if not c.deleted]
    if gone:
        await applier.cur.executemany("delete_kv", gone)
    if live:
        await applier.cur.executemany("upsert_kv", live)
    if not batch.finish:
        return
    await applier.cur.executemany("lease_insert", [{"id": i, "ttl": ttl, "expires_at": 0}
                                                   for i, ttl in batch.leases])
    if batch.auth is not None:
        state = batch.auth
        if state.enabled and not state.secret:  # the key of simple tokens (etcd's are per member)
            state = replace(state, secret=new_secret())
        await applier.cur.execute("auth_clear", {})
        await applier.cur.executemany("auth_insert", [{"kind": k, "name": n, "value": v}
                                                      for k, n, v in auth_state.to_rows(state)])
        applier.meta_updates[auth_state.META_AUTH_REVISION] = state.revision
        applier.meta_updates[auth_state.META_AUTH_ENABLED] = int(state.enabled)
        applier.meta_updates[META_GENERATION] = 1
    applier.clock = max(applier.clock, batch.revision)
    applier.meta_updates[schema.META_CLOCK_FLOOR] = batch.revision
    if batch.compact_rev >= 0:
        applier.compact_rev = batch.compact_rev
        applier.meta_updates[schema.META_COMPACT_REV] = batch.compact_rev
