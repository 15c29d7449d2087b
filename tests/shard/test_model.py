"""Model-based test of a shard: hypothesis runs random sequences of puts, delete ranges, txns with
compares, ranges (at the head and at random past, compacted or future revisions), physical
compactions, lease grants and revokes, clock syncs and restarts against one Shard, and the
in-memory model of etcd's MVCC store (harness.shard.model.Model) predicts every response: kvs, count, more,
deleted, prev_kv(s), succeeded, header revision and the COMPACTED / FUTURE_REV / lease errors.
After every step, the log table holds exactly the rows compaction must keep, and the shard's
history equals what its listener received (and the model's events, prev_kv aside: that is
test_conformance.py::test_event_prev_kv_is_the_key_before_the_txn).

Budget: CI runs 40 sequences of up to 30 steps, derandomized (the same sequences every run), and
reports a failure as found, unshrunk (each replay reopens a store: shrinking can take minutes).
KUBEFABRIC_SHRINK=1 shrinks it to a minimal sequence. A soak explores new random sequences for
much longer, and shrinks what it finds:

    KUBEFABRIC_SOAK=1 uv run pytest tests/shard/test_model.py
    (optional: KUBEFABRIC_SOAK_EXAMPLES=5000, KUBEFABRIC_SOAK_STEPS=100)
"""
from __future__ import annotations

import asyncio
import itertools
import os

import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from kubefabric.etcd.errors import EtcdError
from kubefabric.etcd.keyrange import EVERY_KEY
from kubefabric.shard.core import Shard
from harness.shard.gen import LEASES, Draw, gen_delete, gen_put, gen_range, gen_txn
from harness.shard.kit import Recorder, check_request, expect, head, log_rows, outcome, show, without_prev
from harness.shard.model import Model

SOAK = os.environ.get("KUBEFABRIC_SOAK") == "1"
SHRINK = SOAK or os.environ.get("KUBEFABRIC_SHRINK") == "1"
SETTINGS = settings(
    max_examples=int(os.environ.get("KUBEFABRIC_SOAK_EXAMPLES", 2000)) if SOAK else 40,
    stateful_step_count=int(os.environ.get("KUBEFABRIC_SOAK_STEPS", 100)) if SOAK else 30,
    deadline=None,
    derandomize=not SOAK,
    phases=[Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if SHRINK else []),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
_names = itertools.count()


class ShardMachine(RuleBasedStateMachine):
    def __init__(self, store_factory):
        super().__init__()
        self.factory = store_factory
        self.name = f"machine-{next(_names)}"
        self.runner = asyncio.Runner()
        self.model = Model()
        self.rec = Recorder()
        self.synced = False  # a sync may move the clock floor: a restart may then jump ahead
        self.shard = None
        self._open()
        for lease_id in LEASES[:2]:  # lease 3 starts unknown
            self.lease_grant(lease_id)

    def _run(self, coro):
        return self.runner.run(coro)

    def _open(self) -> None:
        self.shard = Shard(self.factory(self.name))
        self.shard.listeners.append(self.rec)
        self._run(self.shard.open())

    def teardown(self) -> None:
        try:
            if self.shard is not None:
                self._run(self.shard.close())
        finally:
            self.runner.close()
            self.factory.drop(self.name)

    def _check(self, req) -> None:
        self._note(type(req).__name__, self._run(check_request(self.shard, self.model, req)))

    @staticmethod
    def _note(what: str, result) -> None:
        """Counted by --hypothesis-show-statistics: what the sequences exercised."""
        event(f"{what}: {result.message if isinstance(result, EtcdError) else 'ok'}")

    # ---- KV ----

    @rule(data=st.data())
    def put(self, data):
        self._check(gen_put(Draw(data)))

    @rule(data=st.data())
    def delete_range(self, data):
        self._check(gen_delete(Draw(data)))

    @rule(data=st.data())
    def txn(self, data):
        self._check(gen_txn(Draw(data), self.model))

    @rule(data=st.data())
    def range(self, data):
        self._check(gen_range(Draw(data), self.model))

    # ---- compaction, leases, clock, restarts ----

    @rule(data=st.data())
    def compact(self, data):
        m = self.model
        rev = Draw(data).integer(max(1, m.compacted - 1), m.head + 1)  # may be COMPACTED or FUTURE_REV
        actual = self._run(outcome(self.shard.compact(rev, physical=True)))
        assert show(actual) == show(expect(m.compact, rev)), f"compact {rev}"
        self._note("compact", actual)

    @rule(lease_id=st.sampled_from(LEASES))
    def lease_grant(self, lease_id):
        actual = self._run(outcome(self.shard.lease_grant(lease_id, 3600)))
        if isinstance(actual, tuple):
            assert actual == (lease_id, 3600)
            actual = lease_id
        assert show(actual) == show(expect(self.model.lease_grant, lease_id)), f"grant {lease_id}"

    @rule(lease_id=st.sampled_from(LEASES))
    def lease_revoke(self, lease_id):
        actual = self._run(outcome(self.shard.lease_revoke(lease_id)))
        assert show(actual) == show(expect(self.model.lease_revoke, lease_id)), f"revoke {lease_id}"
        self._note("lease revoke", actual)

    @rule(ahead=st.integers(0, 5))
    def sync(self, ahead):
        rev = self.model.head + ahead
        assert self._run(self.shard.sync(rev)) == self.model.sync(rev)
        self.synced |= ahead > 0

    @rule()
    def restart(self):
        self._run(self.shard.close())
        self.shard = None
        self._open()
        rev = self._run(head(self.shard))
        if self.synced:  # a synced clock resumes at its persisted floor, never below
            assert rev >= self.model.head
            self.model.head = rev
        else:
            assert rev == self.model.head, "revision changed across a restart"

    # ---- after every step ----

    @invariant()
    def log_keeps_exactly_the_retained_rows(self):
        assert self._run(log_rows(self.shard.store)) == self.model.log_rows()

    @invariant()
    def history_is_what_the_listener_saw(self):
        m = self.model
        lo = max(1, m.compacted + 1)
        got = self._run(self.shard.history(EVERY_KEY, lo, m.head))
        assert show(got) == show(self.rec.events(lo, m.head))
        assert show(without_prev(got)) == show(without_prev(m.history(lo, m.head)))
        assert not self.rec.problems, self.rec.problems


@pytest.mark.timeout(0 if SOAK else 600)  # shrinking alone may take Hypothesis' 5-minute limit
def test_shard_matches_the_model(store_factory):
    run_state_machine_as_test(lambda: ShardMachine(store_factory), settings=SETTINGS)
