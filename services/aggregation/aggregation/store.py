"""What the REST layer needs from the data layer, and the errors it maps.

Reads and writes go to kv-router (etcd's KV API for single keys and guarded Txns, the Query API
for selected pages of a range), watches to the watch-hub (etcd's Watch API); never to a
database. An object's resourceVersion is its key's mod_revision.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Protocol

from .selectors import Requirement


@dataclass(frozen=True)
class KV:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True)
class Page:
    kvs: list[KV]
    revision: int        # the revision the page was read at
    more: bool
    next_key: str        # when more: where the next page starts


@dataclass(frozen=True)
class Event:
    kind: str            # PUT or DELETE
    kv: KV               # for DELETE: key and mod_revision (the delete's revision); value empty
    prev: KV | None      # the value before the event (None for a create)


@dataclass(frozen=True)
class WatchBatch:
    """Events of one revision or more, in order, or a progress notification (no events):
    everything at or below `revision` has been delivered."""
    events: list[Event]
    revision: int


class Compacted(Exception):
    """The revision asked for is at or below the compaction revision."""

    def __init__(self, compact_revision: int):
        super().__init__(f"required revision has been compacted (compact revision {compact_revision})")
        self.compact_revision = compact_revision


class Refused(Exception):
    """The data layer refused the request as asked (e.g. a field selector on a field the
    topology does not index); str() is its reason."""


class Unavailable(Exception):
    """The data layer could not answer (kv-router or the watch-hub unreachable, timeouts)."""


class WatchStream(Protocol):
    def __aiter__(self) -> AsyncIterator[WatchBatch]: ...

    async def request_progress(self) -> None:
        """Ask for a progress notification: a batch without events whose revision every
        event up to has been delivered."""

    async def aclose(self) -> None: ...


class Store(Protocol):
    async def get(self, key: str) -> tuple[KV | None, int]:
        """The key's newest value and the header revision."""

    async def query(self, start: str, end: str, revision: int, limit: int,
                    labels: tuple[Requirement, ...], fields: tuple[Requirement, ...]) -> Page:
        """Objects of [start, end) matching every requirement, in key order, read at
        `revision` (0: the newest); raises Compacted."""

    async def count(self, start: str, end: str, revision: int) -> int:
        """Keys in [start, end) at `revision` (remainingItemCount of an unfiltered page)."""

    async def create(self, key: str, value: bytes) -> tuple[bool, int, KV | None]:
        """Put the key if it does not exist: (created, revision, the existing kv if not)."""

    async def update(self, key: str, value: bytes, mod_revision: int) -> tuple[bool, int, KV | None]:
        """Put the key if its mod_revision is still the given one: (done, revision, current kv
        when not done; None when the key is gone)."""

    async def delete(self, key: str, mod_revision: int) -> tuple[bool, int, KV | None]:
        """Delete the key if its mod_revision is still the given one, as update does."""

    def watch(self, start: str, end: str, start_revision: int) -> "WatchStream":
        """Changes of [start, end) from start_revision on, with previous values; raises
        Compacted when start_revision is no longer retained."""

    async def close(self) -> None: ...
