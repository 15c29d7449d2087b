"""The history checker on hand-built histories: it passes good ones (including unknown outcomes
resolved either way) and fails each kind of bad one, so a checker that stopped checking is caught."""
from __future__ import annotations

import pytest

from harness.histcheck import (KV, Event, Read, Response, WatchLog, Write, check_history, check_resumed,
                       check_watch)

A, B, C = b"/registry/pods/tenant-a/a", b"/registry/pods/tenant-b/b", b"/registry/events/ns/c"
PODS = (b"/registry/pods/", b"/registry/pods0")


def put(key, value, inv, resp, rev, op, **kw):
    return Write(key, value, inv, resp, rev, op, **kw)


def delete(key, inv, resp, rev, op, **kw):
    return Write(key, None, inv, resp, rev, op, **kw)


def get(key, inv, resp, rev, kv, op, **kw):
    return Read(key, b"", inv, resp, rev, ((key, kv),) if kv else (), op, **kw)


def kv(value, mod, version=1, create=None):
    return KV(value, mod, version, create or mod)


def good_history():
    """A fresh store: A created at 2 (op 1), B at 3 (op 2), A updated by a CAS at 4 (op 3), a
    cross-shard range at 4 (op 4), A deleted at 5 (op 5, prev_kv), C put with an unknown outcome
    that a read saw at 6 (op 6), another unknown put never seen (op 7), a txn writing B and C at 8
    (op 8)."""
    writes = [
        put(A, b"a1", 0, 10, 2, 1, prev=None),
        put(B, b"b1", 5, 15, 3, 2),
        put(A, b"a2", 20, 30, 4, 3, cond_mod=2),
        delete(A, 50, 60, 5, 5, prev=kv(b"a2", 4, 2, 2)),
        put(C, b"c1", 61, None, None, 6),
        put(C, b"c-lost", 62, None, None, 7),
        put(B, b"b2", 80, 90, 8, 8, index=0),
        put(C, b"c2", 80, 90, 8, 8, index=1, prev=kv(b"c1", 6)),
    ]
    reads = [
        get(A, 11, 19, 3, kv(b"a1", 2), 10),
        Read(*PODS, 31, 40, 4, ((A, kv(b"a2", 4, 2, 2)), (B, kv(b"b1", 3))), 4, count=2),
        get(A, 61, 65, 5, None, 11),
        get(C, 70, 75, 6, kv(b"c1", 6), 12),
        Read(*PODS, 91, 99, 3, ((A, kv(b"a1", 2)), (B, kv(b"b1", 3))), 13, pinned=True),
    ]
    return writes, reads


def good_watch(start=1):
    events = [
        Response(2, (Event("PUT", A, kv(b"a1", 2)),)),
        Response(3, (Event("PUT", B, kv(b"b1", 3)),)),
        Response(3, progress=True),
        Response(4, (Event("PUT", A, kv(b"a2", 4, 2, 2)),)),
        Response(5, (Event("DELETE", A, KV(b"", 5, 0, 0)),)),
        Response(5, progress=True),
        Response(8, (Event("PUT", B, kv(b"b2", 8, 2, 3)),)),
    ]
    log = WatchLog("pods", *PODS, start)
    log.responses = [r for r in events if r.progress or r.events[0].kv.mod >= start]
    return log


def violations(writes, reads, watch=None, upto=8):
    report, chains = check_history(writes, reads)
    if watch is not None:
        check_watch(watch, chains, upto, report)
    return report.violations


def test_good_history_passes():
    writes, reads = good_history()
    report, chains = check_history(writes, reads)
    assert report.violations == []
    assert report.figures["unknown applied"] == 1 and report.figures["unknown not applied"] == 1
    assert chains[C].states[-1] == KV(b"c2", 8, 2, 6)
    check_watch(good_watch(), chains, 8, report)
    check_resumed(good_watch(), good_watch(start=4), 8, report)
    assert report.violations == []
    assert report.figures["events checked"] == 5


def test_stale_read_fails():
    writes, reads = good_history()
    reads.append(get(A, 31, 40, 3, kv(b"a1", 2), 20))  # after the CAS at 4 responded, sees 2
    found = violations(writes, reads)
    assert any(v.startswith("linearizability") for v in found), found


def test_read_not_matching_its_revision_fails():
    writes, reads = good_history()
    reads.append(get(A, 31, 40, 4, kv(b"a1", 2), 20))  # claims rev 4 but shows the state at 3
    assert any("at rev 4 it was" in v for v in violations(writes, reads))


def test_lost_write_fails():
    writes, reads = good_history()
    writes.append(put(B, b"b-lost", 40, 45, 7, 21))  # acknowledged at 7, never seen again
    reads.append(get(B, 46, 48, 7, kv(b"b1", 3), 22))
    found = violations(writes, reads, good_watch())
    assert any("key b'/registry/pods/tenant-b/b' is" in v for v in found), found
    assert any("missed put" in v for v in found), found


def test_value_never_written_fails():
    writes, reads = good_history()
    reads.append(get(B, 46, 48, 7, kv(b"b-ghost", 7, 2, 3), 22))
    assert violations(writes, reads)


def test_revision_order_across_shards_fails():
    writes, reads = good_history()
    d = b"/registry/configmaps/ns/d"             # on another shard than A
    writes.append(put(d, b"d0", 0, 12, 2, 30))   # concurrent with op 1: sharing rev 2 is fine
    assert violations(writes, reads) == []
    writes[-1] = put(d, b"d0", 11, 12, 2, 30)    # invoked after op 1 responded with rev 2
    assert any("revision order (write after write)" in v for v in violations(writes, reads))
    writes[-1] = put(d, b"d0", 41, 42, 4, 30)    # after the range (op 4) reported rev 4
    assert any("revision order (write after read)" in v for v in violations(writes, reads))
    del writes[-1]
    reads.append(get(d, 41, 42, 3, None, 31))    # a read of another shard may report its own,
    assert violations(writes, reads) == []       # lower closed revision (DESIGN §3.3)


def test_cross_shard_range_not_a_snapshot_fails():
    writes, reads = good_history()
    reads.append(Read(*PODS, 31, 40, 4, ((A, kv(b"a1", 2)), (B, kv(b"b1", 3))), 23))
    assert any("at rev 4 it was" in v for v in violations(writes, reads))


def test_cas_on_wrong_revision_fails():
    writes, reads = good_history()
    writes[2].cond_mod = 1
    assert any("succeeded on mod_revision == 1" in v for v in violations(writes, reads))


def test_failed_compare_that_held_fails():
    writes, reads = good_history()
    reads.append(get(A, 31, 40, 4, kv(b"a2", 4, 2, 2), 26, cond_failed=3))
    assert violations(writes, reads) == []
    reads[-1].cond_failed = 4
    assert any("compare mod_revision == 4 failed" in v for v in violations(writes, reads))


def test_unknown_delete_resolved_from_watch():
    writes, reads = good_history()
    writes.append(delete(B, 91, None, None, 24))
    reads.append(get(B, 200, 210, 9, None, 25))
    assert violations(writes, reads)  # nothing shows the delete applied: the read is wrong
    report, _ = check_history(writes, reads, [Event("DELETE", B, KV(b"", 9, 0, 0))])
    assert report.violations == []


def test_acknowledged_revision_less_deletes_claim_their_own_watched_delete():
    """Lease revokes (deletes without a revision): one with an unknown outcome that did not
    apply, then two acknowledged ones. Each watched delete belongs to the acknowledged revoke
    whose real-time window holds it; the unknown one must not take the first of them."""
    K = b"/registry/pods/tenant-a/leased"
    writes = [put(K, b"l1", 0, 10, 2, 1),
              delete(K, 20, None, None, 2),          # unknown outcome: did not apply
              delete(K, 30, 40, None, 3),            # acknowledged: the delete at 3
              put(K, b"l2", 50, 60, 4, 4),
              delete(K, 70, 80, None, 5)]            # acknowledged: the delete at 5
    reads = [get(K, 45, 46, 3, None, 6), get(K, 85, 86, 5, None, 7)]
    watched = [Event("PUT", K, kv(b"l1", 2)), Event("DELETE", K, KV(b"", 3, 0, 0)),
               Event("PUT", K, kv(b"l2", 4)), Event("DELETE", K, KV(b"", 5, 0, 0))]
    report, _ = check_history(writes, reads, watched)
    assert report.violations == [], report.summary()
    assert report.figures["unknown not applied"] == 1


@pytest.mark.parametrize("mutate, expect", [
    (lambda rs: rs.insert(2, rs[1]), "delivered twice"),
    (lambda rs: rs.__setitem__(slice(0, 2), [rs[1], rs[0]]), "must increase across responses"),
    (lambda rs: rs.pop(3), "missed put"),
    (lambda rs: rs.insert(1, Response(3, progress=True)), "after a progress notification at rev 3"),
    (lambda rs: rs.append(Response(7, (Event("PUT", C, kv(b"x", 7)),))), "never written"),
    (lambda rs: rs.__setitem__(6, Response(8, (Event("PUT", B, kv(b"b2", 8, 3, 3)),))), "the write made"),
    (lambda rs: rs.__setitem__(0, Response(1, rs[0].events)), "header revision 1"),
])
def test_bad_watch_fails(mutate, expect):
    writes, reads = good_history()
    watch = good_watch()
    mutate(watch.responses)
    found = violations(writes, reads, watch)
    assert any(expect in v for v in found), found


def test_watch_atomic_and_txn_order():
    writes, reads = good_history()
    pair = (Event("PUT", B, kv(b"b2", 8, 2, 3)), Event("PUT", C, kv(b"c2", 8, 2, 6), prev=kv(b"c1", 6)))
    log = WatchLog("all", b"/registry/", b"/registry0", 8)
    log.responses = [Response(8, pair)]
    assert violations(writes, reads, log) == []
    log.responses = [Response(8, pair[::-1])]
    assert any("out of the txn's order" in v for v in violations(writes, reads, log))
    log.responses = [Response(8, pair[:1]), Response(8, pair[1:])]
    assert any("not atomic" in v for v in violations(writes, reads, log))
    log.responses = [Response(8, (pair[0], Event("PUT", C, kv(b"c2", 8, 2, 6), prev=None)))]
    assert any("has prev_kv absent" in v for v in violations(writes, reads, log))


def test_resumed_watch_that_skips_fails():
    report, _ = check_history(*good_history())
    resumed = good_watch(start=4)
    del resumed.responses[1]  # the restarted watch lost rev 4
    check_resumed(good_watch(), resumed, 8, report)
    assert any("differs" in v for v in report.violations)
