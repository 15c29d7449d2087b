"""Differential fuzzing: hypothesis generates sequences of up to 40 operations (Put, DeleteRange,
Txn with nested Txns, Range, Compact, LeaseGrant/LeaseRevoke, Watch; harness/fuzz/strategies.py), each
sequence runs on a fresh etcd and a fresh `kubefabric serve` (harness/fuzz/pairs.py), and every response
and every watch event is compared as the `differential` fixture compares them (harness/fuzz/ops.py says
how watch events are collected).

CI runs 25 examples, derandomized: the same examples on every run. A soak runs more, from a
random seed that is printed (and shown with any failure):

    KUBEFABRIC_SOAK=1 uv run pytest tests/fuzz/test_differential_fuzz.py -rP

(KUBEFABRIC_SOAK=<n> runs n examples instead of 500; KUBEFABRIC_FUZZ_SEED=<n> replays a seed;
KUBEFABRIC_FUZZ_EXAMPLES=<n> changes the CI count; KUBEFABRIC_FUZZ_SHRINK=1 or 0 turns shrinking
a failing sequence on or off (on in a soak, off in CI: every attempt costs a fresh server pair,
so hypothesis may spend its full five minutes); KUBEFABRIC_DIFF_AGAINST=etcd runs both sides
on etcd, which checks the runner's own model and determinism.)

A difference found here is kept below as a plain regression test with its shrunk sequence.
"""
from __future__ import annotations

from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

import os
import random
import time

import pytest
from hypothesis import HealthCheck, Phase, given, note, seed, settings

from harness.fuzz.ops import Back, Cmp, Compact, Delete, Get, Grant, Put, Revoke, Txn, Watch, body_of  # noqa: F401
from harness.fuzz.pairs import PairPool, differential_on
from harness.fuzz.strategies import R, sequences

SOAK = os.environ.get("KUBEFABRIC_SOAK", "")
EXAMPLES = (500 if SOAK in ("1", "true", "yes") else int(SOAK)) if SOAK else \
    int(os.environ.get("KUBEFABRIC_FUZZ_EXAMPLES", "25"))
SEED = os.environ.get("KUBEFABRIC_FUZZ_SEED") or (str(random.randrange(2**32)) if SOAK else None)
STATS = {"examples": 0, "operations": 0, "steps": 0, "watch events": 0}


SHRINK = os.environ.get("KUBEFABRIC_FUZZ_SHRINK", "1" if SOAK else "0") != "0"
PHASES = [p for p in Phase if p != Phase.shrink or SHRINK]


def _settings(f):
    f = settings(max_examples=EXAMPLES, deadline=None, derandomize=SEED is None, database=None,
                 print_blob=True, phases=PHASES,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.function_scoped_fixture,
                                        HealthCheck.large_base_example])(f)
    return seed(int(SEED))(f) if SEED is not None else f


@pytest.fixture
def pairs(tmp_path):
    pool = PairPool(tmp_path / "pairs", ahead=int(os.environ.get("KUBEFABRIC_FUZZ_AHEAD", "2")))
    started = time.monotonic()
    yield pool
    pool.close()
    print(f"fuzz: {STATS['examples']} examples, {STATS['operations']} operations, "
          f"{STATS['steps']} recorded steps, {STATS['watch events']} watch events compared, "
          f"{time.monotonic() - started:.1f}s, seed {SEED or 'derandomized'}")


@pytest.mark.timeout(600 + 30 * EXAMPLES)  # shrinking a failure may take hypothesis 5 more minutes
@_settings
@given(ops=sequences())
def test_random_sequences_match_etcd(pairs, ops):
    note(f"seed {SEED or 'derandomized'}")
    pair = pairs.take()
    try:
        recording = differential_on(pair, body_of(ops))
    finally:
        pairs.release(pair)
    STATS["examples"] += 1
    STATS["operations"] += len(ops)
    STATS["steps"] += len(recording)
    STATS["watch events"] += sum(1 for label, items in recording if label.startswith("watch ")
                                 for item in items if "event" in item)


# Differences found by the fuzzer, shrunk; each fails until KubeFabric answers like etcd.

def test_watch_start_below_minus_one_is_cancelled_as_compacted(differential):
    """etcd 3.4 puts a watcher with a negative start revision in the unsynced group with
    minRev = start; while the store was never compacted its compactMainRev is -1, so a start below
    -1 is "compacted": after `created` etcd sends {canceled: true, compact_revision: -1} (header
    revision 0). A start of -1 reads no history and watches from now on."""
    differential(body_of([Watch(b"a", start=-2), Watch(b"b", start=-1), Put(b"a"), Put(b"b")]))


def test_watch_negative_start_after_a_compaction_is_cancelled_as_compacted(differential):
    """The same rule once the store is compacted: any negative start is below compactMainRev, so
    etcd answers `created` then {canceled: true, compact_revision: 3}; KubeFabric watches from now."""
    differential(body_of([Put(b"a"), Put(b"a"), Compact(0), Watch(b"a", start=-1), Put(b"a")]))


def test_txn_range_with_a_negative_revision_is_compacted(differential):
    """Inside a Txn etcd checks a Range's revision against the compact revision before running it
    (checkRequestRange: 0 is "now", anything below compactMainRev, -1 before any compaction, is
    ErrCompacted), while a plain Range reads a negative revision as the current one."""
    differential(body_of([Put(b"a"), Txn(success=(Get(b"a", rev=-1), Get(b"a", rev=-2))),
                          Txn(success=(Get(b"a", rev=-2),)), Get(b"a", rev=-2),
                          Put(b"a"), Compact(0), Txn(success=(Get(b"a", rev=-1),)),
                          Txn(success=(Get(b"a", rev=0),)), Get(b"a", rev=-1)]))


def test_watch_on_the_empty_key_watches_nul(differential):
    """etcd's Watch replaces an empty key with "\\x00" (the smallest key) before creating the
    watcher, so a single-key watch on b"" reports the key b"\\x00"."""
    differential(body_of([Watch(b""), Put(b"\x00", b"1"), Put(b"\x00\x00"), Delete(b"\x00")]))


def test_put_checks_the_lease_before_the_key_and_txn_the_other_way_round(differential):
    """A plain Put looks the lease up before anything else (applierV3backend.Put); a Txn's
    checkRequestPut looks for the key that ignore_value/ignore_lease needs first."""
    differential(body_of([Put(b"k", lease=104, ignore_value=True),
                          Put(b"k", lease=104, ignore_value=True, prev_kv=True),
                          Txn(success=(Put(b"k", lease=104, ignore_value=True),)),
                          Put(b"k"), Put(b"k", lease=104, ignore_value=True)]))


def test_sort_order_of_ties_is_compared_as_groups(differential):
    """etcd sorts a Range with sort.Sort, Go's pdqsort, which is not stable beyond 12 elements:
    13 keys with two alternating values sorted by VALUE come back in etcd as
    k08 k12 k02 k00 k04 k10 k06, k03 k07 k09 k05 k11 k01, not in key order within a value.
    No client can rely on the order among equal sort targets (it is unspecified and changes
    with the Go version), so this compares the groups of equal values, in order, each group's
    keys as a set; KubeFabric orders ties by key."""
    def body(c, record):
        for i in range(13):
            c.put(b"k%02d" % i, b"v%d" % (i % 2))
        for order in (pb.RangeRequest.ASCEND, pb.RangeRequest.DESCEND):
            resp = c.get(b"k", range_end=b"l", sort_order=order, sort_target=pb.RangeRequest.VALUE)
            groups: list[tuple[bytes, list[bytes]]] = []
            for kv in resp.kvs:
                if not groups or groups[-1][0] != kv.value:
                    groups.append((kv.value, []))
                groups[-1][1].append(kv.key)
            record(f"groups {order}", [(v.decode(), sorted(k.decode() for k in keys)) for v, keys in groups])
            record(f"count {order}", [resp.count, resp.more, resp.header.revision])
    differential(body)


def test_watch_compacted_at_revision_zero_is_not_marked_canceled(differential):
    """Compact(0) is allowed while nothing was compacted (etcd's compactMainRev goes from -1 to
    0). A negative start is then below it, and etcd's compaction response for the watcher carries
    compact_revision 0, so its `canceled := CompactRevision != 0` is false: after `created` the
    client gets {watch_id, header revision 0} with neither canceled nor compact_revision set,
    and the watcher is gone (no events)."""
    differential(body_of([Put(b"a"), Compact(2), Watch(b"a", start=-1), Put(b"a")]))
