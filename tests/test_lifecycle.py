"""kubefabric.lifecycle.cancel_and_wait: a background task that lost a cancel still ends."""
from __future__ import annotations

import asyncio

from kubefabric.lifecycle import cancel_and_wait


def test_cancel_and_wait_ends_a_task_that_swallowed_one_cancel():
    """Python 3.11's asyncio.wait_for returns a result that is ready instead of raising the
    cancel that arrived with it; a loop around it then runs on. The MariaDB store's close()
    awaited such a task once and hung (seen in CI); awaiting it after one cancel() would hang
    here too (bounded by the timeout)."""
    async def body():
        swallowed = asyncio.Event()

        async def loop_that_lost_its_cancel():
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                swallowed.set()  # as wait_for does when its inner result was ready
            while True:
                await asyncio.sleep(0.05)

        task = asyncio.create_task(loop_that_lost_its_cancel())
        await asyncio.sleep(0)
        task.cancel()
        await swallowed.wait()
        done, _ = await asyncio.wait({task}, timeout=0.3)
        assert not done, "the task should still run: its only cancel was swallowed"
        await asyncio.wait_for(cancel_and_wait(task), 5)
        assert task.cancelled()
    asyncio.run(body())
