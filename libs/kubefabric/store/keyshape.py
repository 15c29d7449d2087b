"""The three shapes of a key range in a statement (a single key, [start, end), every key from
start on) and the condition each puts on a key column, with :start and :end bound."""
from __future__ import annotations

from sqlalchemy import and_, bindparam


def shape_of(end: bytes | None) -> str:
    if end is None:
        return "single"
    return "unbounded" if end == b"" else "bounded"


def key_cond(col, shape: str):
    if shape == "single":
        return col == bindparam("start")
    if shape == "bounded":
        return and_(col >= bindparam("start"), col < bindparam("end"))
    return col >= bindparam("start")
