"""KV.Txn, differential: every compare target x result (present, missing and ranged keys),
branches, reads of earlier writes, nested txns, revisions, the op limit, duplicate-key checks
and request errors."""
from itertools import product

from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

from harness.kvhelpers import (CREATE, EQUAL, GREATER, LEASE, LESS, MOD, NOT_EQUAL, RESULTS, TARGETS,
                       VALUE, VERSION, compact, compare, delete_op, grant, prefix_end, put_op,
                       range_op, record_all, record_rev, txn_op)

L1, UNKNOWN = 7001, 7999


def test_txn_compare_matrix(differential):
    """Each target x result against operands below, equal to and above the stored field, on a
    present key, an empty-valued key and a missing key."""
    def body(c, record):
        record("grant", grant(c, L1))
        record("put k", c.put(b"k", b"m"))            # 2
        record("put other", c.put(b"other", b"o"))    # 3
        record("put k again", c.put(b"k", b"m", lease=L1))  # 4
        record("put k third", c.put(b"k", b"m", lease=L1))  # 5: version 3, create 2, mod 5
        record("put e", c.put(b"e", b""))             # 6: empty value, no lease
        operands = {VERSION: (2, 3, 4), CREATE: (1, 2, 3), MOD: (4, 5, 6), VALUE: (b"l", b"m", b"n"),
                    LEASE: (L1 - 1, L1, L1 + 1)}
        for (target, ops), result in product(operands.items(), RESULTS):
            for operand in ops:
                label = f"k {TARGETS[target]} {RESULTS[result]} {operand!r}"
                record(label, c.txn([compare(b"k", target, result, operand)]))
        missing = {VERSION: (-1, 0, 1), CREATE: (0, 1), MOD: (0, 1), VALUE: (b"", b"x"),
                   LEASE: (0, L1)}
        for (target, ops), result in product(missing.items(), RESULTS):
            for operand in ops:
                label = f"missing {TARGETS[target]} {RESULTS[result]} {operand!r}"
                record(label, c.txn([compare(b"missing", target, result, operand)]))
        for result in RESULTS:
            for operand in (b"", b"\x00", b"a"):
                label = f"e value {RESULTS[result]} {operand!r}"
                record(label, c.txn([compare(b"e", VALUE, result, operand)]))
            record(f"e lease {RESULTS[result]} 0", c.txn([compare(b"e", LEASE, result, 0)]))
        for target in TARGETS:  # no operand set, or the operand of another target
            for key in (b"k", b"missing"):
                for result in (EQUAL, NOT_EQUAL):
                    bare = pb.Compare(key=key, target=target, result=result)
                    record(f"{key!r} {TARGETS[target]} {RESULTS[result]} no operand", c.txn([bare]))
            record(f"k {TARGETS[target]} == other operand",
                   c.txn([pb.Compare(key=b"k", target=target, result=EQUAL,
                                     **({"mod_revision": 5} if target != MOD else {"version": 3}))]))
        record("delete k", c.delete(b"k"))
        for target, operand in ((VERSION, 0), (CREATE, 0), (MOD, 0), (VALUE, b"m"), (LEASE, 0)):
            for result in RESULTS:
                label = f"deleted k {TARGETS[target]} {RESULTS[result]} {operand!r}"
                record(label, c.txn([compare(b"k", target, result, operand)]))
        record_rev(c, record, "compares never bump the revision")
    differential(body)


def test_txn_range_compares(differential):
    """Compares with range_end hold only if they hold for every key in the range."""
    def body(c, record):
        record("put r1", c.put(b"r1", b"a"))
        record("put r2", c.put(b"r2", b"b"))
        record("put r2 again", c.put(b"r2", b"b"))
        record("put r3", c.put(b"r3", b"c"))
        record("put s", c.put(b"s", b"z"))
        cases = [
            ("version > 0 [r1, r4)", b"r1", b"r4", VERSION, GREATER, 0),
            ("version == 1 [r1, r4)", b"r1", b"r4", VERSION, EQUAL, 1),
            ("version != 3 [r1, r4)", b"r1", b"r4", VERSION, NOT_EQUAL, 3),
            ("version < 2 [r1, r2)", b"r1", b"r2", VERSION, LESS, 2),
            ("value < d prefix r", b"r", prefix_end(b"r"), VALUE, LESS, b"d"),
            ("value < c prefix r", b"r", prefix_end(b"r"), VALUE, LESS, b"c"),
            ("value != x prefix r", b"r", prefix_end(b"r"), VALUE, NOT_EQUAL, b"x"),
            ("mod > 1 >= r2", b"r2", b"\0", MOD, GREATER, 1),
            ("mod < 6 >= r2", b"r2", b"\0", MOD, LESS, 6),
            ("create < 7 all", b"\0", b"\0", CREATE, LESS, 7),
            ("create == 2 all", b"\0", b"\0", CREATE, EQUAL, 2),
            ("lease == 0 all", b"\0", b"\0", LEASE, EQUAL, 0),
            ("version == 0 empty range", b"x", b"y", VERSION, EQUAL, 0),
            ("version > 0 empty range", b"x", b"y", VERSION, GREATER, 0),
            ("mod == 0 empty range", b"x", b"y", MOD, EQUAL, 0),
            ("value == '' empty range", b"x", b"y", VALUE, EQUAL, b""),
            ("value != a empty range", b"x", b"y", VALUE, NOT_EQUAL, b"a"),
            ("version > 0 key > end", b"s", b"r", VERSION, GREATER, 0),
            ("version == 0 key > end", b"s", b"r", VERSION, EQUAL, 0),
            ("version == 0 prefix r_ (no LIKE)", b"r_", prefix_end(b"r_"), VERSION, EQUAL, 0),
            ("version == 0 prefix r% (no LIKE)", b"r%", prefix_end(b"r%"), VERSION, EQUAL, 0),
        ]
        for label, key, end, target, result, operand in cases:
            record(label, c.txn([compare(key, target, result, operand, range_end=end)],
                                [range_op(key, range_end=end, keys_only=True)],
                                [range_op(key, range_end=end, count_only=True)]))
        record("all compares must hold", c.txn([compare(b"r1", VERSION, EQUAL, 1),
                                                compare(b"r2", VERSION, EQUAL, 2),
                                                compare(b"r3", VALUE, EQUAL, b"c")]))
        record("one compare fails", c.txn([compare(b"r1", VERSION, EQUAL, 1),
                                           compare(b"r2", VERSION, EQUAL, 1),
                                           compare(b"r3", VALUE, EQUAL, b"c")]))
        record("a range compare after a deletion", c.txn(
            [compare(b"r", VERSION, GREATER, 0, range_end=prefix_end(b"r"))],
            [delete_op(b"r2", prev_kv=True), put_op(b"done", b"1")]))
        record("and again", c.txn([compare(b"r", VERSION, GREATER, 1, range_end=b"s")]))
        record_all(c, record, "all")
    differential(body, spans_shards=True)


def test_txn_branches_and_revisions(differential):
    """Both branches run their ops in order at one revision; reads see earlier writes of the same
    txn; read-only and no-op txns keep the revision."""
    def body(c, record):
        record("grant", grant(c, L1))
        record("put x", c.put(b"x", b"1"))
        record("put z", c.put(b"z", b"1"))
        then = [put_op(b"y", b"1"), range_op(b"y"), put_op(b"x", b"2", prev_kv=True),
                range_op(b"x"), delete_op(b"nothing", prev_kv=True),
                delete_op(b"z", prev_kv=True), range_op(b"z"),
                put_op(b"z2", b"leased", lease=L1, prev_kv=True),
                range_op(b"\0", range_end=b"\0"), range_op(b"x", revision=2),
                range_op(b"\0", range_end=b"\0", count_only=True)]
        orelse = [put_op(b"failed", b"1", prev_kv=True), range_op(b"failed"),
                  put_op(b"x", ignore_value=True, prev_kv=True)]
        record("success branch", c.txn([compare(b"x", VALUE, EQUAL, b"1")], then, orelse))
        record("failure branch", c.txn([compare(b"x", VALUE, EQUAL, b"1")], then, orelse))
        record_all(c, record, "all after branches")
        reads = [range_op(b"x"), range_op(b"\0", range_end=b"\0", limit=1),
                 range_op(b"\0", range_end=b"\0", sort_order=pb.RangeRequest.DESCEND,
                          sort_target=pb.RangeRequest.MOD, keys_only=True),
                 range_op(b"a", range_end=b"z", min_mod_revision=4, count_only=True),
                 range_op(b"x", revision=3), range_op(b"x", revision=-1)]
        record("read-only txn", c.txn([], reads))
        record("read-only failure branch", c.txn([compare(b"x", VERSION, EQUAL, 9)], [], reads))
        record("empty txn", c.txn())
        record("compares only", c.txn([compare(b"x", VERSION, EQUAL, 2)]))
        record("deletes of nothing", c.txn([], [delete_op(b"nothing"),
                                                delete_op(b"q", range_end=b"r", prev_kv=True)]))
        record_rev(c, record, "revision after read-only and no-op txns")
        record("delete then read", c.txn([], [delete_op(b"x", range_end=b"z", prev_kv=True),
                                              range_op(b"\0", range_end=b"\0", keys_only=True),
                                              put_op(b"w", b"1"), range_op(b"w")]))
        record("ignore flags in txn", c.txn([], [put_op(b"z2", ignore_value=True, prev_kv=True),
                                                 put_op(b"w", b"2", ignore_lease=True),
                                                 range_op(b"w", range_end=b"\0")]))
        rev = record_rev(c, record, "rev before writes with reads at revisions")
        record("read at the pre-txn revision after a write", c.txn([], [
            put_op(b"w", b"3"), range_op(b"w", revision=rev), range_op(b"w")]))
        record("read at the txn's own revision", c.txn([], [put_op(b"w", b"4"),
                                                           range_op(b"w", revision=rev + 2)]))
        record("future revision in range op", c.txn([], [range_op(b"x", revision=100)]))
        record("future revision in untaken branch", c.txn([], [], [range_op(b"x", revision=100)]))
        record("unknown lease", c.txn([], [put_op(b"u", b"1", lease=UNKNOWN)]))
        record("unknown lease in untaken branch", c.txn([], [put_op(b"u", b"1")],
                                                        [put_op(b"v", b"1", lease=UNKNOWN)]))
        record("ignore_value on missing key", c.txn([], [put_op(b"nokey", ignore_value=True)]))
        record("ignore_lease on missing key", c.txn([], [put_op(b"nokey", ignore_lease=True)]))
        record_rev(c, record, "final revision")
        record_all(c, record, "final")
        for rev in range(1, 8):
            record(f"history @{rev}", c.get(b"\0", range_end=b"\0", revision=rev))
    differential(body, spans_shards=True)


def test_txn_nested(differential):
    """request_txn ops: compares see the outer txn's earlier writes, one revision for all."""
    def body(c, record):
        record("put a", c.put(b"a", b"0"))
        inner = txn_op([compare(b"a", VALUE, EQUAL, b"1")],
                       [put_op(b"b", b"then"), range_op(b"a", range_end=b"z")],
                       [put_op(b"b", b"else"), range_op(b"a", range_end=b"z")])
        record("outer write seen by inner", c.txn([], [put_op(b"a", b"1"), inner, range_op(b"b")]))
        record("inner failure branch", c.txn([], [inner]))
        record("nested in failure", c.txn([compare(b"a", VERSION, EQUAL, 100)],
                                          [put_op(b"never", b"1")], [inner, put_op(b"c", b"1")]))
        deep = txn_op([], [txn_op([], [txn_op([compare(b"c", VERSION, GREATER, 0)],
                                              [put_op(b"d", b"deep", prev_kv=True)],
                                              [put_op(b"d", b"shallow")])])])
        record("three levels", c.txn([], [deep, range_op(b"d")]))
        record("nested read-only", c.txn([], [txn_op([], [range_op(b"a")]), range_op(b"b")]))
        record("nested empty", c.txn([], [txn_op()]))
        record_rev(c, record, "rev after read-only nested")
        record("nested delete then outer read", c.txn([], [
            txn_op([], [delete_op(b"c", prev_kv=True)]), range_op(b"c"),
            txn_op([compare(b"c", VERSION, EQUAL, 0)], [put_op(b"e", b"c gone")],
                   [put_op(b"e", b"c there")])]))
        record("nested errors: unknown lease", c.txn([], [txn_op([], [put_op(b"q", lease=UNKNOWN)])]))
        record("nested errors: future rev", c.txn([], [txn_op([], [range_op(b"q", revision=99)])]))
        record_rev(c, record, "final rev")
        record_all(c, record, "all")
    differential(body)


def test_txn_op_limit(differential):
    """At most 128 ops per compare/success/failure list (nested ops included); 128 is fine."""
    def body(c, record):
        puts = lambda n, p=b"p": [put_op(p + b"%03d" % i, b"v") for i in range(n)]  # noqa: E731
        reads = lambda n: [range_op(b"r%03d" % i) for i in range(n)]  # noqa: E731
        cmps = lambda n: [compare(b"c%03d" % i, VERSION, EQUAL, 0) for i in range(n)]  # noqa: E731
        record("128 puts", c.txn([], puts(128)))
        record("129 puts", c.txn([], puts(129, b"q")))
        record("129 reads", c.txn([], reads(129)))
        record("129 failure ops", c.txn([], [], reads(129)))
        record("129 compares", c.txn(cmps(129)))
        record("128 everywhere", c.txn(cmps(128), reads(128), puts(128, b"f")))
        record("126 + nested 1", c.txn([], puts(126, b"l") + [txn_op([], puts(1, b"m"))]))
        record("126 + nested 2", c.txn([], puts(126, b"l") + [txn_op([], puts(2, b"m"))]))
        record("127 + nested 1", c.txn([], puts(127, b"n") + [txn_op([], puts(1, b"m"))]))
        record("127 + nested 2", c.txn([], puts(127, b"o") + [txn_op([], puts(2, b"m"))]))
        record("nested 127", c.txn([], [txn_op([], puts(127, b"s"))]))
        record("nested 128", c.txn([], [txn_op([], puts(128, b"s"))]))
        record("nested 127 compares", c.txn([], [txn_op(cmps(127))]))
        record("nested 128 compares", c.txn([], [txn_op(cmps(128))]))
        record("nested 127 in failure", c.txn(cmps(1), [], [txn_op([], [], reads(127))]))
        record("2 levels, 126 innermost", c.txn([], [txn_op([], [txn_op([], reads(126))])]))
        record("2 levels, 127 innermost", c.txn([], [txn_op([], [txn_op([], reads(127))])]))
        record("nested 129", c.txn([], [txn_op([], puts(129, b"t"))]))
        record("nested 129 compares", c.txn([], [txn_op(cmps(129))]))
        record("nested 64 + 64 siblings", c.txn([], [txn_op([], puts(64, b"u")),
                                                     txn_op([], puts(64, b"w"))]))
        record_rev(c, record, "rev")
        record("count", c.get(b"\0", range_end=b"\0", count_only=True))
    differential(body)


def test_txn_duplicate_keys(differential):
    """A key may be written once per txn path: puts vs puts and puts vs delete ranges, nested
    txns included; reads and the branch not on the same path do not count."""
    def body(c, record):
        seed_ops = [put_op(k, b"0") for k in (b"a", b"b", b"c", b"k")]
        record("seed", c.txn([], seed_ops))
        cases = {
            "put k twice": [put_op(b"k", b"1"), put_op(b"k", b"2")],
            "put k then delete k": [put_op(b"k", b"1"), delete_op(b"k")],
            "delete k then put k": [delete_op(b"k"), put_op(b"k", b"1")],
            "put inside delete range": [delete_op(b"a", range_end=b"c"), put_op(b"b", b"1")],
            "put at delete range end": [delete_op(b"a", range_end=b"c"), put_op(b"c", b"1")],
            "put inside >= range": [delete_op(b"b", range_end=b"\0"), put_op(b"k", b"1")],
            "put inside all keys": [put_op(b"a", b"1"), delete_op(b"\0", range_end=b"\0")],
            "overlapping deletes": [delete_op(b"a", range_end=b"c"), delete_op(b"b", range_end=b"d")],
            "same delete twice": [delete_op(b"k"), delete_op(b"k")],
            "read then put": [range_op(b"k"), put_op(b"k", b"1"), range_op(b"k")],
            "outer put, nested put": [put_op(b"k", b"1"), txn_op([], [put_op(b"k", b"2")])],
            "nested put, outer put": [txn_op([], [], [put_op(b"k", b"2")]), put_op(b"k", b"1")],
            "nested then and else": [txn_op([compare(b"k", VERSION, GREATER, 0)],
                                            [put_op(b"k", b"then")], [put_op(b"k", b"else")])],
            "outer delete, nested put": [delete_op(b"a", range_end=b"z"),
                                         txn_op([], [put_op(b"k", b"1")])],
            "nested delete, outer put": [txn_op([], [delete_op(b"k")]), put_op(b"k", b"1")],
            "sibling nested puts": [txn_op([], [put_op(b"k", b"1")]),
                                    txn_op([], [put_op(b"k", b"2")])],
            "sibling nested deletes": [txn_op([], [delete_op(b"k")]), txn_op([], [delete_op(b"k")])],
            "nested then put, sibling else put": [txn_op([], [put_op(b"k", b"1")]),
                                                  txn_op([], [], [put_op(b"k", b"2")])],
            "nested twice in one branch": [txn_op([], [put_op(b"k", b"1"), put_op(b"k", b"2")])],
            "nested inside delete range": [txn_op([], [delete_op(b"a", range_end=b"c")]),
                                           txn_op([], [put_op(b"b", b"1")])],
        }
        never = [compare(b"never", VERSION, GREATER, 0)]  # always false: runs the failure ops
        for label, ops in cases.items():
            record(label, c.txn([], ops))
            record(label + " (in failure)", c.txn(never, [], ops))
            record_all(c, record, label + ": keys", keys_only=True)
        record("k in success and failure", c.txn([compare(b"k", VERSION, GREATER, 0)],
                                                 [put_op(b"k", b"s")], [put_op(b"k", b"f")]))
        record("delete in success, put in failure", c.txn(
            [], [delete_op(b"a", range_end=b"z")], [put_op(b"k", b"f")]))
        record_rev(c, record, "rev")
        record_all(c, record, "all")
    differential(body, spans_shards=True)


def test_txn_request_errors(differential):
    """Empty keys anywhere in a txn, invalid put flags, and ops on compacted revisions."""
    def body(c, record):
        record("put k", c.put(b"k", b"1"))
        record("put k again", c.put(b"k", b"2"))
        record("empty key in compare", c.txn([compare(b"", VERSION, EQUAL, 0)]))
        record("empty key with range_end in compare",
               c.txn([compare(b"", VERSION, GREATER, 0, range_end=b"\0")]))
        record("empty key in put", c.txn([], [put_op(b"", b"1")]))
        record("empty key in delete", c.txn([], [delete_op(b"", range_end=b"\0")]))
        record("empty key in range", c.txn([], [range_op(b"")]))
        record("empty key in failure", c.txn([], [put_op(b"x", b"1")], [put_op(b"", b"1")]))
        record("empty key nested", c.txn([], [txn_op([], [range_op(b"")])]))
        record("empty key nested compare", c.txn([], [txn_op([compare(b"", VALUE, EQUAL, b"")])]))
        record("value with ignore_value", c.txn([], [put_op(b"k", b"v", ignore_value=True)]))
        record("lease with ignore_lease", c.txn([], [put_op(b"k", lease=5, ignore_lease=True)]))
        record("nested ignore_value", c.txn([], [txn_op([], [], [put_op(b"k", b"v",
                                                                        ignore_value=True)])]))
        record_rev(c, record, "rev after refused txns")
        record("compact 2", compact(c, 2))
        record("compacted range op", c.txn([], [range_op(b"k", revision=1)]))
        record("compacted range op, untaken", c.txn([], [], [range_op(b"k", revision=1)]))
        record("range op at compact rev", c.txn([], [range_op(b"k", revision=2)]))
        record("nested compacted range op", c.txn([], [txn_op([], [range_op(b"k", revision=1)])]))
        record("compacted read with a write", c.txn([], [put_op(b"k", b"3"),
                                                         range_op(b"k", revision=1)]))
        record_rev(c, record, "final rev")
        record("get k", c.get(b"k"))
    differential(body)
