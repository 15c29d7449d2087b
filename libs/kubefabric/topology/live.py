"""`kubefabric topology check FILE --live` and `kubefabric topology move FILE`: misplaced keys
(topology/misplaced.py) against the live shard services of a topology file.

What they do, as `kubefabric topology move --help` says it: kubefabric.topology.command.MISPLACED.
This module loads grpc: the command imports it only when it runs (kubefabric.cli).
"""
from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

from kubefabric.client import ClientError, Compacted, EtcdClient
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.shardsvc.client import connect_shard

from . import misplaced
from .model import show

CONNECT_S = 15.0


@dataclass
class Found:
    shard: str      # where the misplaced copy is
    key: bytes
    owner: str      # where the topology routes it


async def connect(topology) -> tuple[dict, list[str]]:
    """(name -> RemoteShard for every shard service, notes about shards not reached)."""
    shards, notes = {}, []
    for spec in topology.shards.values():
        if spec.embedded:
            notes.append(f"shard {spec.name}: embedded in kv-router, not scanned from here (the "
                         f"router logs its misplaced keys at start-up and on reload)")
            continue
        try:
            shards[spec.name] = await asyncio.wait_for(
                connect_shard(spec.endpoint, spec.name, spec.tls, follow=False), CONNECT_S)
        except (ValueError, ConnectionError, TimeoutError) as err:
            notes.append(f"shard {spec.name}: not reached at {spec.endpoint}: {err or 'timed out'}")
    return shards, notes


async def find(topology, shards: dict) -> tuple[list[Found], list[str]]:
    """Every misplaced key of the reached shards (no budget: an operator asked), key order."""
    out: list[Found] = []
    notes: list[str] = []
    for name, shard in shards.items():
        result = await misplaced.scan(shard, name, topology, budget=None)
        out.extend(Found(name, key, owner) for key, owner in result.misplaced)
        notes.append(f"shard {name}: {len(result.misplaced)} misplaced key(s) "
                     f"({result.examined} examined)")
    return out, notes


async def _get(shard, key: bytes):
    resp = await shard.range(pb.RangeRequest(key=key))
    return resp.kvs[0] if resp.kvs else None


async def check_live(topology, out=sys.stdout) -> int:
    """List misplaced keys; 0: none (on the shards reached), 1: some, or a shard not reached."""
    shards, notes = await connect(topology)
    try:
        found, counts = await find(topology, shards)
        for f in found:
            owner = shards.get(f.owner)
            state = ""
            if owner is not None:
                state = "; the owner has it too (shadowed)" if await _get(owner, f.key) else \
                        "; the owner does not have it (hidden from clients)"
            print(f"{show(f.key)} on {f.shard}, routed to {f.owner}{state}", file=out)
        for line in notes + counts:
            print(line, file=sys.stderr)
        unreached = any("not reached" in n for n in notes)
        return 1 if found or unreached else 0
    finally:
        for shard in shards.values():
            await shard.close()


async def move(topology, endpoints: str, tls=None, drop_shadowed: bool = False,
               dry_run: bool = False, out=sys.stdout) -> int:
    """Move every misplaced key to its owner (command.MISPLACED says how); 0 when none is left."""
    shards, notes = await connect(topology)
    router = EtcdClient.connect(endpoints, tls)
    left = 0
    try:
        found, _ = await find(topology, shards)
        for f in found:
            kv = await _get(shards[f.shard], f.key)
            if kv is None:
                continue  # deleted meanwhile
            try:
                line, done = await _move_one(router, shards[f.shard], f, kv, drop_shadowed, dry_run)
            except ClientError as err:
                line, done = f"{show(f.key)} on {f.shard}: not moved: {err}", False
            left += not done
            print(line, file=out)
        for line in notes:
            print(line, file=sys.stderr)
        print(f"{len(found)} misplaced key(s), {len(found) - left} "
              f"{'would be handled' if dry_run else 'handled'}, {left} left", file=sys.stderr)
        return 1 if left or any("not reached" in n for n in notes) else 0
    finally:
        await router.close()
        for shard in shards.values():
            await shard.close()


async def _move_one(router, shard, f: Found, kv, drop_shadowed: bool, dry_run: bool) -> tuple[str, bool]:
    """(what happened, whether the misplaced copy is gone or would be)."""
    what = f"{show(f.key)} on {f.shard} -> {f.owner}"
    seen = await router.kv.range(f.key)
    owner_kv = seen.kvs[0] if seen.kvs else None
    if owner_kv is not None:  # the owner's copy is what clients see
        if not drop_shadowed:
            return (f"{what}: the owner has the key (revision {owner_kv.mod_revision}); kept "
                    f"both (--drop-shadowed deletes the copy on {f.shard}, value {show(kv.value[:64])})"), False
        if dry_run:
            return f"{what}: would delete the shadowed copy (value {show(kv.value[:64])})", True
        return await _delete_copy(shard, f, kv, seen.revision, f"{what}: deleted the shadowed "
                                  f"copy (value {show(kv.value[:64])})")
    since = await _owner_history(router, f.key, kv.mod_revision, seen.revision)
    if since:  # the owner deleted it after this copy was written: moving would bring it back
        if not drop_shadowed:
            return (f"{what}: the owner deleted the key at revision {since}, after this copy "
                    f"(revision {kv.mod_revision}); kept (--drop-shadowed deletes the copy on "
                    f"{f.shard}, value {show(kv.value[:64])})"), False
        if dry_run:
            return f"{what}: would delete the copy the owner deleted (value {show(kv.value[:64])})", True
        return await _delete_copy(shard, f, kv, seen.revision, f"{what}: deleted the copy the "
                                  f"owner deleted at revision {since} (value {show(kv.value[:64])})")
    if dry_run:
        return f"{what}: would move (value of {len(kv.value)} bytes, lease {kv.lease})", True
    wrote = await router.kv.txn(
        [pb.Compare(key=f.key, target=pb.Compare.CREATE, result=pb.Compare.EQUAL, create_revision=0)],
        [pb.RequestOp(request_put=pb.PutRequest(key=f.key, value=kv.value, lease=kv.lease))])
    if not wrote.succeeded:
        return f"{what}: the owner got the key meanwhile; kept both", False
    return await _delete_copy(shard, f, kv, wrote.header.revision,
                              f"{what}: moved (now at revision {wrote.header.revision})")


async def _owner_history(router, key: bytes, copy_rev: int, now: int) -> int:
    """The revision of the owner's last change of `key` after `copy_rev` (the misplaced copy's
    mod_revision) up to `now`, 0 if none. Read through the router's watch from copy_rev + 1 (from
    the compaction revision on when that is compacted: what came before is gone for everyone)."""
    start = copy_rev + 1
    last = 0
    while start <= now:
        try:
            async with router.watch(key, start_revision=start) as w:
                await w.request_progress()
                while True:
                    batch = await asyncio.wait_for(w.__anext__(), CONNECT_S)
                    if batch.events:
                        last = max(last, batch.events[-1].kv.mod_revision)
                    if batch.progress or batch.revision >= now:
                        return last
        except Compacted as err:
            start = max(start + 1, err.compact_revision + 1)
    return last


async def _delete_copy(shard, f: Found, kv, seen: int, said: str) -> tuple[str, bool]:
    """Delete the misplaced copy if unchanged; its revision comes after `seen`, the newest the
    router reported (DESIGN §3.2: a shard never commits at or below a revision already seen)."""
    resp = await shard.txn(pb.TxnRequest(
        compare=[pb.Compare(key=f.key, target=pb.Compare.MOD, result=pb.Compare.EQUAL,
                            mod_revision=kv.mod_revision)],
        success=[pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=f.key))]), seen)
    if not resp.succeeded:
        return f"{said}; the copy on {f.shard} changed meanwhile and was left", False
    return said, True
