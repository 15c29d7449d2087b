"""Where the label index's write cost goes on SQLite: the shard's own schema, statements and
index rows, written in batches the way the writer does, without the server around them.

    uv run python bench/index_sqlite.py                       # 20,000 puts per variant, ~1 min
    uv run python bench/index_sqlite.py --puts 50000 --batch 64

Each variant creates a fresh SQLite store (backend_sqlite: its pragmas, DDL and compiled
statements) and writes PUTS custom resources of 1 KiB (the objects of loadgen --value k8s:
2 labels, spec.customer) to random keys of a 100,000-key space, BATCH puts per transaction:
per put the log row, the kv row and, when indexed, the rows kubefabric.index.rows.Indexer
makes (metadata.name, metadata.namespace, spec.customer, app, tier: 5 rows). It prints the
process's CPU time per put (user + system: B-tree work, WAL writes, checkpoints, fsync) and the
bytes written per put. Variants:
- none: no index rows (what a put costs without an index);
- indexed: the index as it is (each row in kf_index's primary key and in its term index);
- no-term-index: the rows without the term index (the term index's share);
- partial-term-index: the term index without the metadata.name/namespace rows (SQLite partial
  index; an experiment: queries would then need another way to find objects by name/namespace).
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from backend_sqlite.store import SqliteStore

from kubefabric.index.rows import Indexer
from kubefabric.index.rules import index_rules
from kubefabric.proto.mvccpb.kv_pb2 import Event, KeyValue
from kubefabric.topology.load import parse_topology

TOPOLOGY = """
shards: [{name: main, endpoint: embedded}]
rules:
  - customresource: {group: bench.example.com, resource: widgets}
    shard: main
    index: {labels: true, fields: [spec.customer]}
"""
PREFIX = "/registry/bench.example.com/widgets/put/"
KEY_SPACE = 100_000
VARIANTS = ("none", "indexed", "no-term-index", "partial-term-index")
PARTIAL = ("CREATE INDEX kf_index_term ON kf_index (kind, name, value, key, rev, sub) "
           "WHERE name NOT IN (X'6d657461646174612e6e616d65', "        # metadata.name
           "X'6d657461646174612e6e616d657370616365')")                  # metadata.namespace


def value(i: int, size: int = 1024) -> bytes:
    """loadgen's k8sObject: the same labels, field and size."""
    head = (f'{{"apiVersion":"bench.example.com/v1","kind":"Widget","metadata":{{"name":"{i:08d}",'
            f'"namespace":"put","uid":"00000000-0000-0000-0000-{i:012d}","labels":{{"app":"a{i % 100}",'
            f'"tier":"t{i % 3}"}}}},"spec":{{"customer":"c{i % 1000}","pad":"')
    tail = '"}}'
    return (head + "x" * max(0, size - len(head) - len(tail)) + tail).encode()


def written_bytes() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("wchar"))


def run(variant: str, puts: int, batch: int, seed: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="kf-bench-index-sqlite-"))
    try:
        store = SqliteStore(workdir)
        store._open()  # the store's own pragmas and schema (normally run in a worker thread)
        w, stmts = store._w, store.stmts
        if variant in ("no-term-index", "partial-term-index"):
            w.execute("DROP INDEX kf_index_term")
        if variant == "partial-term-index":
            w.execute(PARTIAL)
        indexer = Indexer(index_rules(parse_topology(TOPOLOGY), "main") if variant != "none" else ())
        log_sql, kv_sql, index_sql = (stmts.get(n) for n in ("insert_log", "upsert_kv", "index_insert"))
        rnd = random.Random(seed)
        rev, done = 1, 0
        cpu0, bytes0, t0 = resource.getrusage(resource.RUSAGE_SELF), written_bytes(), time.monotonic()
        while done < puts:
            w.execute("BEGIN IMMEDIATE")
            rows = []
            for _ in range(min(batch, puts - done)):
                i = rnd.randrange(KEY_SPACE)
                key, val = f"{PREFIX}{i:08d}".encode(), value(i)
                rev += 1
                row = {"key": key, "rev": rev, "sub": 0, "create_rev": rev, "prev_rev": 0,
                       "version": 1, "lease": 0, "deleted": 0, "value": val, "mod_rev": rev}
                w.execute(log_sql.sql, log_sql.args(row))
                w.execute(kv_sql.sql, kv_sql.args(row))
                rows += indexer.rows(rev, [Event(type=Event.PUT, kv=KeyValue(key=key, value=val))])
                done += 1
            if rows:
                w.executemany(index_sql.sql, rows)
            w.execute("COMMIT")
        cpu1, seconds = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - t0
        user, system = cpu1.ru_utime - cpu0.ru_utime, cpu1.ru_stime - cpu0.ru_stime
        return {"variant": variant, "puts": puts, "batch": batch,
                "cpu_us_per_put": round(1e6 * (user + system) / puts, 1),
                "user_us_per_put": round(1e6 * user / puts, 1),
                "system_us_per_put": round(1e6 * system / puts, 1),
                "written_kb_per_put": round((written_bytes() - bytes0) / puts / 1024, 1),
                "puts_per_sec": round(puts / seconds)}
    finally:
        store._w.close()
        store._r.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--puts", type=int, default=20_000, help="puts per variant (default 20000)")
    p.add_argument("--batch", type=int, default=32, help="puts per transaction (default 32)")
    p.add_argument("--rounds", type=int, default=1, help="runs of each variant (the table: medians)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    p.add_argument("--json", help="write every result to this file")
    args = p.parse_args(argv)
    variants = args.variants.split(",")
    if unknown := set(variants) - set(VARIANTS):
        p.error(f"unknown variant(s) {', '.join(sorted(unknown))}: use {', '.join(VARIANTS)}")
    results = []
    for r in range(args.rounds):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            results.append(run(v, args.puts, args.batch, seed=r))
            print(json.dumps(results[-1]), file=sys.stderr)
    print("| variant | CPU us/put | user | system | KB written/put | puts/s |\n|---|---|---|---|---|---|")
    for v in variants:
        runs = sorted((x for x in results if x["variant"] == v), key=lambda x: x["cpu_us_per_put"])
        m = runs[len(runs) // 2]
        print(f"| {v} | {m['cpu_us_per_put']:.0f} | {m['user_us_per_put']:.0f} | "
              f"{m['system_us_per_put']:.0f} | {m['written_kb_per_put']:.1f} | {m['puts_per_sec']:,} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
