"""Reads a bbolt file: its current meta page, then buckets as (key, value) in key order.

Every problem is a BoltError with one line for the user: not a bbolt file, both meta pages
failing their checksum, a file shorter than its meta says, a page of the wrong kind or out of
bounds. The whole file is mapped read-only, never loaded into memory at once.
"""
from __future__ import annotations

import mmap
from pathlib import Path
from typing import Iterator

from .layout import (BRANCH, BRANCH_ELEMENT, BUCKET_HEADER, BUCKET_LEAF, CHECKSUM, LEAF,
                     LEAF_ELEMENT, MAGIC, META, META_FIELDS, PAGE_HEADER, VERSION, BoltError,
                     fnv1a64)

_META_AT = PAGE_HEADER.size


class Reader:
    """A bbolt file of `size` bytes (data after that, such as etcd's SHA-256, is ignored)."""

    def __init__(self, path: Path, size: int | None = None):
        self.path = path
        self._file = open(path, "rb")
        total = size if size is not None else path.stat().st_size
        if total < 2 * PAGE_HEADER.size + META_FIELDS.size:
            raise BoltError(f"{path}: not a bbolt file (only {total} bytes)")
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        self.size = total
        self.page_size, self.root, self.high_water, self.txid = self._current_meta()
        if self.high_water * self.page_size > total:
            raise BoltError(f"{path}: cut short: its meta page says {self.high_water} pages of "
                            f"{self.page_size} bytes ({self.high_water * self.page_size} bytes), "
                            f"the file has {total}")

    def close(self) -> None:
        self._map.close()
        self._file.close()

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _meta_at(self, offset: int):
        """(page size, root, high water, txid) of the meta page at `offset`, or why not."""
        end = offset + _META_AT + META_FIELDS.size + CHECKSUM.size
        if end > self.size:
            return "missing"
        _, flags, _, _ = PAGE_HEADER.unpack_from(self._map, offset)
        fields = bytes(self._map[offset + _META_AT: offset + _META_AT + META_FIELDS.size])
        magic, version, page_size, _, root, _, _, high_water, txid = META_FIELDS.unpack(fields)
        if magic != MAGIC or flags != META:
            return "not a bbolt file (no bbolt meta page)"
        if version != VERSION:
            return f"bbolt format version {version}, not {VERSION}"
        (checksum,) = CHECKSUM.unpack_from(self._map, offset + _META_AT + META_FIELDS.size)
        if checksum != fnv1a64(fields):
            return "meta page checksum mismatch (corrupt)"
        return page_size, root, high_water, txid

    def _current_meta(self):
        first = self._meta_at(0)
        if isinstance(first, str) and "not a bbolt file" in first:
            raise BoltError(f"{self.path}: {first}")
        page_size = first[0] if not isinstance(first, str) else 4096
        second = self._meta_at(page_size)
        valid = [m for m in (first, second) if not isinstance(m, str)]
        if not valid:
            raise BoltError(f"{self.path}: both meta pages are unusable: {first}; {second}")
        return max(valid, key=lambda m: m[3])

    def _page(self, pgid: int, kinds: int) -> tuple[int, int, int]:
        """(offset, flags, count) of page `pgid`, which must be one of `kinds`."""
        if pgid >= self.high_water:
            raise BoltError(f"{self.path}: page {pgid} is beyond the file's {self.high_water} pages (corrupt)")
        offset = pgid * self.page_size
        _, flags, count, overflow = PAGE_HEADER.unpack_from(self._map, offset)
        if not flags & kinds or pgid + overflow >= self.high_water:
            raise BoltError(f"{self.path}: page {pgid} is not a {'leaf or branch' if kinds & BRANCH else 'leaf'} "
                            f"page (flags {flags:#x}; corrupt)")
        return offset, flags, count

    def _walk(self, buf, offset: int, flags: int, count: int) -> Iterator[tuple[int, bytes, bytes]]:
        """(flags, key, value) of the page at `offset` in `buf`, descending through branches."""
        base = offset + PAGE_HEADER.size
        if flags & LEAF:
            for i in range(count):
                at = base + LEAF_ELEMENT.size * i
                eflags, pos, ksize, vsize = LEAF_ELEMENT.unpack_from(buf, at)
                k = at + pos
                yield eflags, bytes(buf[k:k + ksize]), bytes(buf[k + ksize:k + ksize + vsize])
            return
        for i in range(count):
            _, _, child = BRANCH_ELEMENT.unpack_from(buf, base + BRANCH_ELEMENT.size * i)
            yield from self._walk(self._map, *self._page(child, LEAF | BRANCH))

    def _entries(self, bucket_value: bytes) -> Iterator[tuple[int, bytes, bytes]]:
        root, _ = BUCKET_HEADER.unpack_from(bucket_value)
        if root == 0:  # inline: the bucket's leaf page follows its header
            inline = bucket_value[BUCKET_HEADER.size:]
            if len(inline) < PAGE_HEADER.size:
                raise BoltError(f"{self.path}: an inline bucket is cut short (corrupt)")
            _, flags, count, _ = PAGE_HEADER.unpack_from(inline)
            yield from self._walk(inline, 0, flags, count)
            return
        yield from self._walk(self._map, *self._page(root, LEAF | BRANCH))

    def buckets(self) -> list[bytes]:
        """The names of the top-level buckets, in key order."""
        return [k for f, k, _ in self._entries(BUCKET_HEADER.pack(self.root, 0)) if f & BUCKET_LEAF]

    def items(self, name: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of top-level bucket `name` in key order (nothing when it is absent);
        nested buckets are skipped."""
        for flags, key, value in self._entries(BUCKET_HEADER.pack(self.root, 0)):
            if key == name and flags & BUCKET_LEAF:
                for f, k, v in self._entries(value):
                    if not f & BUCKET_LEAF:
                        yield k, v
                return
