"""Process lifecycle shared by every service."""
from __future__ import annotations

import asyncio
import signal


async def until_terminated() -> None:
    """Return on the first SIGTERM or SIGINT (Ctrl-C); the caller then shuts down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
