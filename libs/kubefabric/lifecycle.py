"""Process lifecycle shared by every service."""
from __future__ import annotations

import asyncio
import gc
import signal
from typing import Awaitable, Callable


# The collector's young generation is collected after this many new container objects (3.11's
# default: 700). Every request allocates a few dozen (coroutines, frames, futures, rows) that
# die with it; at 700 a server under load collected its young generation every ~15 requests.
YOUNG_GENERATION_THRESHOLD = 20_000


def settle_heap() -> None:
    """Call once a service serves. Everything built until now (imported modules, the server,
    the statement caches) lives as long as the process: gc.freeze() moves it out of the
    collector's generations, so no later collection walks it again, and the young generation
    is collected less often (YOUNG_GENERATION_THRESHOLD). Garbage cycles are still collected:
    later, and over far fewer objects."""
    gc.collect()  # what is garbage now is freed, not frozen
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, older, oldest)


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
