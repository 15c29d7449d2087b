"""Command-line flags that can also come from KUBEFABRIC_* environment variables.

A flag `--data-dir` reads KUBEFABRIC_DATA_DIR when not given on the command line; the command
line wins. `--help` shows each flag's variable.
"""
from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from typing import Callable

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration(text: str) -> float:
    """Seconds from '500ms', '30s', '10m', '1h' or a bare number of seconds."""
    m = _DURATION.match(str(text).strip())
    if not m:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 500ms, 30s, 10m, 1h")
    return float(m[1]) * _UNITS[m[2]]


def parse_bool(text: str) -> bool:
    return str(text).lower() in ("1", "true", "yes", "on")


@dataclass
class Flag:
    name: str
    default: str
    help: str
    type: Callable = str
    choices: tuple[str, ...] | None = None
    const: str | None = None  # value when the flag is given bare (`--client-cert-auth`), as in Go

    @property
    def env(self) -> str:
        return "KUBEFABRIC_" + self.name.lstrip("-").upper().replace("-", "_")


def add_flags(parser: argparse.ArgumentParser, flags: list[Flag]) -> None:
    for f in flags:
        raw = os.environ.get(f.env, f.default)
        try:
            default = f.type(raw)
        except (ValueError, argparse.ArgumentTypeError) as err:
            parser.error(f"${f.env}: {err}")
        if f.choices and default not in f.choices:
            parser.error(f"${f.env}: invalid choice {raw!r} (choose from {', '.join(f.choices)})")
        bare = {"nargs": "?", "const": f.type(f.const)} if f.const is not None else {}
        parser.add_argument(f.name, default=default, type=f.type, choices=f.choices,
                            help=f"{f.help} [env {f.env}]", **bare)
