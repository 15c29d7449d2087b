"""The shard writer's CPU per put at a fixed batch size, in-process (no gRPC): a Shard on a
temporary SQLite file; each round puts `--batch` keys at once (one writer batch of that many,
what 16 clients give `kubefabric serve`: 3.5-6.5 per batch), and the whole process's CPU (every
thread: the event loop and the store's COMMIT thread) is divided by the puts.

    .venv/bin/python bench/writer_batches.py --batch 4 --rounds 1000 --synchronous NORMAL
    .venv/bin/python bench/writer_batches.py --txn    # each write a Txn as kube-apiserver's

Compare builds in interleaved runs (one tree, then the other, several times): with a fixed batch
size the figure does not depend on how the load spreads requests over batches, which makes
bench/run.py's CPU per put swing by 20-30 % on a busy machine. `--synchronous NORMAL` leaves out
the fsync (whose kernel time varies with the disk's other work); the writer's code path is the
same (COMMIT still runs on the store's thread).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time

import uvloop

from backend_sqlite.store import SqliteStore
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.shard.core import Shard


def _write(shard: Shard, key: bytes, value: bytes, txn: bool):
    put = pb.PutRequest(key=key, value=value)
    if not txn:
        return shard.put(put)
    # kube-apiserver's update: the put if the key is still at the revision it read (here: any)
    cmp = pb.Compare(key=key, target=pb.Compare.MOD, result=pb.Compare.GREATER, mod_revision=-1)
    return shard.txn(pb.TxnRequest(compare=[cmp], success=[pb.RequestOp(request_put=put)],
                                   failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))]))


async def measure(batch: int, rounds: int, synchronous: str, value_size: int, txn: bool) -> float:
    """CPU µs per put."""
    data = tempfile.mkdtemp(prefix="kf-writer-batches-")
    shard = Shard(SqliteStore(data, synchronous=synchronous))
    await shard.open()
    value = b"v" * value_size
    try:
        async def run(n: int) -> None:
            for r in range(n):
                await asyncio.gather(*(_write(shard, b"/k/%d/%d" % (i, r % 500), value, txn)
                                       for i in range(batch)))
        await run(min(200, rounds))  # warm-up: caches, statements, the COMMIT thread
        started = time.process_time()
        await run(rounds)
        return 1e6 * (time.process_time() - started) / (rounds * batch)
    finally:
        await shard.close()
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4, help="puts per writer batch (default 4)")
    ap.add_argument("--rounds", type=int, default=1000, help="batches measured (default 1000)")
    ap.add_argument("--synchronous", default="NORMAL", choices=("FULL", "NORMAL"),
                    help="SQLite's synchronous mode (default NORMAL: no fsync)")
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--txn", action="store_true", help="each write a Txn (compare, put; else range)")
    args = ap.parse_args()
    cpu = uvloop.run(measure(args.batch, args.rounds, args.synchronous, args.value_size, args.txn))
    print(f"cpu {cpu:.1f} us/{'txn' if args.txn else 'put'} (batches of {args.batch}, "
          f"synchronous={args.synchronous}), "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
