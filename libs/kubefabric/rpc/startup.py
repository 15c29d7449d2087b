"""How a service process starts: the flags every one has (logging, event loop, shutdown grace,
/metrics), one `StartupError` type, and the runner that turns it into one log line and exit
code 2 (a bad flag, file, address or dependency; never a traceback).

No grpc import here (nor in anything this module imports): the command modules that raise
StartupError run before grpc may load (kubefabric.cli says why).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
from typing import Any, Callable, Coroutine

import uvloop

from kubefabric.config import Duration, Flag, HostPort, URLs
from kubefabric.logs import setup_logging

EXIT_REFUSED = 2  # argparse's code for bad usage: the operator has something to fix


class StartupError(Exception):
    """What stops a service before it serves; the message is one line that names the flag,
    file or address to fix. TLSError, DSNError and BusError are StartupErrors."""


def process_flags(shutdown_grace: str | None = "10s",
                  grace_means: str = "time in-flight requests get to finish on SIGTERM",
                  metrics_address: str | None = None, metrics_note: str = "",
                  otlp: bool = True) -> list[Flag]:
    """--log-format, --log-level, --event-loop, and --shutdown-grace and --metrics-address when
    they have a default (None: the service has no such setting); --otlp-endpoint unless the
    command exports no traces (otlp=False)."""
    flags = [
        Flag("--log-format", "text", "log format: text or json", choices=("text", "json")),
        Flag("--log-level", "info", "log level", choices=("debug", "info", "warning", "error")),
        Flag("--event-loop", "uvloop", "asyncio event loop: uvloop or asyncio",
             choices=("uvloop", "asyncio")),
    ]
    if shutdown_grace is not None:
        flags.append(Flag("--shutdown-grace", shutdown_grace, grace_means, type=Duration()))
    if metrics_address is not None:
        flags.append(Flag("--metrics-address", metrics_address, "host:port to serve Prometheus "
                          f"/metrics on{metrics_note} (empty disables). Traces: the OTEL_* "
                          "environment variables (README, Observe)", type=HostPort(optional=True, listen=True)))
    if otlp:
        flags.append(Flag("--otlp-endpoint", "", "export traces over OTLP/gRPC to this collector, e.g. "
                          "http://otel-collector:4317 (sets OTEL_EXPORTER_OTLP_ENDPOINT; empty: as the "
                          "OTEL_* variables say, off by default; README, Observe)",
                          type=URLs(("http", "https"), optional=True)))
    return flags


def runner(start: Callable[[argparse.Namespace], Coroutine[Any, Any, int]],
           log: logging.Logger) -> Callable[[argparse.Namespace], int]:
    """A command's func: run(args, ...) of the coroutine `start(args)` returns."""
    return lambda args: run(args, lambda: start(args), log)


def run(args: argparse.Namespace, main: Callable[[], Coroutine[Any, Any, int]],
        log: logging.Logger) -> int:
    """Set up logging (--log-format, --log-level), call `main()` (its synchronous checks may
    raise StartupError too) and run the coroutine it returns on --event-loop. A StartupError is
    logged on `log` as one line and gives EXIT_REFUSED; the coroutine's own result is the exit
    code otherwise."""
    setup_logging(args.log_format, args.log_level)
    if endpoint := getattr(args, "otlp_endpoint", ""):
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint  # read by kubefabric.telemetry.tracing
    try:
        coro = main()
        if args.event_loop == "uvloop":
            return uvloop.run(coro)
        return asyncio.run(coro)
    except StartupError as err:
        log.error("%s", err)
        return EXIT_REFUSED
