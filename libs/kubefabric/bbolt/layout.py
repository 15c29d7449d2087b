"""bbolt's page format (go.etcd.io/bbolt v1.x, little-endian as on amd64/arm64).

A file is a sequence of pages of `page_size` bytes, page n at offset n * page_size. Every page
starts with a 16-byte header (id u64, flags u16, count u16, overflow u32); a page with overflow k
spans k + 1 consecutive pages. Pages 0 and 1 are meta pages (the valid one with the higher txid
is current; its checksum is FNV-1a 64 over the meta fields before it); the meta names the root
bucket's page, the freelist page and the high-water mark (pages in use). A bucket is a B+tree:
branch pages hold (pos, ksize, child pgid) elements, leaf pages (flags, pos, ksize, vsize)
elements; `pos` counts from the element itself to its key, the value follows the key. A leaf
element with BUCKET_LEAF set is a sub-bucket: its value is the bucket header (root pgid u64,
sequence u64), followed, when root is 0, by the bucket's only leaf page ("inline" bucket).
"""
from __future__ import annotations

import struct

PAGE_SIZE = 4096
MAGIC = 0xED0CDAED
VERSION = 2
NO_FREELIST = 0xFFFF_FFFF_FFFF_FFFF  # meta.freelist when the freelist is not persisted

BRANCH, LEAF, META, FREELIST = 0x01, 0x02, 0x04, 0x10
BUCKET_LEAF = 0x01

PAGE_HEADER = struct.Struct("<QHHI")             # id, flags, count, overflow
BRANCH_ELEMENT = struct.Struct("<IIQ")           # pos, ksize, pgid
LEAF_ELEMENT = struct.Struct("<IIII")            # flags, pos, ksize, vsize
BUCKET_HEADER = struct.Struct("<QQ")             # root pgid, sequence
META_FIELDS = struct.Struct("<IIII QQ QQQ")      # magic, version, page size, flags, root bucket, freelist, pgid, txid
CHECKSUM = struct.Struct("<Q")
PGID = struct.Struct("<Q")


class BoltError(ValueError):
    """A file that is not a readable bbolt database; the message is one line for users."""


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFF_FFFF_FFFF_FFFF
    return h


def meta_page(txid: int, page_size: int, root: int, freelist: int, high_water: int) -> bytes:
    """Meta page `txid % 2` of a file whose root bucket is at page `root`."""
    fields = META_FIELDS.pack(MAGIC, VERSION, page_size, 0, root, 0, freelist, high_water, txid)
    body = PAGE_HEADER.pack(txid % 2, META, 0, 0) + fields + CHECKSUM.pack(fnv1a64(fields))
    return body.ljust(page_size, b"\0")
