"""Writes a fresh bbolt file: buckets of sorted (key, value) pairs, packed into pages bottom up.

Invariants of what it writes (bbolt's `tx.Check` holds them): every page below the high-water
mark is reachable exactly once from the root bucket (the freelist is persisted and empty); keys
ascend within a page and across a bucket's pages; a branch element's key is the first key of
its child. A bucket whose entries fit in a quarter page and has no sub-buckets is written
inline, as bbolt does. Pages are written as they fill, so memory holds one page per tree level
plus each level's (first key, page id) list, never a bucket's data.
"""
from __future__ import annotations

from typing import BinaryIO, Iterable

from .layout import (BRANCH, BRANCH_ELEMENT, BUCKET_HEADER, BUCKET_LEAF, FREELIST, LEAF,
                     LEAF_ELEMENT, PAGE_HEADER, PAGE_SIZE, meta_page)

FIRST_DATA_PAGE = 3  # 0 and 1: meta pages, 2: the freelist


def _leaf_body(elements: list[tuple[int, bytes, bytes]], pgid: int) -> bytes:
    """A leaf page (header and data, unpadded) holding `elements`: (flags, key, value)."""
    n = len(elements)
    head: list[bytes] = [PAGE_HEADER.pack(pgid, LEAF, n, 0)]
    data: list[bytes] = []
    offset = LEAF_ELEMENT.size * n  # from the first element to the data
    for i, (flags, key, value) in enumerate(elements):
        pos = offset - LEAF_ELEMENT.size * i
        head.append(LEAF_ELEMENT.pack(flags, pos, len(key), len(value)))
        data += (key, value)
        offset += len(key) + len(value)
    return b"".join(head + data)


def _branch_body(children: list[tuple[bytes, int]], pgid: int) -> bytes:
    n = len(children)
    head: list[bytes] = [PAGE_HEADER.pack(pgid, BRANCH, n, 0)]
    data: list[bytes] = []
    offset = BRANCH_ELEMENT.size * n
    for i, (key, child) in enumerate(children):
        head.append(BRANCH_ELEMENT.pack(offset - BRANCH_ELEMENT.size * i, len(key), child))
        data.append(key)
        offset += len(key)
    return b"".join(head + data)


class Writer:
    """Writes pages into `out` (a seekable binary file, empty); `finish` writes the metas."""

    def __init__(self, out: BinaryIO, page_size: int = PAGE_SIZE):
        self.out = out
        self.page_size = page_size
        self.next_pgid = FIRST_DATA_PAGE

    def _write(self, body: bytes, pgid: int) -> None:
        pages = max(1, -(-len(body) // self.page_size))
        # the overflow count lives in the header: patch it in (bytes 12..16)
        body = body[:12] + (pages - 1).to_bytes(4, "little") + body[16:]
        self.out.seek(pgid * self.page_size)
        self.out.write(body.ljust(pages * self.page_size, b"\0"))
        self.next_pgid = max(self.next_pgid, pgid + pages)

    def _page(self, body_of, items) -> int:
        pgid = self.next_pgid
        body = body_of(items, pgid)
        self._write(body, pgid)
        return pgid

    def bucket(self, entries: Iterable[tuple[bytes, bytes]], sub_buckets: bool = False) -> bytes:
        """The value a parent stores for a bucket holding `entries` (sorted by key, unique).
        sub_buckets: the entries' values are bucket values (BUCKET_LEAF flag)."""
        b = self.builder(sub_buckets)
        for key, value in entries:
            b.add(key, value)
        return b.close()

    def builder(self, sub_buckets: bool = False) -> "BucketBuilder":
        """A bucket filled entry by entry (sorted by key, unique), its pages written as they fill."""
        return BucketBuilder(self, sub_buckets)

    def _root(self, level: list[tuple[bytes, int]]) -> int:
        """Branch levels over `level` until one page remains; its id."""
        while len(level) > 1:
            upper: list[tuple[bytes, int]] = []
            group: list[tuple[bytes, int]] = []
            size = PAGE_HEADER.size
            for key, child in level:
                grown = BRANCH_ELEMENT.size + len(key)
                if group and size + grown > self.page_size:
                    upper.append((group[0][0], self._page(_branch_body, group)))
                    group, size = [], PAGE_HEADER.size
                group.append((key, child))
                size += grown
            upper.append((group[0][0], self._page(_branch_body, group)))
            level = upper
        return level[0][1]

    def finish(self, buckets: list[tuple[bytes, bytes]]) -> int:
        """Write the root bucket (`buckets`: (name, value of `bucket`) sorted by name), the
        empty freelist and both meta pages; returns the file's size."""
        root_value = self.bucket(buckets, sub_buckets=True)
        root = BUCKET_HEADER.unpack(root_value[:BUCKET_HEADER.size])[0]
        self._write(PAGE_HEADER.pack(2, FREELIST, 0, 0), 2)
        for txid in (0, 1):
            self.out.seek(txid * self.page_size)
            self.out.write(meta_page(txid, self.page_size, root, 2, self.next_pgid))
        self.out.flush()
        return self.next_pgid * self.page_size


class BucketBuilder:
    """One bucket of a Writer, filled in key order; `close` gives the value its parent stores."""

    def __init__(self, writer: Writer, sub_buckets: bool):
        self.w = writer
        self.sub_buckets = sub_buckets
        self.flags = BUCKET_LEAF if sub_buckets else 0
        self.pending: list[tuple[int, bytes, bytes]] = []
        self.size = PAGE_HEADER.size
        self.level: list[tuple[bytes, int]] = []  # (first key, pgid) of the written leaves

    def add(self, key: bytes, value: bytes) -> None:
        grown = LEAF_ELEMENT.size + len(key) + len(value)
        if self.pending and self.size + grown > self.w.page_size:
            self.level.append((self.pending[0][1], self.w._page(_leaf_body, self.pending)))
            self.pending, self.size = [], PAGE_HEADER.size
        self.pending.append((self.flags, key, value))
        self.size += grown

    def close(self) -> bytes:
        pending, level = self.pending, self.level
        if not level and not self.sub_buckets and self.size <= self.w.page_size // 4:
            return BUCKET_HEADER.pack(0, 0) + _leaf_body(pending, 0)
        if pending or not level:
            level.append((pending[0][1] if pending else b"", self.w._page(_leaf_body, pending)))
        return BUCKET_HEADER.pack(self.w._root(level), 0)
