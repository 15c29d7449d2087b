"""kubefabric.lifecycle: cancel_and_wait ends a background task that lost a cancel; settle_heap
freezes what startup built and still collects garbage cycles made later."""
from __future__ import annotations

import asyncio
import subprocess
import sys

from kubefabric.lifecycle import YOUNG_GENERATION_THRESHOLD, cancel_and_wait


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


SETTLE_CHECK = """
import gc, weakref
from kubefabric.lifecycle import settle_heap
class Node: pass
built = [Node() for _ in range(1000)]
settle_heap()
frozen = gc.get_freeze_count()
node = Node(); node.self = node          # a garbage cycle made after start-up
gone = weakref.ref(node); del node
gc.collect()
print(frozen, gc.get_threshold()[0], gone() is None)
"""


def test_settle_heap_freezes_startup_objects_and_still_collects_cycles():
    """In a process of its own: gc.freeze() is process-wide and would reach the test runner."""
    out = subprocess.run([sys.executable, "-c", SETTLE_CHECK], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert int(out[0]) >= 1000  # at least the objects built before it
    assert int(out[1]) == YOUNG_GENERATION_THRESHOLD
    assert out[2] == "True"
