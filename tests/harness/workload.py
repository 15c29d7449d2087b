"""A concurrent write load that records what the server acknowledged, and the checks a restarted
server's store must pass against that record (shared by test_crash.py and test_shutdown.py).

- `Ledger`: every ACKNOWLEDGED write (its response revision and the key changes it made, in
  event order), and the keys of requests whose outcome is unknown (they failed: they may or may
  not have committed).
- `Load`: several client threads doing puts, deletes and txns with compares on /load/ keys.
- `LeaseKeeper`: a short lease with a key, kept alive until the server goes away.
- `verify_store`: history walk (Watch from revision 1), Range at each acked write's revision,
  newest values, replay from a stored revision: no acked write lost, revisions dense and never
  reused, a watch neither skips nor repeats.
"""
from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

from harness.client import Client, Failure
from harness.stream import KeepAliveStream, NoResponse, WatchStream
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.mvccpb.kv_pb2 import Event

LOAD_PREFIX = b"/load/"
ALL_KEYS = b"\0"  # key and range_end b"\0": every key
RANGE_CHECKS = 1000  # Range(revision=) reads per verify_store


@dataclass(frozen=True)
class Write:
    rev: int
    changes: tuple[tuple[bytes, bytes | None], ...]  # (key, value) in event order; None: deleted
    client: str
    kind: str
    round: int


class Ledger:
    """Thread-safe record of acknowledged writes and of keys touched by failed requests."""

    def __init__(self):
        self.lock = threading.Lock()
        self.writes: list[Write] = []
        self.uncertain: set[bytes] = set()
        self.failures: Counter[str] = Counter()
        self.samples: dict[str, list[str]] = defaultdict(list)  # a few failure details per code

    def ack(self, write: Write) -> None:
        with self.lock:
            self.writes.append(write)

    def failed(self, keys, failure: Failure, what: str) -> None:
        with self.lock:
            self.uncertain.update(keys)
            self.failures[failure.code] += 1
            if len(self.samples[failure.code]) < 3:
                self.samples[failure.code].append(f"{what} at {time.monotonic():.3f}: {failure.details}")

    def of_round(self, rnd: int) -> list[Write]:
        with self.lock:
            return [w for w in self.writes if w.round == rnd]

    @property
    def max_rev(self) -> int:
        with self.lock:
            return max((w.rev for w in self.writes), default=1)


def _cmp(key: bytes, target, result, **value) -> pb.Compare:
    return pb.Compare(key=key, target=target, result=result, **value)


class LoadClient(threading.Thread):
    """One client: puts, deletes and txns (compare-and-swap, delete-if-exists) on its own keys and
    on keys shared by every client. Stops at `stop`; a failed request marks its keys uncertain."""

    OWN_KEYS, SHARED_KEYS = 8, 4

    def __init__(self, name: str, endpoint: str, ledger: Ledger, stop: threading.Event,
                 rnd: int, seed: int, timeout: float = 5.0):
        super().__init__(name=f"load-{name}", daemon=True)
        self.cid, self.endpoint, self.ledger, self.stop_event = name, endpoint, ledger, stop
        self.round, self.rng, self.timeout = rnd, random.Random(seed), timeout
        self.own = [LOAD_PREFIX + f"c{name}/{i}".encode() for i in range(self.OWN_KEYS)]
        self.shared = [LOAD_PREFIX + f"shared/{i}".encode() for i in range(self.SHARED_KEYS)]
        self.known: dict[bytes, int] = {}  # own key -> mod revision as last seen (0: absent)
        self.seq = 0
        self.acked = 0
        self.unexpected: list[str] = []

    def value(self) -> bytes:
        self.seq += 1
        return f"r{self.round}:c{self.cid}:{self.seq}".encode()

    def run(self) -> None:
        client = Client(self.endpoint, self.name)
        try:
            while not self.stop_event.is_set():
                try:
                    self.step(client)
                except Exception as exc:  # a bug in the test or a malformed response
                    self.unexpected.append(repr(exc))
                    time.sleep(0.05)
        finally:
            client.close()

    def _ack(self, rev: int, changes, kind: str) -> None:
        self.ledger.ack(Write(rev, tuple(changes), self.cid, kind, self.round))
        self.acked += 1

    def _call(self, client: Client, method, request, keys):
        resp = client.call(method, request, timeout=self.timeout)
        if isinstance(resp, Failure):
            self.ledger.failed(keys, resp, type(request).__name__)
            for k in keys:
                self.known.pop(k, None)
            time.sleep(0.02)
            return None
        return resp

    def step(self, c: Client) -> None:
        r = self.rng.random()
        key = self.rng.choice(self.own)
        if r < 0.35:  # put
            v = self.value()
            if resp := self._call(c, c.kv.Put, pb.PutRequest(key=key, value=v), [key]):
                self._ack(resp.header.revision, [(key, v)], "put")
                self.known[key] = resp.header.revision
        elif r < 0.5:  # delete: takes a revision only when the key existed
            if resp := self._call(c, c.kv.DeleteRange, pb.DeleteRangeRequest(key=key), [key]):
                if resp.deleted:
                    self._ack(resp.header.revision, [(key, None)], "delete")
                self.known[key] = 0
        elif r < 0.8:  # compare-and-swap on an own key, writing a shared key in the same revision
            other, v1, v2 = self.rng.choice(self.shared), self.value(), self.value()
            req = pb.TxnRequest(
                compare=[_cmp(key, pb.Compare.MOD, pb.Compare.EQUAL, mod_revision=self.known.get(key, 0))],
                success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=v1)),
                         pb.RequestOp(request_put=pb.PutRequest(key=other, value=v2))],
                failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))])
            if resp := self._call(c, c.kv.Txn, req, [key, other]):
                if resp.succeeded:
                    self._ack(resp.header.revision, [(key, v1), (other, v2)], "cas")
                    self.known[key] = resp.header.revision
                else:
                    kvs = resp.responses[0].response_range.kvs
                    self.known[key] = kvs[0].mod_revision if kvs else 0
        elif r < 0.9:  # delete if it exists, decided by a version compare
            req = pb.TxnRequest(
                compare=[_cmp(key, pb.Compare.VERSION, pb.Compare.GREATER, version=0)],
                success=[pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key))])
            if resp := self._call(c, c.kv.Txn, req, [key]):
                if resp.succeeded:
                    assert resp.responses[0].response_delete_range.deleted == 1, resp
                    self._ack(resp.header.revision, [(key, None)], "cas-delete")
                self.known[key] = 0
        else:  # put a shared key
            key, v = self.rng.choice(self.shared), self.value()
            if resp := self._call(c, c.kv.Put, pb.PutRequest(key=key, value=v), [key]):
                self._ack(resp.header.revision, [(key, v)], "put-shared")


class Load:
    """`n` LoadClients against one endpoint; `stop()` ends them and returns their errors."""

    def __init__(self, endpoint: str, ledger: Ledger, rnd: int, rng: random.Random, n: int = 4,
                 timeout: float = 5.0):
        self.stop_event = threading.Event()
        self.clients = [LoadClient(str(i), endpoint, ledger, self.stop_event, rnd, rng.getrandbits(32),
                                   timeout) for i in range(n)]
        for client in self.clients:
            client.start()

    def stop(self, join_timeout: float = 15.0) -> list[str]:
        """Stop and join; returns problems: unexpected exceptions and threads that hang."""
        self.stop_event.set()
        problems = []
        deadline = time.monotonic() + join_timeout
        for client in self.clients:
            client.join(max(0.0, deadline - time.monotonic()))
            if client.is_alive():
                problems.append(f"client {client.cid} still blocked {join_timeout}s after stop")
            problems.extend(f"client {client.cid}: {e}" for e in client.unexpected[:3])
        return problems

    @property
    def acked(self) -> int:
        return sum(c.acked for c in self.clients)

    def wait_acked(self, n: int = 1, timeout: float = 20.0) -> None:
        """Wait until `n` writes are acknowledged (a loaded machine is slow to get going)."""
        deadline = time.monotonic() + timeout
        while self.acked < n:
            assert time.monotonic() < deadline, f"{self.acked} writes acked in {timeout}s"
            time.sleep(0.01)


class LeaseKeeper(threading.Thread):
    """Grants a lease of `ttl` seconds, puts `key` on it (an acknowledged write in the ledger) and
    keeps the lease alive until the stream fails (the server went away) or `stop` is set."""

    def __init__(self, endpoint: str, key: bytes, ttl: int, ledger: Ledger, rnd: int):
        super().__init__(name="lease-keeper", daemon=True)
        self.client = Client(endpoint, "lease")
        self.key, self.ttl = key, ttl
        grant = self.client.call(self.client.lease.LeaseGrant, pb.LeaseGrantRequest(TTL=ttl))
        assert not isinstance(grant, Failure), grant
        self.lease_id = grant.ID
        put = self.client.put(key, b"leased", lease=self.lease_id)
        assert not isinstance(put, Failure), put
        ledger.ack(Write(put.header.revision, ((key, b"leased"),), "lease", "lease-put", rnd))
        self.stop_event = threading.Event()
        self.end: Failure | str | None = None  # how the keep-alive stream ended
        self.start()

    def run(self) -> None:
        stream = KeepAliveStream(self.client)
        try:
            while not self.stop_event.wait(self.ttl / 4):
                resp = stream.keepalive(self.lease_id, timeout=2.0)
                if isinstance(resp, Failure) or resp.TTL <= 0:
                    self.end = resp
                    return
        except NoResponse:
            self.end = "no response"
            return
        finally:
            stream.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(5)
        self.client.close()


# ---- reading the store back ----

def head_revision(c: Client) -> int:
    resp = c.get(b"/robustness/no-such-key", count_only=True)  # just the header
    assert not isinstance(resp, Failure), resp
    return resp.header.revision


def open_watch(c: Client, start_rev: int) -> WatchStream:
    ws = WatchStream(c)
    created = ws.created(ALL_KEYS, ALL_KEYS, start_revision=start_rev, timeout=10.0)
    assert not isinstance(created, Failure) and created.created and not created.canceled, created
    return ws


def read_until(ws: WatchStream, rev: int, timeout: float = 30.0) -> list[Event]:
    """Events of the stream until one at revision >= `rev`; only those <= rev are returned."""
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while not events or events[-1].kv.mod_revision < rev:
        left = deadline - time.monotonic()
        last = events[-1].kv.mod_revision if events else None
        try:
            resp = ws.recv(max(left, 0.01))
        except NoResponse:
            raise AssertionError(f"watch stalled: waited {timeout}s for revision {rev}, last event "
                                 f"at {last} ({len(events)} events)") from None
        assert not isinstance(resp, Failure), f"watch ended at revision {last} waiting for {rev}: {resp}"
        assert not resp.canceled, f"watch canceled: {resp}"
        events.extend(resp.events)
    return [e for e in events if e.kv.mod_revision <= rev]


def _ev(e: Event) -> tuple:
    return (e.kv.mod_revision, e.kv.key, e.type, e.kv.value if e.type == Event.PUT else None)


def check_history(events: list[Event], ledger: Ledger, head: int) -> None:
    """Revisions 2..head each carry events, in order, none repeated; each acked write's revision
    holds exactly that write's changes (so no revision was shared or reused)."""
    revs = [e.kv.mod_revision for e in events]
    back = next((i for i in range(1, len(revs)) if revs[i] < revs[i - 1]), None)
    assert back is None, f"history goes backwards: revision {revs[back - 1]} then {revs[back]}"
    seen = set(revs)
    missing = sorted(set(range(2, head + 1)) - seen)
    assert not missing, f"{len(missing)} revisions skipped in 2..{head}: {missing[:10]}"
    assert seen <= set(range(2, head + 1)), f"events above head {head}: {sorted(seen)[-5:]}"
    dup = [k for k, n in Counter((e.kv.mod_revision, e.kv.key) for e in events).items() if n > 1]
    assert not dup, f"events repeated or revisions reused: {dup[:5]}"
    at: dict[int, list[tuple]] = defaultdict(list)
    for e in events:
        at[e.kv.mod_revision].append(_ev(e)[1:])
    with ledger.lock:
        writes = list(ledger.writes)
    shared = [r for r, n in Counter(w.rev for w in writes).items() if n > 1]
    assert not shared, f"two acknowledged writes got the same revision: {shared[:5]}"
    for w in writes:
        want = [(k, Event.DELETE if v is None else Event.PUT, v) for k, v in w.changes]
        assert at.get(w.rev) == want, (f"acked {w.kind} by client {w.client} (round {w.round}) at "
                                       f"revision {w.rev}: history has {at.get(w.rev)}, want {want}")


def check_at_revisions(c: Client, writes: list[Write]) -> int:
    """Range(key, revision=w.rev) shows each change of each write; returns the number of reads."""
    reads = 0
    for w in writes:
        for key, value in w.changes:
            resp = c.get(key, revision=w.rev)
            assert not isinstance(resp, Failure), f"Range {key!r} at {w.rev}: {resp}"
            got = [(kv.value, kv.mod_revision) for kv in resp.kvs]
            want = [] if value is None else [(value, w.rev)]
            assert got == want, (f"acked {w.kind} by client {w.client} (round {w.round}): {key!r} at "
                                 f"revision {w.rev} is {got}, want {want}")
            reads += 1
    return reads


def check_newest(c: Client, ledger: Ledger, events: list[Event], head: int) -> int:
    """Every /load/ key holds its newest acked value, unless a later write whose outcome the client
    never learnt committed after it. Range and history agree. Returns the keys checked."""
    resp = c.get(LOAD_PREFIX, range_end=LOAD_PREFIX[:-1] + b"0", revision=head)
    assert not isinstance(resp, Failure), resp
    current = {kv.key: (kv.value, kv.mod_revision) for kv in resp.kvs}
    last_event: dict[bytes, Event] = {}
    for e in events:
        last_event[e.kv.key] = e
    for key, e in last_event.items():
        if key.startswith(LOAD_PREFIX):
            want = (e.kv.value, e.kv.mod_revision) if e.type == Event.PUT else None
            assert current.get(key) == want, f"{key!r}: Range says {current.get(key)}, history {want}"
    newest: dict[bytes, tuple[int, bytes | None]] = {}
    with ledger.lock:
        for w in ledger.writes:
            for key, value in w.changes:
                if key.startswith(LOAD_PREFIX) and w.rev > newest.get(key, (0, None))[0]:
                    newest[key] = (w.rev, value)
        uncertain = set(ledger.uncertain)
    for key, (rev, value) in newest.items():
        got = current.get(key)
        if got == (None if value is None else (value, rev)):
            continue
        later = last_event[key].kv.mod_revision
        assert later > rev and key in uncertain, (
            f"{key!r}: newest acked write (revision {rev}) was {value!r}, store has {got}"
            + ("" if key in uncertain else " and no unacknowledged write touched it"))
    return len(newest)


def check_replay(replayed: list[Event], history: list[Event], start: int) -> None:
    """A watch from `start` saw exactly the history from `start` on: nothing skipped or repeated."""
    want = [_ev(e) for e in history if e.kv.mod_revision >= start]
    got = [_ev(e) for e in replayed]
    if got != want:
        i = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        raise AssertionError(f"watch from revision {start} diverges from the history at event {i}: "
                             f"got {got[i:i + 3]}, history has {want[i:i + 3]} "
                             f"({len(got)} events vs {len(want)})")


def verify_store(c: Client, ledger: Ledger, rng: random.Random, rnd: int, burst: int = 20) -> dict:
    """All checks on a freshly restarted server. Writes `burst` puts (acked into the ledger) while a
    watch from a random stored revision replays, so the replay→live switch is exercised too.
    Every acked write is checked against the history; Range(revision=) reads check the writes of
    round `rnd` (at most RANGE_CHECKS of them: the newest half and a random sample)."""
    head0 = head_revision(c)
    acked_max = ledger.max_rev
    assert head0 >= acked_max, f"restarted at revision {head0}, below acknowledged revision {acked_max}"
    start = rng.randint(1, head0)
    ws = open_watch(c, start)
    try:
        first = None
        for i in range(burst):
            key, value = LOAD_PREFIX + f"after/{i % 5}".encode(), f"r{rnd}:after:{i}".encode()
            resp = c.put(key, value)
            assert not isinstance(resp, Failure), f"put after restart: {resp}"
            first = first or resp.header.revision
            ledger.ack(Write(resp.header.revision, ((key, value),), "after", "put", rnd))
        assert first > head0, f"first write after restart got revision {first}, not above {head0}"
        head = head_revision(c)
        replayed = read_until(ws, head)
    finally:
        ws.close()
    hw = open_watch(c, 1)
    try:
        history = read_until(hw, head)
    finally:
        hw.close()
    check_history(history, ledger, head)
    check_replay(replayed, history, start)
    writes = ledger.of_round(rnd)
    if len(writes) > RANGE_CHECKS:  # the newest (written around the kill) and a random sample
        half = RANGE_CHECKS // 2
        writes = writes[-half:] + rng.sample(writes[:-half], RANGE_CHECKS - half)
    reads = check_at_revisions(c, writes)
    keys = check_newest(c, ledger, history, head)
    return {"head_at_restart": head0, "head": head, "events": len(history), "replay_from": start,
            "replayed": len(replayed), "range_reads": reads, "keys": keys}
