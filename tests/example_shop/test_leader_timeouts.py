"""The example operator's leader election when kube-apiserver does not answer (no server here:
a client whose every call times out as lightkube's transport does). A 5,000-order run saw the
operator exit: a renewal raised httpx2.ReadTimeout, which the election did not catch, so the
task died and kopf stopped. Not answering is not losing the lease: the leader keeps trying until
its renew deadline, then steps down by returning; a candidate keeps waiting."""
from __future__ import annotations

import asyncio
import time

import httpx2
import pytest

from shop.leader import LeaderElector


class Unanswered:
    """A lightkube AsyncClient stand-in whose calls time out (read, then pool)."""

    def __init__(self):
        self.calls = 0

    async def get(self, *args, **kwargs):
        self.calls += 1
        raise (httpx2.ReadTimeout if self.calls % 2 else httpx2.PoolTimeout)("timed out")

    replace = create = get


def test_a_leader_whose_renewals_time_out_steps_down_at_its_deadline():
    client = Unanswered()
    elector = LeaderElector(client, "shop", "operator", "me", lease_duration=1.5,
                            renew_deadline=0.6, retry_period=0.1)

    async def body():
        t0 = time.monotonic()
        await asyncio.wait_for(elector.hold(), 5)  # returns (steps down), does not raise
        return time.monotonic() - t0
    held = asyncio.run(body())
    assert 0.6 <= held < 2.0, held
    assert client.calls >= 3  # it kept trying meanwhile


def test_a_candidate_keeps_waiting_while_nothing_answers():
    client = Unanswered()
    elector = LeaderElector(client, "shop", "operator", "me", lease_duration=1.5,
                            renew_deadline=0.6, retry_period=0.1)

    async def body():
        await asyncio.wait_for(elector.acquire(), 0.8)
    with pytest.raises(asyncio.TimeoutError):  # still waiting when the test gives up, not crashed
        asyncio.run(body())
    assert client.calls >= 3
