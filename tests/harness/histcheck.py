"""Checks of a recorded concurrent etcd history: per-key linearizability, the real-time order of
revisions across shards, consistent snapshots, and the watch guarantees of DESIGN §5.

The history is plain data (`Write`, `Read`, `WatchLog`), recorded by a test or built by hand.
Times are time.monotonic_ns() values; `resp=None` means the outcome is unknown (the request
failed: it may or may not have applied, and may apply at any time after its invocation).

Why revisions make linearizability cheap (the Wing & Gong / Porcupine search collapses): in the
register-with-revisions model a key's writes take effect in the order of their revisions (each
write's revision becomes the key's mod_revision and revisions only grow), and a read at header
revision h must return the key's state after the last write with revision <= h. So the only
candidate linearization of a key is: the writes in revision order, each read between the write it
saw and the next one. What remains is to decide whether it respects real time, which a greedy pass
answers exactly (each operation at the earliest point its predecessors allow; infeasible iff some
operation's point falls after its response). Unknown-outcome operations are first resolved from
evidence: a put whose value was ever observed (a read, a prev_kv, a watch event) took effect at
the observed revision; a delete took effect if a watch shows an unexplained delete of its key;
otherwise it did not take effect. Values must be unique per put.
"""
from __future__ import annotations

import itertools
from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace

NOINFO = "no-info"  # a write's `prev` when the response did not say what it replaced


def in_range(key: bytes, lo: bytes, hi: bytes) -> bool:
    """etcd's range: hi=b"" is the key lo alone, hi=b"\\0" every key from lo on."""
    if not hi:
        return key == lo
    return lo <= key and (hi == b"\0" or key < hi)


@dataclass(frozen=True)
class KV:
    """A key's state: etcd's KeyValue without the key. A missing key is None."""
    value: bytes
    mod: int
    version: int
    create: int
    lease: int = 0


@dataclass
class Write:
    """One key changed by one operation (a txn writing n keys is n Writes with the same op)."""
    key: bytes
    value: bytes | None          # None: a delete
    inv: int
    resp: int | None             # None: unknown outcome
    rev: int | None              # the response's revision; None while unknown
    op: int                      # the client operation (shared by a txn's writes)
    index: int = 0               # position among the op's events (txn order)
    prev: object = NOINFO        # the state it replaced, when the response said (prev_kv): KV|None
    cond_mod: int | None = None  # a txn's compare: the key's mod_revision was this (0: absent)
    lease: int = 0

    @property
    def acked(self) -> bool:
        return self.resp is not None


@dataclass
class Read:
    """A Range (or the range part of a txn): every key in [lo, hi) as of header revision `rev`.
    hi=b"" reads the key lo only. `pinned`: a read at an explicit older revision (a later page of
    a paginated list): checked as a snapshot only, not against real time."""
    lo: bytes
    hi: bytes
    inv: int
    resp: int
    rev: int
    kvs: tuple[tuple[bytes, KV], ...]
    op: int
    pinned: bool = False
    count: int | None = None     # the response's count, when no limit was asked
    cond_failed: int | None = None  # a txn's failed compare: the key's mod_revision was NOT this

    def covers(self, key: bytes) -> bool:
        return in_range(key, self.lo, self.hi)


@dataclass(frozen=True)
class Event:
    type: str                    # "PUT" or "DELETE"
    key: bytes
    kv: KV                       # for a DELETE: value b"", mod = the delete's revision
    prev: object = NOINFO        # prev_kv when the watch asked for it: KV|None


@dataclass
class Response:
    header_rev: int
    events: tuple[Event, ...] = ()
    progress: bool = False       # a progress notification (no events, not created/canceled)
    canceled: bool = False


@dataclass
class WatchLog:
    """What one watcher received, in order, from `start` (its first revision) on."""
    name: str
    lo: bytes
    hi: bytes
    start: int
    responses: list[Response] = field(default_factory=list)

    @property
    def events(self) -> list[Event]:
        return [e for r in self.responses for e in r.events]

    def covers(self, key: bytes) -> bool:
        return in_range(key, self.lo, self.hi)


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    figures: Counter = field(default_factory=Counter)

    by_kind: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def bad(self, kind: str, text: str) -> None:
        """A violation of kind `kind` (e.g. "snapshot", "watch reliable")."""
        self.by_kind[kind].append(text)
        self.violations.append(f"{kind}: {text}")
        self.figures["violations"] += 1

    def summary(self, examples: int = 3) -> str:
        """How many violations of each kind, with the first few of each."""
        out = []
        for kind, texts in sorted(self.by_kind.items()):
            out.append(f"{len(texts)} x {kind}")
            out += [f"    {t}" for t in texts[:examples]]
        return "\n".join(out)


def _state(kv) -> str:
    return "absent" if kv is None else (f"{kv.value!r}@mod{kv.mod}/v{kv.version}/c{kv.create}"
                                        + (f"/lease{kv.lease}" if kv.lease else ""))


# ---------------------------------------------------------------------------------------------
# Unknown outcomes

def resolve(writes: list[Write], reads: list[Read], watch_events: list[Event],
            report: Report) -> list[Write]:
    """The writes that took effect, every one with its revision: acknowledged writes, plus the
    unknown-outcome (or revision-less, e.g. a lease revoke's deletes) writes the evidence shows."""
    seen: dict[tuple[bytes, bytes], set[int]] = defaultdict(set)  # (key, value) -> observed mods
    for r in reads:
        for key, kv in r.kvs:
            seen[key, kv.value].add(kv.mod)
    for w in writes:
        if isinstance(w.prev, KV):
            seen[w.key, w.prev.value].add(w.prev.mod)
    for e in watch_events:
        if e.type == "PUT":
            seen[e.key, e.kv.value].add(e.kv.mod)
        if isinstance(e.prev, KV):
            seen[e.key, e.prev.value].add(e.prev.mod)
    known_deletes = {(w.key, w.rev) for w in writes if w.value is None and w.rev is not None}
    loose_deletes = defaultdict(list)  # key -> revisions of watched deletes no known write explains
    for e in watch_events:
        if e.type == "DELETE" and (e.key, e.kv.mod) not in known_deletes and e.kv.mod not in loose_deletes[e.key]:
            loose_deletes[e.key].append(e.kv.mod)
    # a revision-less delete took effect after every write acknowledged before its invocation
    # and (acknowledged) before every write invoked after its response: only such a watched
    # delete can be its own. Acknowledged ones choose first; unknown ones take what is left.
    done = sorted((w.resp, w.rev) for w in writes if w.rev is not None and w.resp is not None)
    started = sorted((w.inv, w.rev) for w in writes if w.rev is not None)
    done_max = list(itertools.accumulate((rev for _, rev in done), max))
    started_min = list(itertools.accumulate((rev for _, rev in reversed(started)), min))[::-1]

    def window(w: Write) -> tuple[int, float]:
        i = bisect_right(done, (w.inv, float("inf")))
        lo = done_max[i - 1] if i else 0
        hi = float("inf")
        if w.resp is not None:
            j = bisect_right(started, (w.resp, float("inf")))
            hi = started_min[j] if j < len(started) else hi
        return lo, hi

    out = []
    deletes_placed: dict[int, int] = {}  # id(write) -> revision, for revision-less deletes
    for acked in (True, False):
        for w in sorted(writes, key=lambda w: w.inv):
            if w.rev is not None or w.value is not None or w.acked != acked:
                continue
            lo, hi = window(w)
            fits = [rev for rev in loose_deletes[w.key] if lo < rev < hi]
            if fits:
                loose_deletes[w.key].remove(fits[0])
                deletes_placed[id(w)] = fits[0]
    for w in sorted(writes, key=lambda w: w.inv):
        if w.rev is not None:
            out.append(w)
            continue
        if w.value is not None:
            mods = seen.get((w.key, w.value), set())
            if len(mods) > 1:
                report.bad("history",
                           f"key {w.key!r}: value {w.value!r} (op {w.op}) observed at several "
                           f"mod_revisions {sorted(mods)}")
            if mods:
                out.append(replace(w, rev=min(mods)))
                report.figures["revisions from evidence" if w.acked else "unknown applied"] += 1
            elif w.acked:
                report.bad("lost write",
                           f"key {w.key!r}: acknowledged put of {w.value!r} (op {w.op}) without a "
                           f"revision never observed")
            else:
                report.figures["unknown not applied"] += 1
        else:
            if id(w) in deletes_placed:
                out.append(replace(w, rev=deletes_placed[id(w)]))
                report.figures["revisions from evidence" if w.acked else "unknown applied"] += 1
            elif w.acked:
                report.bad("lost write",
                           f"key {w.key!r}: acknowledged delete (op {w.op}, e.g. a lease revoke) never observed")
            else:
                report.figures["unknown not applied"] += 1
    return out


# ---------------------------------------------------------------------------------------------
# Per-key chains, snapshots and linearizability

@dataclass
class Chain:
    """One key's history: its writes in revision order and the state after each."""
    writes: list[Write]
    states: list  # states[i]: after writes[i-1]; states[0] = None (a fresh key)
    revs: list[int]

    def at(self, rev: int):
        """The key's state at revision `rev`, and its slot (how many writes are at or below rev)."""
        slot = bisect_right(self.revs, rev)
        return self.states[slot], slot


def build_chain(key: bytes, writes: list[Write], report: Report) -> Chain:
    writes = sorted(writes, key=lambda w: w.rev)
    states = [None]
    for i, w in enumerate(writes):
        s = states[-1]
        if i and writes[i - 1].rev == w.rev:
            report.bad("history",
                       f"key {key!r}: two writes at revision {w.rev} (ops {writes[i - 1].op} and {w.op})")
        if w.prev != NOINFO and w.prev != s:
            report.bad("history",
                       f"key {key!r}: write op {w.op} at rev {w.rev} replaced {_state(w.prev)} (its prev_kv) "
                       f"but the history before it ends in {_state(s)}")
        if w.cond_mod is not None and (s.mod if s else 0) != w.cond_mod:
            report.bad("history",
                       f"key {key!r}: txn op {w.op} at rev {w.rev} succeeded on mod_revision == {w.cond_mod} "
                       f"but the key was {_state(s)}")
        if w.value is None:
            if s is None and w.acked:
                report.bad("history",
                           f"key {key!r}: delete op {w.op} at rev {w.rev} deleted a key that did not exist")
            states.append(None)
        else:
            states.append(KV(w.value, w.rev, s.version + 1 if s else 1, s.create if s else w.rev, w.lease))
    return Chain(writes, states, [w.rev for w in writes])


def check_reads(chains: dict[bytes, Chain], reads: list[Read], report: Report) -> None:
    """Every read is a consistent snapshot: each key in its range as of its revision (for a
    cross-shard range: one revision for all shards), in key order, counted right."""
    for r in reads:
        got = dict(r.kvs)
        keys = [k for k, _ in r.kvs]
        if keys != sorted(set(keys)):
            report.bad("read",
                       f"read op {r.op} [{r.lo!r}, {r.hi!r}) at rev {r.rev}: keys not sorted/unique: {keys}")
        if r.count is not None and r.count != len(keys):
            report.bad("read",
                       f"read op {r.op} [{r.lo!r}, {r.hi!r}) at rev {r.rev}: count {r.count} but {len(keys)} keys")
        if r.cond_failed is not None and (got[r.lo].mod if r.lo in got else 0) == r.cond_failed:
            report.bad("read",
                       f"txn op {r.op} at rev {r.rev}: compare mod_revision == {r.cond_failed} failed "
                       f"but it read {_state(got.get(r.lo))}")
        for key in got:
            if key not in chains:
                report.bad("read", f"read op {r.op} at rev {r.rev}: key {key!r} was never written")
        for key, chain in chains.items():
            if not r.covers(key):
                continue
            report.figures["key reads checked"] += 1
            want, _ = chain.at(r.rev)
            if got.get(key) != want:
                report.bad("snapshot", f"read op {r.op} [{r.lo!r}, {r.hi!r}) at rev {r.rev}: key {key!r} is "
                           f"{_state(got.get(key))}, but at rev {r.rev} it was {_state(want)}")


def check_linearizable(key: bytes, chain: Chain, reads: list[Read], report: Report) -> None:
    """Real time: place the writes (revision order) and the reads (each after the write it saw,
    before the next) at the earliest point their predecessors allow; each must fit its interval.
    A violation names the operation whose invocation forced the point (often a stale read)."""
    groups = [[] for _ in range(len(chain.writes) + 1)]  # the reads of each slot
    for r in reads:
        if not r.pinned and r.covers(key):
            groups[chain.at(r.rev)[1]].append(r)
    t, by = -1, None  # the point reached, and the operation whose invocation set it

    def place(what: str, inv: int, resp: int | None) -> tuple[int, str]:
        if resp is not None and t > resp:
            report.bad("linearizability", f"key {key!r}: {what} responded {(t - resp) / 1e3:.0f} us before "
                       f"{by} was invoked, which must precede it")
        return (inv, what) if inv > t else (t, by)

    for slot, group in enumerate(groups):
        state = _state(chain.states[slot])
        if slot:
            w = chain.writes[slot - 1]
            t, by = place(f"write op {w.op} (rev {w.rev}, makes {state})", w.inv, w.resp)
        points = [place(f"read op {r.op} (rev {r.rev}, saw {state})", r.inv, r.resp) for r in group]
        t, by = max([(t, by)] + points, key=lambda x: x[0])
    report.figures["keys linearizable-checked"] += 1


def check_revision_order(writes: list[Write], reads: list[Read], report: Report) -> None:
    """Across shards, in real time: a write gets a revision higher than any revision already
    reported, by a write or by a read (DESIGN §3.2). A read's header may be lower: a single-shard
    read reports its shard's closed revision (DESIGN §3.3); what it returns is checked per key by
    check_linearizable and check_reads. Each violation names its kind, e.g. "revision order
    (write after read)": op B, invoked after op A responded, got a revision not above A's."""
    ops = {}
    for w in writes:
        if w.acked and w.rev is not None:
            ops[w.op] = (w.inv, w.resp, w.rev, "write")
    for r in reads:
        if not r.pinned:
            ops.setdefault(r.op, (r.inv, r.resp, r.rev, "read"))
    done = sorted(ops.items(), key=lambda x: x[1][1])
    i, top = 0, {"write": (0, None), "read": (0, None)}  # the highest revision responded, and by
    for op, (inv, _, rev, kind) in sorted(ops.items(), key=lambda x: x[1][0]):
        while i < len(done) and done[i][1][1] < inv:
            a, (_, _, a_rev, a_kind) = done[i]
            if a_rev > top[a_kind][0]:
                top[a_kind] = (a_rev, a)
            i += 1
        for before, (top_rev, top_op) in top.items():
            if kind == "write" and rev <= top_rev:
                report.bad(f"revision order ({kind} after {before})",
                           f"{kind} op {op} got revision {rev}, "
                           f"invoked after {before} op {top_op} had responded with revision {top_rev}")
    report.figures["ops order-checked"] += len(ops)


def check_history(writes: list[Write], reads: list[Read],
                  watch_events: list[Event] = ()) -> tuple[Report, dict[bytes, Chain]]:
    """Everything about the KV history. `watch_events`: a complete watch's events, used only to
    resolve unknown outcomes (check_watch judges the watch itself)."""
    report = Report()
    applied = resolve(writes, reads, list(watch_events), report)
    by_key = defaultdict(list)
    for w in applied:
        by_key[w.key].append(w)
    chains = {key: build_chain(key, ws, report) for key, ws in by_key.items()}
    check_reads(chains, reads, report)
    for key, chain in chains.items():
        check_linearizable(key, chain, reads, report)
    check_revision_order(applied, reads, report)
    report.figures["writes"] = len(applied)
    report.figures["reads"] = len(reads)
    return report, chains


# ---------------------------------------------------------------------------------------------
# Watches

def expected_events(chains: dict[bytes, Chain], log: WatchLog, upto: int) -> dict:
    """(key, rev) -> (write, state after, state before) for every write the watcher must deliver."""
    out = {}
    for key, chain in chains.items():
        if log.covers(key):
            for i, w in enumerate(chain.writes):
                if log.start <= w.rev <= upto:
                    out[key, w.rev] = (w, chain.states[i + 1], chain.states[i])
    return out


def check_watch(log: WatchLog, chains: dict[bytes, Chain], upto: int, report: Report) -> None:
    """ordered, unique, atomic, reliable and bookmarkable, for everything up to revision `upto`
    (the watcher must have received all of it)."""
    name = f"watch {log.name}"
    want = expected_events(chains, log, upto)
    seen = Counter()
    rev_response: dict[int, int] = {}
    last_rev, last_op_index, bookmark = 0, {}, 0
    for n, resp in enumerate(log.responses):
        if resp.progress:
            bookmark = max(bookmark, resp.header_rev)
            continue
        if resp.events and resp.events[0].kv.mod <= last_rev:
            report.bad("watch ordered",
                       f"{name}: response {n} starts at rev {resp.events[0].kv.mod} after a response "
                       f"that ended at rev {last_rev} (revisions must increase across responses)")
        for e in resp.events:
            rev = e.kv.mod
            report.figures["events checked"] += 1
            if rev < log.start:
                report.bad("watch ordered",
                           f"{name}: event {e.key!r}@{rev} before the watch's start revision {log.start}")
            if rev <= bookmark:
                report.bad("watch bookmarkable",
                           f"{name}: event {e.key!r}@{rev} after a progress notification at rev {bookmark}")
            if rev > resp.header_rev:
                report.bad("watch ordered",
                           f"{name}: event {e.key!r}@{rev} in a response with header revision {resp.header_rev}")
            if rev < last_rev:
                report.bad("watch ordered", f"{name}: event {e.key!r}@{rev} after an event at rev {last_rev}")
            if rev_response.setdefault(rev, n) != n:
                report.bad("watch atomic",
                           f"{name}: events of rev {rev} split over responses {rev_response[rev]} "
                           f"and {n} (not atomic)")
            seen[e.key, rev] += 1
            if seen[e.key, rev] == 2:
                report.bad("watch unique", f"{name}: event {e.key!r}@{rev} delivered twice")
            last_rev = max(last_rev, rev)
            exp = want.get((e.key, rev))
            if exp is None:
                if rev <= upto:
                    report.bad("watch reliable", f"{name}: event {e.type} {e.key!r}@{rev} was never written")
                continue
            w, after, before = exp
            if (e.type == "DELETE") != (w.value is None) or (after is not None and e.kv != after):
                report.bad("watch reliable",
                           f"{name}: event {e.type} {e.key!r}@{rev} is {_state(e.kv)}, the write "
                           f"made {_state(after)}")
            if e.prev != NOINFO and e.prev != before:
                report.bad("watch reliable",
                           f"{name}: event {e.key!r}@{rev} has prev_kv {_state(e.prev)}, it "
                           f"replaced {_state(before)}")
            if last_op_index.get((rev, w.op), -1) > w.index:
                report.bad("watch ordered",
                           f"{name}: events of txn op {w.op} at rev {rev} out of the txn's order")
            last_op_index[rev, w.op] = w.index
    for (key, rev), (w, _, _) in sorted(want.items(), key=lambda x: x[0][1]):
        if not seen[key, rev]:
            report.bad("watch reliable",
                       f"{name}: missed {'delete' if w.value is None else 'put'} {key!r}@{rev} (op {w.op}"
                       f"{'' if w.acked else ', unknown outcome but applied'})")


def check_resumed(original: WatchLog, resumed: WatchLog, upto: int, report: Report) -> None:
    """A watch restarted from revision resumed.start continues exactly where `original` was."""
    a = [(e.type, e.key, e.kv) for e in original.events if resumed.start <= e.kv.mod <= upto]
    b = [(e.type, e.key, e.kv) for e in resumed.events if e.kv.mod <= upto]
    report.figures["resumed events checked"] += len(b)
    if a != b:
        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        report.bad("watch resumable",
                   f"watch {resumed.name} (from rev {resumed.start}) differs from {original.name} at event "
                   f"{first}: {a[first:first + 2]} vs {b[first:first + 2]} ({len(a)} vs {len(b)} events)")
