"""The bbolt writer and reader on their own (libs/kubefabric/bbolt): a file of 20,000 key rows
(two levels of branch pages), values bigger than a page (overflow pages), small buckets written
inline and an empty one; read back entry for entry, and accepted by etcdutl (bbolt's own
tx.Check: every page reachable exactly once, keys in order)."""
from __future__ import annotations

import json
import random

from harness.servers import etcdutl_binary
from harness.snapshots import run
from kubefabric.bbolt.reader import Reader
from kubefabric.proto.mvccpb.kv_pb2 import KeyValue
from kubefabric.snapshot import schema, take


def test_written_file_reads_back_and_passes_bbolts_check(tmp_path):
    rnd = random.Random(7)
    key_rows = []
    for rev in range(2, 20_002):
        size = 9000 if rev % 5000 == 0 else rnd.randrange(0, 300)
        kv = KeyValue(key=b"/registry/k%06d" % rnd.randrange(10**6), create_revision=rev,
                      mod_revision=rev, version=1, value=rnd.randbytes(size))
        key_rows.append((schema.rev_key(rev, 0), kv.SerializeToString()))
    contents = schema.Contents(20_001, -1, {name: [] for name in schema.ALL_BUCKETS})
    contents.buckets[schema.KEY] = key_rows
    contents.buckets[schema.META] = schema.meta_entries(20_001, -1, 2)
    contents.buckets[schema.LEASE] = schema.lease_entries([(0x77, 600, 500)])
    path = tmp_path / "big.db"
    with open(path, "w+b") as f:
        size = take.write(contents, f)
    assert path.stat().st_size == size
    with Reader(path) as r:
        assert r.buckets() == sorted(schema.ALL_BUCKETS)
        for name, entries in contents.buckets.items():
            assert list(r.items(name)) == entries, name
    status = json.loads(run(etcdutl_binary(), "snapshot", "status", path, "-w", "json").stdout)
    assert status["revision"] == 20_001
    assert status["totalKey"] == len({KeyValue.FromString(v).key for _, v in key_rows})
