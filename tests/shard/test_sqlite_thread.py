"""The SQLite store's own thread for the writer's blocking calls (COMMIT, VACUUM)."""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

from backend_sqlite.store import SqliteStore, _WriteThread


class _RefusingExecutor(concurrent.futures.ThreadPoolExecutor):
    def submit(self, *args, **kwargs):
        raise AssertionError("the loop's executor was used")


def test_commit_runs_on_the_stores_thread_not_the_loops_executor(tmp_path):
    async def main():
        store = SqliteStore(tmp_path)
        await store.open()
        asyncio.get_running_loop().set_default_executor(_RefusingExecutor())
        try:
            cur = await store.begin()
            await cur.execute("upsert_meta", {"name": "probe", "value": 7})
            await store.commit()
            async with store.snapshot() as read:
                assert await read.scalar("meta_value", {"name": "probe"}) == 7
        finally:
            await store.close()
    asyncio.run(main())


def test_a_call_whose_caller_was_cancelled_is_waited_for_and_errors_reach_the_caller():
    async def main():
        thread = _WriteThread()
        names = []

        def slow():
            names.append(threading.current_thread().name)
            time.sleep(0.3)

        started = time.monotonic()
        call = asyncio.ensure_future(thread.run(slow))
        await asyncio.sleep(0.05)
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        await thread.idle()  # the thread still used the connection: wait for it
        assert time.monotonic() - started >= 0.29 and names == ["sqlite-writer"]
        try:
            await thread.run(lambda: 1 / 0)
        except ZeroDivisionError:
            pass
        else:
            raise AssertionError("the call's exception did not reach its caller")
        assert await thread.run(lambda: 42) == 42
        thread.stop()
    asyncio.run(main())
