"""A randomized concurrent etcd workload across three shards, recorded for harness.histcheck.

Eight clients run puts, deletes, compare-and-swap txns on mod_revision (kube-apiserver's update),
same-shard two-key txns, refused cross-shard txns, single-key reads, cross-shard ranges and
paginated pinned lists; one more client attaches keys on all three shards to a lease and revokes
it. Every operation is recorded with its invocation and response time. Watches run meanwhile: one
cluster-wide from revision 1, one per shard, one opened mid-way from an older revision, two on a
stream with progress notifications and progress requests, and one restarted every second from the
last revision it saw + 1; after the load, watches resumed from cut points of the cluster-wide one.
Then: per-key linearizability, revision order across shards, consistent snapshots, and ordered /
unique / atomic / reliable / resumable / bookmarkable for every watch (run_history).

Keys follow the topology of harness.servers.THREE_SHARDS / HUB_THREE_SHARDS: main is the default
shard, tenants the pods of tenant-a, events /registry/events/. HISTCHECK_DUMP=FILE pickles the
history for a closer look.
"""
from __future__ import annotations

import itertools
import os
import pickle
import random
import threading
import time
from collections import Counter

from .client import Client, Failure
from .histcheck import KV, NOINFO, Event, Read, Response, WatchLog, Write, check_history, check_resumed, check_watch
from .stream import NoResponse, WatchStream
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

LOAD_SECONDS = 7.0
CLIENTS = 8
# keys per shard of harness.servers.THREE_SHARDS (which database serves which shard is the
# harness's choice: main is the default shard, tenants the pods of tenant-a, events /registry/events/)
SHARD_KEYS = {
    "tenants": [b"/registry/pods/tenant-a/p%d" % i for i in range(6)],
    "main": [b"/registry/pods/tenant-b/p%d" % i for i in range(5)]
    + [b"/registry/configmaps/tenant-b/c%d" % i for i in range(5)],
    "events": [b"/registry/events/tenant-b/e%d" % i for i in range(6)],
}
KEYS = [k for ks in SHARD_KEYS.values() for k in ks]
LEASE_KEYS = [b"/registry/pods/tenant-a/leased", b"/registry/configmaps/tenant-b/leased",
              b"/registry/events/tenant-b/leased"]


def prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


RANGES = [(p, prefix_end(p)) for p in (b"/registry/pods/", b"/registry/", b"/registry/events/",
                                       b"/registry/configmaps/", b"/registry/pods/tenant-a/")]
WATCHED_SHARDS = [("tenants", b"/registry/pods/tenant-a/"), ("main", b"/registry/configmaps/"),
                  ("events", b"/registry/events/")]



def kv_of(kv) -> KV:
    return KV(kv.value, kv.mod_revision, kv.version, kv.create_revision, kv.lease)


class Recorder:
    """The history: writes and reads (histcheck's types), from all threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.writes: list[Write] = []
        self.reads: list[Read] = []
        self.ops = Counter()
        self.failures = Counter()
        self.problems: list[str] = []

    def add(self, kind: str, writes=(), reads=(), failure: Failure | None = None) -> None:
        with self.lock:
            self.ops[kind] += 1
            self.writes.extend(writes)
            self.reads.extend(reads)
            if failure is not None:
                self.failures[f"{kind}: {failure.code}"] += 1
                if len(self.problems) < 5:
                    self.problems.append(f"{kind}: {failure.code} {failure.details}")

    def max_rev(self) -> int:
        with self.lock:
            return max((w.rev for w in self.writes if w.rev is not None), default=1)


class Worker(threading.Thread):
    """One client doing random operations until `stop` is set."""

    def __init__(self, n: int, endpoint: str, rec: Recorder, stop: threading.Event, seed: int,
                 one_shard: bool = False):
        """one_shard: the server is one shard (`kubefabric serve --workers`): its calls
        alternate between two of its processes, and the "cross-shard" txns are plain two-key
        txns there."""
        super().__init__(name=f"client-{n}", daemon=True)
        self.n, self.endpoint, self.rec, self.stop, self.rng = n, endpoint, rec, stop, random.Random(seed)
        self.one_shard = one_shard
        self.known: dict[bytes, int] = {}  # key -> mod_revision last seen (0: absent)
        self.seq = 0
        self.errors: list[str] = []

    def value(self) -> bytes:
        self.seq += 1
        return b"c%d-%d" % (self.n, self.seq)

    def run(self) -> None:
        self.client = Client(self.endpoint, self.name, spread=self.one_shard)
        try:
            while not self.stop.is_set():
                try:
                    self.step()
                except Exception as exc:  # a malformed response or a bug in the test
                    self.errors.append(repr(exc))
                    time.sleep(0.05)
        finally:
            self.client.close()

    def call(self, method, request):
        op, inv = next(self.rec.ids), time.monotonic_ns()
        resp = self.client.call(method, request, timeout=5.0)
        return op, inv, time.monotonic_ns(), resp

    def step(self) -> None:
        r, key = self.rng.random(), self.rng.choice(KEYS)
        if r < 0.22:
            self.put(key)
        elif r < 0.30:
            self.delete(key)
        elif r < 0.52:
            self.cas([key])
        elif r < 0.58:
            shard = self.rng.choice([ks for ks in SHARD_KEYS.values()])
            self.cas(self.rng.sample(shard, 2))
        elif r < 0.60:
            if self.one_shard:
                self.cas(self.rng.sample(KEYS, 2))
            else:
                self.cross_shard_txn()
        elif r < 0.75:
            self.read(key, b"", "get")
        elif r < 0.95:
            self.read(*self.rng.choice(RANGES), "range")
        else:
            self.paginated_list()

    def put(self, key: bytes) -> None:
        v = self.value()
        op, inv, t, resp = self.call(self.client.kv.Put, pb.PutRequest(key=key, value=v, prev_kv=True))
        if isinstance(resp, Failure):
            return self.rec.add("put", [Write(key, v, inv, None, None, op)], failure=resp)
        prev = kv_of(resp.prev_kv) if resp.HasField("prev_kv") else None
        self.rec.add("put", [Write(key, v, inv, t, resp.header.revision, op, prev=prev)])
        self.known[key] = resp.header.revision

    def delete(self, key: bytes) -> None:
        op, inv, t, resp = self.call(self.client.kv.DeleteRange, pb.DeleteRangeRequest(key=key, prev_kv=True))
        if isinstance(resp, Failure):
            return self.rec.add("delete", [Write(key, None, inv, None, None, op)], failure=resp)
        self.known[key] = 0
        if resp.deleted:
            prev = kv_of(resp.prev_kvs[0]) if resp.prev_kvs else NOINFO
            self.rec.add("delete", [Write(key, None, inv, t, resp.header.revision, op, prev=prev)])
        else:  # nothing to delete: a read that found the key absent
            self.rec.add("delete (absent)", reads=[Read(key, b"", inv, t, resp.header.revision, (), op)])

    def cas(self, keys: list[bytes]) -> None:
        """kube-apiserver's update: if mod_revision(keys[0]) == R then put (every key) else get."""
        first, want = keys[0], self.known.get(keys[0], 0)
        values = [self.value() for _ in keys]
        req = pb.TxnRequest(
            compare=[pb.Compare(key=first, target=pb.Compare.MOD, result=pb.Compare.EQUAL, mod_revision=want)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=k, value=v)) for k, v in zip(keys, values)],
            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=first))])
        kind = "cas" if len(keys) == 1 else "cas 2 keys"
        op, inv, t, resp = self.call(self.client.kv.Txn, req)
        if isinstance(resp, Failure):
            return self.rec.add(kind, [Write(k, v, inv, None, None, op, index=i, cond_mod=want if i == 0 else None)
                                       for i, (k, v) in enumerate(zip(keys, values))], failure=resp)
        rev = resp.header.revision
        if resp.succeeded:
            self.rec.add(kind, [Write(k, v, inv, t, rev, op, index=i, cond_mod=want if i == 0 else None)
                                for i, (k, v) in enumerate(zip(keys, values))])
            self.known.update((k, rev) for k in keys)
        else:
            kvs = tuple((kv.key, kv_of(kv)) for kv in resp.responses[0].response_range.kvs)
            self.rec.add(kind + " (compare failed)", reads=[Read(first, b"", inv, t, rev, kvs, op, cond_failed=want)])
            self.known[first] = kvs[0][1].mod if kvs else 0

    def cross_shard_txn(self) -> None:
        """A txn over two shards: refused (FailedPrecondition), never a partial write."""
        keys = [self.rng.choice(SHARD_KEYS["tenants"]), self.rng.choice(SHARD_KEYS["main"])]
        values = [self.value() for _ in keys]
        req = pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(key=k, value=v))
                                     for k, v in zip(keys, values)])
        op, inv, t, resp = self.call(self.client.kv.Txn, req)
        if isinstance(resp, Failure) and resp.code == "FAILED_PRECONDITION":
            return self.rec.add("cross-shard txn (refused)")  # definitely not applied: values never seen
        if isinstance(resp, Failure):
            return self.rec.add("cross-shard txn", [Write(k, v, inv, None, None, op, index=i)
                                                    for i, (k, v) in enumerate(zip(keys, values))], failure=resp)
        self.errors.append(f"cross-shard txn on {keys} accepted at rev {resp.header.revision}")
        self.rec.add("cross-shard txn (accepted!)", [Write(k, v, inv, t, resp.header.revision, op, index=i)
                                                     for i, (k, v) in enumerate(zip(keys, values))])

    def read(self, lo: bytes, hi: bytes, kind: str) -> None:
        op, inv, t, resp = self.call(self.client.kv.Range, pb.RangeRequest(key=lo, range_end=hi))
        if isinstance(resp, Failure):
            return self.rec.add(kind, failure=resp)
        kvs = tuple((kv.key, kv_of(kv)) for kv in resp.kvs)
        self.rec.add(kind, reads=[Read(lo, hi, inv, t, resp.header.revision, kvs, op,
                                       count=resp.count if hi else None)])
        if not hi:
            self.known[lo] = kvs[0][1].mod if kvs else 0

    def paginated_list(self) -> None:
        """kube-apiserver's paginated list: limit 3, later pages pinned at the first page's revision.
        The first page is a linearizable read of its part; all pages together a snapshot."""
        lo, hi = b"/registry/pods/", prefix_end(b"/registry/pods/")
        op, inv, t, first = self.call(self.client.kv.Range, pb.RangeRequest(key=lo, range_end=hi, limit=3))
        if isinstance(first, Failure):
            return self.rec.add("list", failure=first)
        rev, kvs, page = first.header.revision, [(kv.key, kv_of(kv)) for kv in first.kvs], first
        reads = [Read(lo, kvs[-1][0] + b"\0" if first.more else hi, inv, t, rev, tuple(kvs), op)]
        while page.more:
            req = pb.RangeRequest(key=kvs[-1][0] + b"\0", range_end=hi, limit=3, revision=rev)
            _, _, t, page = self.call(self.client.kv.Range, req)
            if isinstance(page, Failure):
                return self.rec.add("list", failure=page)
            kvs += [(kv.key, kv_of(kv)) for kv in page.kvs]
        reads.append(Read(lo, hi, inv, t, rev, tuple(kvs), next(self.rec.ids), pinned=True, count=first.count))
        self.rec.add("list", reads=reads)


class LeaseWorker(Worker):
    """Grants a lease, puts one key per shard with it, revokes it (deleting all three)."""

    def step(self) -> None:
        grant = self.client.call(self.client.lease.LeaseGrant, pb.LeaseGrantRequest(TTL=60), timeout=5.0)
        if isinstance(grant, Failure):
            self.rec.add("lease grant", failure=grant)
            return time.sleep(0.1)
        self.rec.add("lease grant")
        attached = []
        for key in LEASE_KEYS:
            v = self.value()
            op, inv, t, resp = self.call(self.client.kv.Put, pb.PutRequest(key=key, value=v, lease=grant.ID, prev_kv=True))
            if isinstance(resp, Failure):
                self.rec.add("put with lease", [Write(key, v, inv, None, None, op, lease=grant.ID)], failure=resp)
                attached.append((key, False))
            else:
                self.rec.add("put with lease", [Write(key, v, inv, t, resp.header.revision, op, lease=grant.ID,
                                                      prev=kv_of(resp.prev_kv) if resp.HasField("prev_kv") else None)])
                attached.append((key, True))
        time.sleep(self.rng.uniform(0.1, 0.4))
        op, inv, t, resp = self.call(self.client.lease.LeaseRevoke, pb.LeaseRevokeRequest(ID=grant.ID))
        failed = isinstance(resp, Failure)
        # the revoke deletes every attached key, at revisions it does not report (seen by watches)
        self.rec.add("lease revoke", [Write(key, None, inv, None if failed or not sure else t, None, op)
                                      for key, sure in attached], failure=resp if failed else None)


class WatchRecorder(threading.Thread):
    """One Watch stream: creates its watchers one by one, then records every response into the
    WatchLog of its watcher (a progress response with watch_id -1 goes to all of them)."""

    def __init__(self, endpoint: str, specs, progress_every: float = 0.0):
        super().__init__(daemon=True)
        self.client = Client(endpoint, "watch")
        self.stream = WatchStream(self.client, timeout=300)
        self.logs: dict[int, WatchLog] = {}
        self.progress_every, self.done, self.failure, self.progress_responses = progress_every, False, None, 0
        early = []  # an earlier watcher's progress notification may come before a created
        for name, lo, hi, start, kw in specs:
            created = self.stream.created(lo, hi, start_revision=start, **kw)
            while not created.created and not created.events and not created.canceled:
                early.append(created)
                created = self.stream.recv(5)
            assert created.created and not created.canceled, created
            self.logs[created.watch_id] = WatchLog(name, lo, hi, start or created.header.revision + 1)
            self.logs[created.watch_id].prev_kv = kw.get("prev_kv", False)
        for r in early:
            self.record(r)
        self.start()

    def run(self) -> None:
        next_progress = time.monotonic() + self.progress_every
        while not self.done:
            if self.progress_every and time.monotonic() >= next_progress:
                self.stream.progress()
                next_progress += self.progress_every
            try:
                r = self.stream.recv(0.05)
            except NoResponse:
                continue
            if isinstance(r, Failure):
                self.failure = r
                return
            self.record(r)

    def record(self, r) -> None:
        progress = not r.events and not r.created and not r.canceled and not r.compact_revision
        self.progress_responses += progress
        for log in (self.logs.values() if r.watch_id == -1 and progress else [self.logs[r.watch_id]]):
            events = tuple(Event(pb_event_type(e), e.kv.key, kv_of(e.kv),
                                 (kv_of(e.prev_kv) if e.HasField("prev_kv") else None) if log.prev_kv else NOINFO)
                           for e in r.events)
            log.responses.append(Response(r.header.revision, events, progress, r.canceled))

    def seen_rev(self, log: WatchLog) -> int:
        return max([0] + [e.kv.mod for e in log.events] + [r.header_rev for r in log.responses if r.progress])

    def stop(self) -> None:
        self.done = True
        self.join(5)
        self.stream.close()
        self.client.close()


def pb_event_type(e) -> str:
    return "DELETE" if e.type == 1 else "PUT"


class Restarter(threading.Thread):
    """A watch on /registry/pods/ from revision 1, closed and re-opened from the last revision it
    saw + 1 every `every` seconds: the concatenation must be exactly the uninterrupted history."""

    def __init__(self, endpoint: str, every: float = 1.0):
        super().__init__(daemon=True)
        self.endpoint, self.every, self.done, self.restarts, self.failure = endpoint, every, False, 0, None
        lo = b"/registry/pods/"
        self.log = WatchLog("restarted every second", lo, prefix_end(lo), 1)
        self.log.prev_kv = False

    def run(self) -> None:
        while not self.done:
            start = max([1] + [e.kv.mod + 1 for e in self.log.events])
            w = WatchRecorder(self.endpoint, [("segment", self.log.lo, self.log.hi, start, {})])
            deadline = time.monotonic() + self.every
            while time.monotonic() < deadline and not self.done:
                time.sleep(0.02)
            w.stop()
            (segment,) = w.logs.values()
            self.log.responses += [r for r in segment.responses if r.events]  # bookmarks are per stream
            self.failure = self.failure or w.failure
            self.restarts += 1


def wait_delivered(recorders, rec: Recorder, upto: int, timeout: float = 15.0) -> list[str]:
    """Wait until every watcher has delivered its last acknowledged write at or below `upto`."""
    acked = [(w.key, w.rev) for w in rec.writes if w.resp is not None and w.rev is not None]
    deadline, late = time.monotonic() + timeout, []
    for recorder in recorders:
        for log in recorder.logs.values():
            need = max([0] + [rev for key, rev in acked if log.covers(key) and log.start <= rev <= upto])
            while recorder.seen_rev(log) < need and time.monotonic() < deadline:
                time.sleep(0.02)
            if recorder.seen_rev(log) < need:
                late.append(f"watch {log.name}: saw up to rev {recorder.seen_rev(log)} of {need} after {timeout}s")
    time.sleep(0.3)  # anything delivered twice or late arrives now
    return late


def run_history(ep: str, say, fault=None, load_seconds: float = LOAD_SECONDS,
                min_writes: int = 300, min_events: int = 1000, one_shard: bool = False) -> dict:
    """The workload against the router at `ep` (started with --watch-progress-notify-interval
    300ms), checked; fault(): called in its own thread 40 % into the load (it injects a failure
    and returns a line for the report); one_shard: see Worker. Asserts; returns the checker's
    figures."""
    t0 = time.monotonic()
    rec, stop, rng = Recorder(), threading.Event(), random.Random()
    seed = rng.getrandbits(32)
    rng.seed(seed)
    all_ = (b"/registry/", prefix_end(b"/registry/"))
    cluster = WatchRecorder(ep, [("cluster-wide from rev 1", *all_, 1, {"prev_kv": True})])
    shards = WatchRecorder(ep, [(f"shard {n}", p, prefix_end(p), 0, {}) for n, p in WATCHED_SHARDS])
    progress = WatchRecorder(ep, [("pods, progress_notify", b"/registry/pods/", prefix_end(b"/registry/pods/"), 0,
                                   {"progress_notify": True}),
                                  ("events, progress requests", b"/registry/events/",
                                   prefix_end(b"/registry/events/"), 0, {})], progress_every=0.15)
    restarter = Restarter(ep)
    restarter.start()
    workers = [Worker(i, ep, rec, stop, rng.getrandbits(32), one_shard) for i in range(CLIENTS)]
    workers.append(LeaseWorker(CLIENTS, ep, rec, stop, rng.getrandbits(32), one_shard))
    t_load = time.monotonic()
    for w in workers:
        w.start()
    fault_report: list[str] = []
    injector = None
    if fault is not None:
        injector = threading.Timer(load_seconds * 0.4, lambda: fault_report.append(fault()))
        injector.start()
    time.sleep(load_seconds * 0.3)
    mid_rev = rec.max_rev()
    time.sleep(load_seconds * 0.3)
    mid = WatchRecorder(ep, [(f"cluster-wide from rev {mid_rev}, opened mid-way", *all_, mid_rev, {})])
    time.sleep(load_seconds * 0.4)
    if injector is not None:
        injector.join(60)
    stop.set()
    for w in workers:
        w.join(10)
    load_s = time.monotonic() - t_load
    upto = rec.max_rev()
    recorders = [cluster, shards, progress, mid]
    late = wait_delivered(recorders, rec, upto)
    restarter.done = True
    restarter.join(10)

    # watches resumed after the load from cut points of the cluster-wide watch
    (full,) = cluster.logs.values()
    cuts = [r.events[-1].kv.mod for r in full.responses if r.events]
    resumed = [WatchRecorder(ep, [(f"resumed from rev {c + 1}", *all_, c + 1, {})])
               for c in (cuts[len(cuts) // 3], cuts[2 * len(cuts) // 3])]
    late += wait_delivered(resumed, rec, upto)
    for r in recorders + resumed:
        r.stop()

    if dump := os.environ.get("HISTCHECK_DUMP"):  # a file: the whole history, for a look afterwards
        with open(dump, "wb") as out:
            pickle.dump({"writes": rec.writes, "reads": rec.reads, "upto": upto, "seed": seed,
                         "logs": [log for r in recorders + resumed for log in r.logs.values()] + [restarter.log]}, out)
    t_check = time.monotonic()
    report, chains = check_history(rec.writes, rec.reads, full.events)
    logs = [log for r in recorders for log in r.logs.values()] + [restarter.log]
    for log in logs:
        check_watch(log, chains, upto, report)
    for r in resumed:
        check_resumed(full, *r.logs.values(), upto, report)
    check_s = time.monotonic() - t_check

    f = report.figures
    for line in fault_report:
        say(f"\nfault: {line}")
    say(f"\nhistory (seed {seed}): {sum(rec.ops.values())} ops in {load_s:.1f}s by {len(workers)} clients "
        f"({dict(sorted(rec.ops.items()))}); failures {dict(rec.failures) or 'none'}")
    say(f"checked: {f['writes']} writes, {f['reads']} reads ({f['key reads checked']} key states), "
        f"{f['keys linearizable-checked']} keys linearizable, {f['ops order-checked']} ops revision-ordered, "
        f"{f['events checked']} events in {len(logs)} watches + {f['resumed events checked']} resumed, "
        f"{restarter.restarts} restarts, {sum(r.progress_responses for r in recorders)} progress responses; "
        f"revisions 1..{upto}; unknown outcomes applied {f['unknown applied']} / not {f['unknown not applied']}, "
        f"{f['revisions from evidence']} revoke deletes placed by the watch; "
        f"check {check_s:.2f}s, test {time.monotonic() - t0:.1f}s")
    problems = ([e for w in workers for e in w.errors[:3]] + late
                + [f"watch stream ended: {r.failure}" for r in recorders + resumed + [restarter] if r.failure]
                + [f"watch {log.name} canceled" for log in logs if any(x.canceled for x in log.responses)])
    assert not problems and not report.violations, "\n".join(problems + [report.summary()])
    assert fault is None or fault_report, "the fault was not injected"
    # the history must have been big enough to mean something (min_*: what a loaded CI reaches)
    assert f["writes"] > min_writes and f["events checked"] > min_events, f
    return f
