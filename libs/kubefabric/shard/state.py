"""A shard's clock and identity (DESIGN §3).

- `clock`: the last revision taken by the writer (or reached through sync_rev).
- `committed`: the closed revision: everything at or below it is committed and published, and
  the shard will never commit at or below it. Reads report at least this revision.
- `floor`: the persisted clock floor. A clock moved by sync_rev (no row written) is covered by
  persisting a floor ahead of it in steps; revisions of written rows are their own record. On
  open the clock starts at max(1, newest row, floor, compact revision), so it never goes back.
- `term`: the leader lease's term (kubefabric.shard.leadership), raised by every takeover (etcd's
  raft term analogue: 2 on a fresh store, like etcd's first election), reported in headers.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from kubefabric.store import schema

FLOOR_STEP = 10_000
META_TERM = "term"
META_CLUSTER_ID = "cluster_id"
META_MEMBER_ID = "member_id"


@dataclass
class ShardState:
    clock: int = 1
    committed: int = 1
    compact_rev: int = -1  # -1: never compacted (etcd's initial value; compact at 0 is allowed)
    floor: int = 0
    term: int = 2
    cluster_id: int = 0
    member_id: int = 0

    @classmethod
    def from_meta(cls, meta: dict[str, int], newest_row: int,
                  term: int | None = None) -> tuple["ShardState", dict[str, int]]:
        """The state of a store being opened by the leader of `term` (None: the next one), and
        the meta rows the open must persist."""
        floor = meta.get(schema.META_CLOCK_FLOOR, 0)
        compact = meta.get(schema.META_COMPACT_REV, -1)
        clock = max(1, newest_row, floor, compact)
        updates = {META_TERM: term if term is not None else meta.get(META_TERM, 1) + 1,
                   schema.META_CLOCK: clock}
        for name in (META_CLUSTER_ID, META_MEMBER_ID):
            if not meta.get(name):
                updates[name] = random.getrandbits(62) | 1
        merged = {**meta, **updates}
        updates.setdefault(schema.META_SCHEMA_VERSION, schema.SCHEMA_VERSION)
        state = cls(clock=clock, committed=clock, compact_rev=compact, floor=floor,
                    term=merged[META_TERM], cluster_id=merged[META_CLUSTER_ID],
                    member_id=merged[META_MEMBER_ID])
        return state, updates

    def replace(self, other: "ShardState") -> None:
        """Take over another state's values, keeping this object (servers hold its methods)."""
        self.__dict__.update(other.__dict__)

    def observe(self, newest_row: int, meta: dict[str, int]) -> None:
        """A replica's view, read from the database: never moves backwards."""
        self.committed = self.clock = max(self.committed, newest_row, meta.get(schema.META_CLOCK, 0))
        self.compact_rev = max(self.compact_rev, meta.get(schema.META_COMPACT_REV, -1))
        self.term = max(self.term, meta.get(META_TERM, 0))
        self.cluster_id = meta.get(META_CLUSTER_ID, self.cluster_id)
        self.member_id = meta.get(META_MEMBER_ID, self.member_id)

    def advance(self, clock: int, compact_rev: int, meta_updates: dict[str, int]) -> None:
        """Called once a batch has committed."""
        self.clock = self.committed = clock
        self.compact_rev = compact_rev
        self.floor = meta_updates.get(schema.META_CLOCK_FLOOR, self.floor)

    def fill(self, header, revision: int | None = None) -> None:
        header.cluster_id = self.cluster_id
        header.member_id = self.member_id
        header.raft_term = self.term
        header.revision = self.committed if revision is None else revision
