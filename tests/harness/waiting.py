"""Polling until something is true, for tests and scenarios that drive real servers."""
from __future__ import annotations

import subprocess
import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """The first truthy value of `predicate()`, polled every `interval` seconds; AssertionError
    naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
    return value


def wait_logged(text: str, log: Callable[[], str], proc: subprocess.Popen, who: str,
                timeout: float) -> str:
    """Until `text` is in `log()` (which is returned); fails as soon as `proc` (`who`) exits."""
    deadline = time.monotonic() + timeout
    while text not in (out := log()):
        assert proc.poll() is None, f"{who} exited ({proc.returncode}):\n{out[-3000:]}"
        assert time.monotonic() < deadline, f"{text!r} not logged by {who} in {timeout}s:\n{out[-3000:]}"
        time.sleep(0.1)
    return out
