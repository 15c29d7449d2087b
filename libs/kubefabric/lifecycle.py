"""Process lifecycle shared by every service."""
from __future__ import annotations

import asyncio
import signal
from typing import Awaitable, Callable


async def until_terminated() -> None:
    """Return on the first SIGTERM or SIGINT (Ctrl-C); the caller then shuts down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def cancel_and_wait(task: asyncio.Task, every_s: float = 0.1) -> None:
    """Cancel `task` and wait until it has ended, cancelling it again while it runs on.

    A single cancel() can be lost: on Python 3.11 asyncio.wait_for (which aiomysql's connect
    uses) returns the inner result instead of raising when the cancel arrives just as that
    result is ready, and a background loop then goes on forever. Awaiting such a task once
    hung a store's close(); repeating the cancel ends it at its next await."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=every_s)


async def every(seconds: float, step: Callable[[], Awaitable[None]],
                failed: Callable[[Exception], None] | None = None) -> None:
    """Await `step()` every `seconds` (the first after one period) until cancelled. With `failed`,
    a step's exception is handed to it and the next period tries again; without, it ends the loop."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await step()
        except Exception as exc:
            if failed is None:
                raise
            failed(exc)


def start_every(seconds: float, step: Callable[[], Awaitable[None]],
                failed: Callable[[Exception], None] | None, name: str) -> asyncio.Task:
    """every(seconds, step, failed) as a background task named `name` (cancel it to stop)."""
    return asyncio.get_running_loop().create_task(every(seconds, step, failed), name=name)
