"""How label keys, field paths and values are stored in kf_index: UTF-8 bytes, compared
bytewise; longer than schema.INDEX_TERM_BYTES, 0xFF + SHA-256 of the bytes (0xFF never occurs
in UTF-8, so a digest never equals a real term, and equal terms have equal digests). The
writer and the query plans encode with this one function."""
from __future__ import annotations

import hashlib

from kubefabric.store.schema import INDEX_TERM_BYTES


def encode(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= INDEX_TERM_BYTES:
        return raw
    return b"\xff" + hashlib.sha256(raw).digest()
