"""How a service refuses to start: one `StartupError` type and the runner that turns it into
one log line and exit code 2 (a bad flag, file, address or dependency; never a traceback).

No grpc import here (nor in anything this module imports): the command modules that raise
StartupError run before grpc may load (kubefabric.cli says why).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Coroutine

EXIT_REFUSED = 2  # argparse's code for bad usage: the operator has something to fix


class StartupError(Exception):
    """What stops a service before it serves; the message is one line that names the flag,
    file or address to fix. TLSError, DSNError and BusError are StartupErrors."""


def run(main: Callable[[], Coroutine[Any, Any, int]], event_loop: str, log: logging.Logger) -> int:
    """Call `main()` (its synchronous checks may raise StartupError too) and run the coroutine
    it returns on `event_loop` ("uvloop" or "asyncio"). A StartupError is logged on `log` as one
    line and gives EXIT_REFUSED; the coroutine's own result is the exit code otherwise."""
    try:
        coro = main()
        if event_loop == "uvloop":
            import uvloop
            return uvloop.run(coro)
        return asyncio.run(coro)
    except StartupError as err:
        log.error("%s", err)
        return EXIT_REFUSED
