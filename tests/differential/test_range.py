"""KV.Range, differential: key selection, binary keys, limit/more/count, revisions, sorting,
keys_only/count_only, revision filters, serializable reads and request errors."""
from itertools import product

from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

from harness.kvhelpers import (compact, prefix_end, put_op, random_history, record_all, record_rev,
                       seed)

R = pb.RangeRequest
ORDERS = {"none": R.NONE, "asc": R.ASCEND, "desc": R.DESCEND}
SORT_TARGETS = {"key": R.KEY, "version": R.VERSION, "create": R.CREATE, "mod": R.MOD,
                "value": R.VALUE}


def test_range_key_selection(differential):
    """Single keys, [key, range_end), prefixes, "\\0" ends, and empty or inverted intervals."""
    def body(c, record):
        seed(c, record, [(k, b"v-" + k) for k in
                         (b"a", b"ab", b"abc", b"abd", b"ac", b"b", b"c", b"c\0", b"d")])
        for label, key, end in [
            ("single", b"ab", b""), ("single missing", b"aa", b""),
            ("single c", b"c", b""), ("single c NUL", b"c\0", b""),
            ("[a, c)", b"a", b"c"), ("[a, b)", b"a", b"b"), ("[ab, abd)", b"ab", b"abd"),
            ("[b, c NUL)", b"b", b"c\0"), ("[a, a NUL) = a", b"a", b"a\0"),
            ("prefix ab", b"ab", prefix_end(b"ab")), ("prefix a", b"a", prefix_end(b"a")),
            ("prefix c", b"c", prefix_end(b"c")), ("prefix z", b"z", prefix_end(b"z")),
            (">= b", b"b", b"\0"), (">= c NUL", b"c\0", b"\0"), (">= e", b"e", b"\0"),
            ("all", b"\0", b"\0"), ("single NUL key", b"\0", b""),
            ("[NUL, b)", b"\0", b"b"),
            ("key == end", b"b", b"b"), ("key > end", b"c", b"a"), ("key > end NUL", b"d", b"c\0"),
        ]:
            record(label, c.get(key, range_end=end))
            record(label + " count_only", c.get(key, range_end=end, count_only=True))
        record("empty key", c.get(b""))
        record("empty key with end", c.get(b"", range_end=b"z"))
        record("empty key with NUL end", c.get(b"", range_end=b"\0"))
        record("empty key count_only", c.get(b"", count_only=True))
    differential(body)


BINARY_KEYS = [b"\x00", b"\x00\x01", b"\x01", b"%", b"%a", b"_", b"_a", b"\\", b"\\a",
               b"a", b"a%", b"a%b", b"a_", b"a_b", b"axb", b"a\\b", b"a\\\\b", b"a\x00b",
               b"a\xffb", b"\xc3\x28", b"\xe2\x28\xa1", b"\x7f", b"\x80", b"\xfe\xff", b"\xff",
               b"\xff\x00", b"\xff\xff", b"\xff\xff\xff"]


def test_range_binary_keys(differential):
    """Keys compare bytewise: NUL, 0xff, invalid UTF-8 and SQL LIKE metacharacters are plain bytes."""
    def body(c, record):
        for i, key in enumerate(BINARY_KEYS):
            record(f"put {key!r}", c.put(key, bytes([i, 0, 0xFF]) + key))
        record_all(c, record, "all")
        record_all(c, record, "all keys_only", keys_only=True)
        for key in BINARY_KEYS:
            record(f"get {key!r}", c.get(key))
        for p in (b"%", b"_", b"\\", b"a", b"a%", b"a_", b"a\\", b"a\x00", b"\x00", b"\xff",
                  b"\xff\xff", b"\xfe", b"\xc3", b"\x7f"):
            record(f"prefix {p!r}", c.get(p, range_end=prefix_end(p)))
            record(f"prefix {p!r} count_only", c.get(p, range_end=prefix_end(p), count_only=True))
        for key, end in [(b"\x00", b"\x01"), (b"\x00", b"\x00\x01"), (b"\x7f", b"\x81"),
                         (b"\xfe", b"\xff"), (b"\xff", b"\0"), (b"\xff\x00", b"\xff\xff"),
                         (b"a\x00", b"a\x01"), (b"a", b"a\xff"), (b"_", b"a"), (b"%", b"_")]:
            record(f"[{key!r}, {end!r})", c.get(key, range_end=end))
        record("sorted by value desc", c.get(b"\0", range_end=b"\0", sort_order=R.DESCEND,
                                             sort_target=R.VALUE, limit=5))
        record("sorted by key desc", c.get(b"\0", range_end=b"\0", sort_order=R.DESCEND, limit=5))
        record("binary value", c.put(b"bin", bytes(range(256))))
        record("get binary value", c.get(b"bin"))
    differential(body)


def test_range_limit_more_count(differential):
    """limit cuts kvs and sets more; count is the whole range, whatever the limit."""
    def body(c, record):
        seed(c, record, [(b"k%d" % i, b"v%d" % i) for i in range(10)])
        record("delete k3", c.delete(b"k3"))
        record("delete k7", c.delete(b"k7"))
        for limit in (0, 1, 2, 7, 8, 9, 100, -1):
            record(f"limit {limit}", c.get(b"k", range_end=b"l", limit=limit))
            record(f"limit {limit} keys_only", c.get(b"k", range_end=b"l", limit=limit,
                                                     keys_only=True))
            record(f"limit {limit} count_only", c.get(b"k", range_end=b"l", limit=limit,
                                                      count_only=True))
        record("limit on sub range", c.get(b"k2", range_end=b"k6", limit=2))
        record("limit on single key", c.get(b"k2", limit=1))
        record("limit on missing key", c.get(b"k3", limit=1))
        record("limit >= end", c.get(b"k\xff", range_end=b"\0", limit=1))
        record("limit past revision", c.get(b"k", range_end=b"l", limit=3, revision=9))
        record("count_only keys_only", c.get(b"k", range_end=b"l", count_only=True, keys_only=True))
        record("count_only past", c.get(b"k", range_end=b"l", count_only=True, revision=5))
        record("limit 2^62", c.get(b"k", range_end=b"l", limit=2**62))
        record("limit -5 sorted", c.get(b"k", range_end=b"l", limit=-5, sort_order=R.DESCEND))
        record("max_mod 2^62", c.get(b"k", range_end=b"l", max_mod_revision=2**62, limit=2))
    differential(body)


def test_range_revisions(differential):
    """Reads at past, current, zero, negative, future and compacted revisions."""
    def body(c, record):
        record("put a1", c.put(b"a", b"1"))        # 2
        record("put b1", c.put(b"b", b"1"))        # 3
        record("put a2", c.put(b"a", b"2"))        # 4
        record("delete a", c.delete(b"a"))          # 5
        record("put a3", c.put(b"a", b"3"))        # 6
        record("delete b", c.delete(b"b"))          # 7
        record("put c1", c.put(b"c", b"1"))        # 8
        for rev in (-2**62, -5, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1000, 2**62):
            record(f"all @{rev}", c.get(b"\0", range_end=b"\0", revision=rev))
            record(f"a @{rev}", c.get(b"a", revision=rev))
            record(f"count @{rev}", c.get(b"a", range_end=b"z", revision=rev, count_only=True))
        record("compact 4", compact(c, 4))
        for rev in (1, 3, 4, 5, 8, 0, 9):
            record(f"after compact all @{rev}", c.get(b"\0", range_end=b"\0", revision=rev))
            record(f"after compact a @{rev}", c.get(b"a", revision=rev, keys_only=True))
        record("serializable compacted", c.get(b"a", revision=3, serializable=True))
        record("serializable future", c.get(b"a", revision=9, serializable=True))
        record("count_only compacted", c.get(b"a", revision=2, count_only=True))
        record("empty key compacted", c.get(b"", revision=2))
    differential(body)


def _sort_fixture(c, record):
    """Keys whose key, version, create, mod and value orders all differ (versions tie twice)."""
    record("put k3", c.put(b"k3", b"m"))     # 2
    record("put k1", c.put(b"k1", b"z"))     # 3
    record("put k4", c.put(b"k4", b"a"))     # 4
    record("put k2", c.put(b"k2", b"q"))     # 5
    record("put k1 again", c.put(b"k1", b"b"))   # 6: k1 v2
    record("put k4 again", c.put(b"k4", b"y"))   # 7: k4 v2
    record("put k4 third", c.put(b"k4", b"c"))   # 8: k4 v3
    record("put k5", c.put(b"k5", b"k"))     # 9
    record("put k3 again", c.put(b"k3", b"d"))   # 10: k3 v2


def test_range_sort_all_combinations(differential):
    """Every sort_order x sort_target, alone and with limit, keys_only, count_only and a past rev."""
    def body(c, record):
        _sort_fixture(c, record)
        for (on, order), (tn, target) in product(ORDERS.items(), SORT_TARGETS.items()):
            kw = {"sort_order": order, "sort_target": target}
            record(f"{on} {tn}", c.get(b"k", range_end=b"l", **kw))
            record(f"{on} {tn} limit 2", c.get(b"k", range_end=b"l", limit=2, **kw))
            record(f"{on} {tn} keys_only", c.get(b"k", range_end=b"l", keys_only=True, **kw))
            record(f"{on} {tn} count_only", c.get(b"k", range_end=b"l", count_only=True, limit=1,
                                                   **kw))
            record(f"{on} {tn} @7 limit 3", c.get(b"k", range_end=b"l", revision=7, limit=3, **kw))
            record(f"{on} {tn} single", c.get(b"k4", **kw))
        # Equal sort fields (one txn creates three keys): ties keep key order in both directions.
        record("txn creates t1..t3", c.txn([], [put_op(b"t3", b"x"), put_op(b"t1", b"x"),
                                                put_op(b"t2", b"y")]))
        record("put t0", c.put(b"t0", b"x"))
        record("update t2", c.put(b"t2", b"x"))
        for (on, order), (tn, target) in product(ORDERS.items(), SORT_TARGETS.items()):
            record(f"ties {on} {tn}", c.get(b"t", range_end=b"u", sort_order=order,
                                            sort_target=target, keys_only=True))
    differential(body)


def test_range_revision_filters(differential):
    """min/max mod/create revision filters, combined with each other, limit, sort and count."""
    def body(c, record):
        _sort_fixture(c, record)
        cases = {
            "min_mod 7": {"min_mod_revision": 7}, "max_mod 7": {"max_mod_revision": 7},
            "min_create 4": {"min_create_revision": 4}, "max_create 4": {"max_create_revision": 4},
            "mod [6, 9]": {"min_mod_revision": 6, "max_mod_revision": 9},
            "create [3, 5]": {"min_create_revision": 3, "max_create_revision": 5},
            "mod >= 8 create <= 3": {"min_mod_revision": 8, "max_create_revision": 3},
            "none match": {"min_mod_revision": 11}, "min > max": {"min_mod_revision": 9,
                                                                  "max_mod_revision": 3},
            "min_create 0 max_mod 100": {"min_create_revision": 0, "max_mod_revision": 100},
            "negative": {"min_mod_revision": -1, "max_create_revision": -1},
        }
        for name, kw in cases.items():
            record(name, c.get(b"k", range_end=b"l", **kw))
            for limit in (1, 2, 3):
                record(f"{name} limit {limit}", c.get(b"k", range_end=b"l", limit=limit, **kw))
            record(f"{name} count_only", c.get(b"k", range_end=b"l", count_only=True, **kw))
            record(f"{name} keys_only limit 1", c.get(b"k", range_end=b"l", keys_only=True,
                                                      limit=1, **kw))
            record(f"{name} desc mod limit 2", c.get(b"k", range_end=b"l", limit=2,
                                                      sort_order=R.DESCEND, sort_target=R.MOD, **kw))
            record(f"{name} @8", c.get(b"k", range_end=b"l", revision=8, **kw))
            record(f"{name} @8 limit 1", c.get(b"k", range_end=b"l", revision=8, limit=1, **kw))
            record(f"{name} single k4", c.get(b"k4", **kw))
    differential(body)


def test_range_serializable(differential):
    """serializable reads answer like linearizable ones on a single member."""
    def body(c, record):
        seed(c, record, [(b"s1", b"1"), (b"s2", b"2"), (b"s1", b"3")])
        record("delete s2", c.delete(b"s2"))
        for rev in (0, 2, 3, 4, 5, 6):
            for ser in (False, True):
                record(f"@{rev} serializable={ser}", c.get(b"s", range_end=b"t", revision=rev,
                                                           serializable=ser))
        record("serializable limit", c.get(b"s", range_end=b"t", limit=1, serializable=True,
                                           revision=3))
        record("serializable count_only", c.get(b"s", range_end=b"t", count_only=True,
                                                serializable=True))
        record("serializable sorted", c.get(b"s", range_end=b"t", serializable=True, revision=4,
                                            sort_order=R.DESCEND, sort_target=R.VALUE))
        record("serializable empty key", c.get(b"", serializable=True))
    differential(body)


def test_range_every_revision_of_a_random_history(differential):
    """MVCC reads: after a seeded history of puts, deletes and txns, every revision is read in
    full and through a limited sub-range."""
    def body(c, record):
        random_history(c, record, seed=7, n_ops=120)
        head = record_rev(c, record, "head")
        for rev in range(1, head + 1):
            record(f"all @{rev}", c.get(b"\0", range_end=b"\0", revision=rev))
            record(f"h/b.. limit 2 @{rev}", c.get(b"h/b", range_end=b"h/d", revision=rev, limit=2))
            record(f"prefix h/a count @{rev}", c.get(b"h/a", range_end=prefix_end(b"h/a"),
                                                    revision=rev, count_only=True))
    differential(body)


def test_range_large_result(differential):
    """1,280 keys written by ten 128-op txns: limits around common page sizes, counts, prefixes."""
    def body(c, record):
        for t in range(10):
            record(f"txn {t}", c.txn([], [put_op(b"big/%05d" % (t * 128 + i), b"v")
                                          for i in range(128)]))
        record("delete some", c.delete(b"big/00500", range_end=b"big/00510"))
        for limit in (0, 255, 256, 257, 499, 500, 501, 999, 1000, 1001, 1024, 1269, 1270, 1271):
            record(f"limit {limit}", c.get(b"big/", range_end=prefix_end(b"big/"), limit=limit,
                                           keys_only=True))
        record("count", c.get(b"big/", range_end=prefix_end(b"big/"), count_only=True))
        record("count @5", c.get(b"big/", range_end=prefix_end(b"big/"), count_only=True, revision=5))
        record("desc limit 3", c.get(b"big/", range_end=prefix_end(b"big/"), limit=3,
                                     sort_order=R.DESCEND))
        record("from the middle", c.get(b"big/00505", range_end=b"\0", limit=10, keys_only=True))
        record("delete all", c.delete(b"big/", range_end=prefix_end(b"big/")))
        record("count after", c.get(b"big/", range_end=prefix_end(b"big/"), count_only=True))
    differential(body)
