"""Calling a trigger's function: one HTTP request per attempt, retried with exponential
backoff and jitter (honouring Retry-After on 429 and 503) until delivery.retries is used up.

Invariants:
- An attempt succeeds on a 2xx answer and only then; anything else (another status, a refused
  connection, a timeout, a request that cannot be built) is a failed attempt.
- Between attempts the wait is min(max, initial * multiplier^n), spread by jitter over
  [wait/2, wait]; a Retry-After the receiver sent makes it at least that long (at most
  RETRY_AFTER_CAP). The caller's cancellation (lease lost, shutdown) stops at once.
"""
from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import ssl
import time
from dataclasses import dataclass

import aiohttp

from .request import HTTPRequest, RequestError

log = logging.getLogger("kubefabric.trigger.delivery")

RETRY_AFTER_CAP = 600.0
RESPONSE_SNIPPET = 200


@dataclass
class Outcome:
    delivered: bool
    attempts: int
    status: int = 0            # the last HTTP status (0: no answer)
    error: str = ""            # why the last attempt failed


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(when.timestamp() - time.time(), RETRY_AFTER_CAP))


def backoff_delay(attempt: int, initial: float, maximum: float, multiplier: float) -> float:
    """The wait after failed attempt number `attempt` (1-based), jittered."""
    wait = min(maximum, initial * multiplier ** (attempt - 1))
    return wait / 2 + random.random() * wait / 2


class Caller:
    """One aiohttp session per trigger (connections kept alive; TLS from the trigger's
    auth.tls Secrets). Rebuilt by the pipeline when those Secrets change."""

    def __init__(self, ssl_context: ssl.SSLContext | bool | None, limit: int):
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(limit, 1) * 2, ssl=ssl_context,
                                           enable_cleanup_closed=True),
            auto_decompress=False)

    async def attempt(self, req: HTTPRequest, timeout: float) -> tuple[int, str, float | None]:
        """(status, error, retry_after) of one attempt; status 0 when there was no answer."""
        try:
            async with self.session.request(req.method, req.url, data=req.body, headers=req.headers,
                                            timeout=aiohttp.ClientTimeout(total=timeout),
                                            allow_redirects=False) as resp:
                text = await resp.read()
                if 200 <= resp.status < 300:
                    return resp.status, "", None
                ra = retry_after(resp.headers.get("Retry-After")) if resp.status in (429, 503) else None
                snippet = text[:RESPONSE_SNIPPET].decode(errors="replace").strip()
                reason = f"HTTP {resp.status} from {req.url}" + (f": {snippet}" if snippet else "")
                return resp.status, reason, ra
        except asyncio.TimeoutError:
            return 0, f"no answer from {req.url} within {timeout:g}s", None
        except aiohttp.InvalidURL:
            return 0, f"invalid URL {req.url!r}", None
        except aiohttp.ClientConnectorError as err:
            return 0, f"cannot connect to {req.url}: {err.os_error.strerror if err.os_error and err.os_error.strerror else err}", None
        except aiohttp.ClientError as err:
            return 0, f"{req.url}: {type(err).__name__}: {err}", None

    async def close(self) -> None:
        await self.session.close()


async def deliver(caller: Caller, build, timeout: float, retries: int, backoff,
                  on_attempt=None) -> Outcome:
    """Up to 1 + retries attempts. build(): the request (re-built per attempt, so a rotated
    Secret is used by the next attempt); on_attempt(status, error, seconds): metrics hook."""
    attempts = retries + 1
    status, error = 0, ""
    for n in range(1, attempts + 1):
        started = time.monotonic()
        ra = None
        try:
            req = build()
        except RequestError as err:
            status, error = 0, str(err)
        else:
            status, error, ra = await caller.attempt(req, timeout)
        if on_attempt is not None:
            on_attempt(status, error, time.monotonic() - started)
        if not error:
            return Outcome(True, n, status)
        if n < attempts:
            wait = backoff_delay(n, backoff.initial, backoff.max, backoff.multiplier)
            if ra is not None:
                wait = max(wait, ra)
            log.debug("attempt %d/%d failed (%s); next in %.2fs", n, attempts, error, wait)
            await asyncio.sleep(wait)
    return Outcome(False, attempts, status, error)
