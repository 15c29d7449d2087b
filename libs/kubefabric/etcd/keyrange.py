"""etcd's key-range rules, in one place.

A request names (key, range_end):
- range_end empty: the single key `key`;
- range_end == b"\\0": every key >= key (and with key == b"\\0" too: every key);
- otherwise the half-open interval [key, range_end), empty when key >= range_end.
"""
from __future__ import annotations

from typing import NamedTuple

ALL = b"\x00"


class KeyRange(NamedTuple):
    start: bytes
    end: bytes | None  # None: single key; b"": unbounded above

    @classmethod
    def of(cls, key: bytes, range_end: bytes) -> "KeyRange":
        if not range_end:
            return cls(key, None)
        if range_end == ALL:
            return cls(key, b"")
        return cls(key, range_end)

    @property
    def single(self) -> bool:
        return self.end is None

    @property
    def empty(self) -> bool:
        return bool(self.end) and self.start >= self.end

    def contains(self, key: bytes) -> bool:
        if self.end is None:
            return key == self.start
        return key >= self.start and (not self.end or key < self.end)

    def overlaps(self, other: "KeyRange") -> bool:
        """True when some key lies in both ranges."""
        if self.end is None:
            return other.contains(self.start)
        if other.end is None:
            return self.contains(other.start)
        lo = max(self.start, other.start)
        below_self = not self.end or lo < self.end
        below_other = not other.end or lo < other.end
        return below_self and below_other


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that makes [prefix, end) cover every key starting with prefix."""
    b = bytearray(prefix)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return ALL


EVERY_KEY = KeyRange(ALL, b"")  # the whole keyspace
