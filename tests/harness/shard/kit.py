"""Shared by the shard tests: a Shard run in-process, a listener recorder, comparable outcomes,
and the checks that hold a shard to the model (harness.shard.model.Model) over generated requests
(harness.shard.gen).
"""
from __future__ import annotations

import asyncio
import random
from contextlib import asynccontextmanager

from google.protobuf import text_format
from google.protobuf.message import Message

from kubefabric.etcd.errors import EtcdError
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.mvccpb.kv_pb2 import Event
from kubefabric.shard.core import Shard
from harness.shard.gen import LEASES, Draw, gen_write
from harness.shard.model import Model

# ---- running a shard ----


@asynccontextmanager
async def opened(store, index_rules=(), **kw):
    """index_rules: the label and field indexes the shard keeps (kubefabric.index.rules)."""
    shard = Shard(store, **kw)
    shard.index.configure(index_rules)
    await shard.open()
    try:
        yield shard
    finally:
        await shard.close()


def run_shard(store_factory, body, name: str = "db", **kw):
    """asyncio.run(body(shard)) on an opened shard over store_factory(name)."""
    async def main():
        async with opened(store_factory(name), **kw) as shard:
            return await body(shard)
    return asyncio.run(main())


async def log_rows(store) -> int:
    """Rows in the store's log table, read through the store's own statement."""
    async with store.snapshot() as cur:
        return await cur.scalar("log_count", {})


async def outcome(coro):
    try:
        return await coro
    except EtcdError as err:
        return err


def expect(fn, *args):
    try:
        return fn(*args)
    except EtcdError as err:
        return err


async def head(shard) -> int:
    return (await shard.range(pb.RangeRequest(key=b"\x00", range_end=b"\x00", count_only=True))).header.revision


def without_prev(events: list[Event]) -> list[Event]:
    return [Event(type=e.type, kv=e.kv) for e in events]


def copy_event(ev: Event) -> Event:
    out = Event()
    out.CopyFrom(ev)
    return out


class Recorder:
    """A shard listener. Problems are collected, not raised: the writer swallows listener errors."""

    def __init__(self, shard=None):
        self.published: list[tuple[int, list[Event]]] = []
        self.calls = 0
        self.closed = 0
        self.problems: list[str] = []
        if shard is not None:
            shard.listeners.append(self)

    def __call__(self, published, committed: int) -> None:
        self.calls += 1
        for rev, events in published:
            last = self.published[-1][0] if self.published else 0
            if rev <= last:
                self.problems.append(f"revision {rev} published after {last}")
            if rev > committed:
                self.problems.append(f"revision {rev} published with closed revision {committed}")
            if not events:
                self.problems.append(f"revision {rev} published without events")
            self.published.append((rev, [copy_event(e) for e in events]))
        if committed < self.closed:
            self.problems.append(f"closed revision went back from {self.closed} to {committed}")
        self.closed = committed

    def events(self, lo: int = 0, hi: int = 2 ** 63) -> list[Event]:
        return [e for rev, evs in self.published if lo <= rev <= hi for e in evs]


# ---- comparing outcomes ----

def _strip_headers(msg: Message, top: bool) -> None:
    """Keep only the top-level header revision (ids and term are checked elsewhere)."""
    if "header" in msg.DESCRIPTOR.fields_by_name:
        rev = msg.header.revision
        msg.ClearField("header")
        if top:
            msg.header.revision = rev
    if isinstance(msg, pb.TxnResponse):
        for r in msg.responses:
            _strip_headers(getattr(r, r.WhichOneof("response")), top=False)


def show(x) -> str:
    """A comparable text for a response, an error or a list of events."""
    if isinstance(x, EtcdError):
        return f"error {x.code.name}: {x.message}"
    if isinstance(x, list):
        return "".join(f"--\n{show(e)}" for e in x)
    if isinstance(x, Message):
        msg = type(x)()
        msg.CopyFrom(x)
        _strip_headers(msg, top=True)
        return text_format.MessageToString(msg) or "(empty)"
    return repr(x)


# ---- holding a shard to the model ----

async def check_request(shard, model: Model, req):
    """Run one KV request on the shard and on the model; their outcomes must be equal."""
    name = {pb.PutRequest: "put", pb.DeleteRangeRequest: "delete_range", pb.TxnRequest: "txn",
            pb.RangeRequest: "range"}[type(req)]
    actual = await outcome(getattr(shard, name)(req))
    expected = expect(getattr(model, name), req)
    assert show(actual) == show(expected), f"{name} {text_format.MessageToString(req, as_one_line=True)}"
    return actual


async def random_history(shard, model: Model, seed: int, steps: int) -> None:
    """A seeded history of puts, deletes and txns (leases 1-3 granted first), checked as it goes."""
    for lease_id in LEASES:
        await shard.lease_grant(lease_id, 3600)
        model.lease_grant(lease_id)
    d = Draw(random.Random(seed))
    for _ in range(steps):
        await check_request(shard, model, gen_write(d, model))


async def check_every_revision(shard, model: Model, lo: int, hi: int) -> None:
    """Whole-keyspace reads (plain, limited, counted) at every revision lo..hi match the model."""
    for rev in range(lo, hi + 1):
        for extra in ({}, {"limit": 2}, {"count_only": True}, {"sort_order": pb.RangeRequest.DESCEND, "limit": 3}):
            await check_request(shard, model, pb.RangeRequest(key=b"\x00", range_end=b"\x00", revision=rev, **extra))
