"""The dead-letter queue: events not delivered after their last attempt, stored in KubeFabric
under /kubefabric/trigger/dlq/<uid>/ (records.py), and the `kubefabric trigger dlq` commands:

    kubefabric trigger dlq list   [--trigger NS/NAME] [-o json]
    kubefabric trigger dlq replay [--trigger NS/NAME] [--id ID]...   # deliver them again
    kubefabric trigger dlq purge  [--trigger NS/NAME] [--id ID]...   # drop them

`replay` moves letters to /kubefabric/trigger/replay/ in one Txn per letter; the running
trigger service that owns the object delivers each with the trigger's current settings and
removes it, or puts it back in the queue with the new error. The command line is trigger.serve's.
"""
from __future__ import annotations

import asyncio
import json
import logging
import sys

from kubefabric.client import ClientError, Compacted, prefix_end
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

from . import metrics, records
from .client import client_for
from .delivery import Outcome, deliver
from .events import Event
from .objects import ObjectRef
from .records import DeadLetter
from .request import build

log = logging.getLogger("kubefabric.trigger.dlq")


async def letters(client, prefix: bytes, trigger: str = "", ids=()) -> list:
    kvs, _ = await client.kv.list(prefix)
    out = []
    for kv in kvs:
        try:
            d = DeadLetter.decode(kv.value)
        except (ValueError, TypeError):
            continue
        if (trigger and d.trigger != trigger) or (ids and d.id not in ids):
            continue
        out.append((kv, d))
    return out


async def move(client, kv, to_prefix: bytes, letter: DeadLetter) -> bool:
    """Move one letter (guarded by its mod_revision: a letter is moved once)."""
    name = kv.key.rsplit(b"/", 1)[1]
    dest = to_prefix + letter.uid.encode() + b"/" + name
    r = await client.kv.txn(
        [pb.Compare(key=kv.key, target=pb.Compare.MOD, result=pb.Compare.EQUAL, mod_revision=kv.mod_revision)],
        [pb.RequestOp(request_put=pb.PutRequest(key=dest, value=letter.encode())),
         pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=kv.key))])
    return r.succeeded


# ---- the service side of replays ----

async def replay_loop(svc) -> None:
    """Deliver letters that appear under /kubefabric/trigger/replay/ for triggers this replica
    runs and objects it owns."""
    rev = 0
    while True:
        try:
            kvs, rev = await svc.client.kv.list(records.REPLAY)
            for kv in kvs:
                await _replay_one(svc, kv)
            async with svc.client.watch(records.REPLAY, prefix_end(records.REPLAY),
                                        start_revision=rev + 1) as w:
                async for batch in w:
                    for e in batch.events:
                        if e.type == 0:
                            await _replay_one(svc, e.kv)
        except (Compacted, ClientError) as err:
            log.info("replays: %s; re-reading", err)
            await asyncio.sleep(1)


async def _replay_one(svc, kv) -> None:
    try:
        letter = DeadLetter.decode(kv.value)
    except (ValueError, TypeError):
        return
    p = next((p for p in svc.pipelines.values() if p.t.uid == letter.uid), None)
    key = letter.key.encode()
    if p is None or not svc.owns(key):
        return
    ref = ObjectRef((letter.object.get("metadata") or {}).get("namespace", ""),
                    (letter.object.get("metadata") or {}).get("name", ""))
    ev = Event(letter.type, key, letter.revision, letter.object, letter.old_object, ref)
    s = p.t.spec
    outcome: Outcome = await deliver(p.caller, lambda: build(p.t, ev, p.plural, svc.source, svc.lookups),
                                     s.timeout, s.retries, s.backoff)
    if outcome.delivered:
        await svc.client.kv.delete_if(kv.key, kv.mod_revision)
        metrics.replayed.labels(p.t.id).inc()
        log.info("trigger %s: replayed %s", p.t.id, letter.id)
    else:
        letter.error, letter.attempts = outcome.error, letter.attempts + outcome.attempts
        await move(svc.client, kv, records.DLQ, letter)
        log.warning("trigger %s: replay of %s failed again: %s", p.t.id, letter.id, outcome.error)


# ---- the commands ----

def run_command(args) -> int:
    async def go() -> int:
        client = client_for(args)
        try:
            found = await letters(client, records.DLQ, args.trigger, tuple(args.id))
            if args.dlq_command == "list":
                _print(found, args.output)
                return 0
            n = 0
            for kv, d in found:
                if args.dlq_command == "replay":
                    n += await move(client, kv, records.REPLAY, d)
                else:
                    n += (await client.kv.delete_if(kv.key, kv.mod_revision)).succeeded
            verb = "queued for replay" if args.dlq_command == "replay" else "purged"
            print(f"{n} dead letter(s) {verb}")
            return 0
        except ClientError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        finally:
            await client.close()

    return asyncio.run(go())


def _print(found, output: str) -> None:
    if output == "json":
        print(json.dumps([d.__dict__ for _, d in found], indent=1))
        return
    rows = [("TRIGGER", "EVENT", "TYPE", "ATTEMPTS", "TIME", "ERROR")]
    rows += [(d.trigger, d.id, d.type, str(d.attempts), d.time, d.error[:80]) for _, d in found]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(r[i].ljust(widths[i]) for i in range(5)) + "  " + r[5])
