"""Hypothesis strategies for harness.fuzz.ops sequences.

Keys are short words over a small alphabet that collides often and holds the awkward bytes
(NUL, 0xff, lone UTF-8 lead and continuation bytes, SQL LIKE metacharacters, backslash), plus
some long keys and the empty key (an error wherever a key is required). Ranges are single keys,
[key, end), prefixes and "\\0" ends (including inverted and empty intervals). Revisions are
mostly relative to the current one (Back), so they land on the interesting values: just
compacted, current, one in the future.
"""
from __future__ import annotations

from hypothesis import strategies as st

from harness.fuzz.ops import (ALL_LEASES, Back, Cmp, Compact, Delete, Get, Grant, Put, Revoke, Txn,
                      Watch)
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from harness.kvhelpers import prefix_end

PIECES = [b"a", b"b", b"\x00", b"\xff", b"%", b"_", b"\\", b"\xc3", b"\x80", b"/"]
R = pb.RangeRequest


def often(default, *others):
    """`default` about half of the time, else one of `others`."""
    return st.sampled_from([default] * max(len(others), 1) + list(others))


def rarely():
    return st.sampled_from([False] * 5 + [True])


# A few keys that recur (so versions grow and compares match) ...
COMMON = [b"a", b"b", b"ab", b"a\x00", b"a\xff", b"\x00", b"\xff", b"a%", b"a_", b"a\\", b"\xc3",
          b"\xc3\x80", b"a/b"]
common_keys = st.sampled_from(COMMON)
# ... and any short word over the alphabet, and long keys.
short_keys = st.lists(st.sampled_from(PIECES), min_size=1, max_size=3).map(b"".join)
long_keys = st.builds(lambda p, tail, n: p * n + tail, st.sampled_from(PIECES), short_keys,
                      st.integers(20, 300))
nonempty_keys = st.one_of(common_keys, common_keys, common_keys, short_keys, short_keys, long_keys)
keys = st.one_of(nonempty_keys, nonempty_keys, nonempty_keys, nonempty_keys, nonempty_keys,
                 st.just(b""))
values = st.one_of(st.sampled_from([b"", b"a", b"b", b"v1", b"\xff\x00"]), st.binary(max_size=12))
leases = often(0, *ALL_LEASES)
# A revision: 0 (the default), a small absolute one, or relative to the current one.
revs = st.one_of(st.just(0), st.just(0), st.integers(-1, 4), st.builds(Back, st.integers(-2, 8)),
                 st.builds(Back, st.integers(0, 3)))


@st.composite
def key_ranges(draw, key_strategy=keys, kinds=("single", "single", "range", "prefix", "from", "all")):
    key = draw(key_strategy)
    kind = draw(st.sampled_from(kinds))
    if kind == "single":
        return key, b""
    if kind == "from":
        return key, b"\0"
    if kind == "prefix":
        return key, prefix_end(key)
    if kind == "all":
        return draw(st.sampled_from([b"\0", b""])), b"\0"
    return key, draw(nonempty_keys)


@st.composite
def puts(draw):
    ignore_value, ignore_lease = draw(rarely()), draw(rarely())
    value = draw(often(b"", b"x") if ignore_value else values)
    lease = draw(often(0, 101) if ignore_lease else leases)
    return Put(draw(keys), value, lease, draw(st.booleans()), ignore_value, ignore_lease)


@st.composite
def deletes(draw):
    key, end = draw(key_ranges())
    return Delete(key, end, draw(st.booleans()))


@st.composite
def gets(draw):
    key, end = draw(key_ranges())
    opt = lambda default, *others: draw(often(default, *others))  # noqa: E731
    small_rev = lambda: draw(st.one_of(st.just(0), st.just(0), st.just(0), revs))  # noqa: E731
    return Get(key, end, limit=opt(0, 1, 2, 3, 5, -1),
               rev=draw(st.one_of(st.just(0), revs)),
               order=opt(R.NONE, R.ASCEND, R.DESCEND),
               target=opt(R.KEY, R.VERSION, R.CREATE, R.MOD, R.VALUE),
               keys_only=draw(rarely()), count_only=draw(rarely()),
               min_mod=small_rev(), max_mod=small_rev(), min_create=small_rev(),
               max_create=small_rev())


@st.composite
def compares(draw):
    key, end = draw(key_ranges(nonempty_keys))
    if draw(st.sampled_from([True, True, False])):
        end = b""
    target = draw(st.sampled_from([pb.Compare.VERSION, pb.Compare.CREATE, pb.Compare.MOD,
                                   pb.Compare.VALUE, pb.Compare.LEASE]))
    result = draw(st.sampled_from([pb.Compare.EQUAL, pb.Compare.GREATER, pb.Compare.LESS,
                                   pb.Compare.NOT_EQUAL]))
    operand = draw({pb.Compare.VERSION: st.integers(0, 3), pb.Compare.CREATE: revs,
                    pb.Compare.MOD: revs, pb.Compare.VALUE: values,
                    pb.Compare.LEASE: leases}[target])
    return Cmp(key, target, result, operand, end)


def txns(depth: int = 0):
    inner = [puts(), puts(), deletes(), gets()]
    if depth < 2:
        inner.append(st.deferred(lambda: txns(depth + 1)))
    ops = st.lists(st.one_of(*inner), max_size=3).map(tuple)
    return st.builds(Txn, st.lists(compares(), max_size=3).map(tuple), ops, ops)


def bulk_puts():
    """A Txn writing 5 to 20 distinct keys at one revision: wide ranges, ties to sort."""
    return st.builds(lambda kvs: Txn(success=tuple(Put(k, v) for k, v in kvs)),
                     st.lists(st.tuples(nonempty_keys, values), min_size=5, max_size=20,
                              unique_by=lambda kv: kv[0]))


@st.composite
def watches(draw):
    key, end = draw(key_ranges(kinds=("single", "range", "prefix", "prefix", "from", "all")))
    start = draw(st.one_of(st.just(0), st.just(-1), st.integers(-3, 3),
                           st.builds(Back, st.integers(-2, 12))))
    return Watch(key, end, start, draw(st.booleans()), draw(rarely()), draw(rarely()))


operations = st.one_of(
    puts(), puts(), puts(), puts(), puts(), puts(),
    deletes(), deletes(),
    txns(), txns(), txns(), bulk_puts(),
    gets(), gets(), gets(),
    st.builds(Compact, st.integers(-1, 10), st.booleans()),
    st.builds(Grant, st.sampled_from(ALL_LEASES)),
    st.builds(Revoke, st.sampled_from(ALL_LEASES)),
    watches(), watches(), watches(),
)


def sequences(max_size: int = 40):
    """Lengths uniform in 1..max_size (plain st.lists would mostly draw short ones)."""
    return st.integers(1, max_size).flatmap(
        lambda n: st.lists(operations, min_size=n, max_size=n))
