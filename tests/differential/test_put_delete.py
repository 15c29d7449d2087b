"""KV.Put and KV.DeleteRange, differential: revisions and versions, prev_kv, leases,
ignore_value/ignore_lease, range and prefix deletes, no-op deletes and request errors."""
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

from harness.kvhelpers import grant, prefix_end, record_all, record_rev, revoke, seed

L1, L2, UNKNOWN = 7001, 7002, 7999


def test_put_version_progression(differential):
    """version, create_revision and mod_revision across updates, deletes and re-creates."""
    def body(c, record):
        record("put a new, prev_kv", c.put(b"a", b"1", prev_kv=True))
        record("get a", c.get(b"a"))
        record("put a again, prev_kv", c.put(b"a", b"2", prev_kv=True))
        record("put b", c.put(b"b", b"x"))
        record("put a same value", c.put(b"a", b"2", prev_kv=True))
        record("put a empty value", c.put(b"a", b"", prev_kv=True))
        record("get a", c.get(b"a"))
        record("put a binary value", c.put(b"a", b"\x00\xff\x00", prev_kv=True))
        record("delete a", c.delete(b"a", prev_kv=True))
        record("get a deleted", c.get(b"a"))
        record("put a after delete, prev_kv", c.put(b"a", b"3", prev_kv=True))
        record("get a recreated", c.get(b"a"))
        record("put a again", c.put(b"a", b"4", prev_kv=True))
        for rev in range(1, 12):
            record(f"a @{rev}", c.get(b"a", revision=rev))
        record_all(c, record, "all")
        record("put empty key", c.put(b"", b"x"))
        record("put empty key prev_kv", c.put(b"", b"x", prev_kv=True))
        record_rev(c, record, "rev after failed puts")
        big = bytes(range(256)) * 64
        record("put 16 KiB value", c.put(b"big", big, prev_kv=True))
        record("put 16 KiB value again", c.put(b"big", big[::-1], prev_kv=True))
        record("get big", c.get(b"big"))
        record("put 1 MiB value", c.put(b"big", b"x" * (1 << 20)))
        record("put 1.6 MB value: too large", c.put(b"big", b"y" * 1_600_000))
        record_rev(c, record, "rev after too large")
        record("put long key", c.put(b"k" * 1500, b"v", prev_kv=True))
        record("get long key", c.get(b"k" * 1500))
    differential(body)


def test_put_lease(differential):
    """Attaching, moving and dropping leases; unknown and revoked leases are refused."""
    def body(c, record):
        record("grant L1", grant(c, L1))
        record("grant L2", grant(c, L2, ttl=900))
        record("put with L1", c.put(b"a", b"1", lease=L1, prev_kv=True))
        record("put b with L1", c.put(b"b", b"1", lease=L1))
        record("get a", c.get(b"a"))
        record("move a to L2", c.put(b"a", b"2", lease=L2, prev_kv=True))
        record("put a without lease", c.put(b"a", b"3", prev_kv=True))
        record("get a no lease", c.get(b"a"))
        record("put a with L2", c.put(b"a", b"4", lease=L2))
        record("unknown lease", c.put(b"a", b"5", lease=UNKNOWN, prev_kv=True))
        record("unknown lease new key", c.put(b"z", b"5", lease=UNKNOWN))
        record("negative lease", c.put(b"z", b"5", lease=-3))
        record_rev(c, record, "rev after refused puts")
        record("get a unchanged", c.get(b"a"))
        record("get z absent", c.get(b"z"))
        record("lease ttl L1 keys", c.call(c.lease.LeaseTimeToLive,
                                                pb.LeaseTimeToLiveRequest(ID=L1, keys=True)),
               ignore=("TTL",))
        record("revoke L1", revoke(c, L1))
        record("b gone with L1", c.get(b"b"))
        record("b history", c.get(b"b", revision=4))
        record("put with revoked L1", c.put(b"b", b"2", lease=L1))
        record("revoke L2", revoke(c, L2))
        record_all(c, record, "all after revokes")
        record("ignore_lease after revoke", c.put(b"a", b"x", ignore_lease=True))
    differential(body)


def test_put_ignore_value_and_lease(differential):
    """ignore_value keeps the value, ignore_lease keeps the lease; both need an existing key and
    refuse an explicit value or lease."""
    def body(c, record):
        record("grant L1", grant(c, L1))
        record("grant L2", grant(c, L2))
        record("ignore_value missing key", c.put(b"a", ignore_value=True))
        record("ignore_lease missing key", c.put(b"a", ignore_lease=True))
        record("both missing key", c.put(b"a", ignore_value=True, ignore_lease=True))
        record("put a", c.put(b"a", b"orig", lease=L1))
        record("ignore_value with value", c.put(b"a", b"new", ignore_value=True))
        record("ignore_lease with lease", c.put(b"a", b"new", lease=L2, ignore_lease=True))
        record("ignore_lease with unknown lease", c.put(b"a", lease=UNKNOWN, ignore_lease=True))
        record_rev(c, record, "rev after refused")
        record("ignore_value", c.put(b"a", ignore_value=True, prev_kv=True))
        record("get a", c.get(b"a"))
        record("ignore_value, lease L2", c.put(b"a", ignore_value=True, lease=L2, prev_kv=True))
        record("ignore_lease, new value", c.put(b"a", b"v2", ignore_lease=True, prev_kv=True))
        record("get a keeps L2", c.get(b"a"))
        record("both ignores", c.put(b"a", ignore_value=True, ignore_lease=True, prev_kv=True))
        record("ignore_value drops lease", c.put(b"a", ignore_value=True, prev_kv=True))
        record("get a", c.get(b"a"))
        record("put empty value", c.put(b"e", b""))
        record("ignore_value keeps empty value", c.put(b"e", ignore_value=True, prev_kv=True))
        record("delete a", c.delete(b"a"))
        record("ignore_value after delete", c.put(b"a", ignore_value=True))
        record("ignore_lease after delete", c.put(b"a", b"x", ignore_lease=True))
        record("ignore_value empty key", c.put(b"", ignore_value=True))
        record_rev(c, record, "final rev")
        record_all(c, record, "all")
    differential(body)


KEYS = [b"a", b"a/1", b"a/2", b"a/3", b"a_", b"a%", b"ab", b"b", b"b\x00", b"c", b"d\xff",
        b"\xff"]


def test_delete_range_shapes(differential):
    """Single keys, [key, range_end), prefixes, "\\0" ends, all keys, with and without prev_kv."""
    def body(c, record):
        seed(c, record, [(k, b"v" + k) for k in KEYS])
        record("delete single a", c.delete(b"a", prev_kv=True))
        record("delete missing", c.delete(b"a"))
        record_rev(c, record, "rev after deleting nothing")
        record("delete missing prev_kv", c.delete(b"zz", prev_kv=True))
        record("delete prefix a/", c.delete(b"a/", range_end=prefix_end(b"a/"), prev_kv=True))
        record("delete prefix a_ (no LIKE)", c.delete(b"a_", range_end=prefix_end(b"a_")))
        record("get a%", c.get(b"a%"))
        record("delete [ab, b NUL)", c.delete(b"ab", range_end=b"b\x00", prev_kv=True))
        record("delete key > end", c.delete(b"d", range_end=b"a"))
        record("delete key == end", c.delete(b"c", range_end=b"c"))
        record_rev(c, record, "rev after empty ranges")
        record("delete >= d", c.delete(b"d", range_end=b"\0", prev_kv=True))
        record_all(c, record, "left")
        record("delete everything", c.delete(b"\0", range_end=b"\0", prev_kv=True))
        record("delete everything again", c.delete(b"\0", range_end=b"\0", prev_kv=True))
        record_rev(c, record, "rev after deleting nothing")
        record_all(c, record, "empty store")
        record("history @12", c.get(b"\0", range_end=b"\0", revision=12, keys_only=True))
        record("put a again", c.put(b"a", b"new", prev_kv=True))
        record("get a", c.get(b"a"))
        record("put NUL key", c.put(b"\0", b"nul"))
        record("delete [NUL, NUL NUL)", c.delete(b"\0", range_end=b"\0\0", prev_kv=True))
        record("put NUL key again", c.put(b"\0", b"nul"))
        record("delete NUL key", c.delete(b"\0", prev_kv=True))
        record("delete empty key", c.delete(b""))
        record("delete empty key with end", c.delete(b"", range_end=b"\0"))
        record("delete empty key prev_kv", c.delete(b"", prev_kv=True))
        record_rev(c, record, "final rev")
    differential(body, spans_shards=True)


def test_delete_then_recreate_history(differential):
    """A deleted key reads from history, recreates at version 1 and deletes count only live keys."""
    def body(c, record):
        seed(c, record, [(b"k1", b"1"), (b"k2", b"1"), (b"k1", b"2"), (b"k3", b"1")])
        record("delete k1..k3", c.delete(b"k1", range_end=b"k3", prev_kv=True))
        record("delete k1..k4 again", c.delete(b"k1", range_end=b"k4", prev_kv=True))
        record("delete k1..k4 nothing", c.delete(b"k1", range_end=b"k4"))
        record_rev(c, record, "rev after no-op")
        record("put k2", c.put(b"k2", b"2", prev_kv=True))
        record("delete k2", c.delete(b"k2"))
        record("put k2 again", c.put(b"k2", b"3"))
        for rev in range(1, 11):
            record(f"all @{rev}", c.get(b"k", range_end=b"l", revision=rev))
        record("count after", c.get(b"k", range_end=b"l", count_only=True))
    differential(body)
