"""Command-line flags that can also come from KUBEFABRIC_* environment variables, checked
before anything starts.

A flag `--data-dir` reads KUBEFABRIC_DATA_DIR when not given on the command line; the command
line wins. `--help` shows each flag's variable and, for checked values, what is accepted.

Every flag's value goes through its `type`, a checker from this module (Count, Duration, Bool,
Choice, HostPort, URLs, Endpoints) or plain text; a value it refuses, from the command line or the
environment, stops the command at argument parsing with ONE line naming the flag (and the
variable) and exit status 2, before logging is set up or any port, file or database is touched
(`FlagParser`). Checks that need several flags at once stay with the command.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\Z")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class FlagParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block) and exit with status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class IntermixedParser(FlagParser):
    """Options and positionals in any order (`check FILE --against OLD KEY...`): argparse's
    plain parsing stops filling `KEY...` at the first option. Only for parsers whose positionals
    are plain (no subcommands of their own)."""

    _inside = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inside:  # parse_known_intermixed_args calls back in here
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def duration(text: str) -> float:
    """Seconds from '500ms', '30s', '10m', '1h' or a bare number of seconds."""
    m = _DURATION.match(str(text).strip())
    if not m:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 500ms, 30s, 10m, 1h")
    return float(m[1]) * _UNITS[m[2]]


def parse_bool(text: str) -> bool:
    """Lenient (tests and scripts): anything but the true words is False. Flags use Bool."""
    return str(text).lower() in _TRUE


class Count:
    """An integer from `minimum` to `maximum` (inclusive); `zero` explains what 0 means when
    0 is below the minimum's usual meaning (e.g. "etcd's default")."""

    def __init__(self, minimum: int = 0, maximum: int = 2 ** 63 - 1, zero: str = ""):
        self.minimum, self.maximum, self.zero = minimum, maximum, zero
        self.__name__ = "count"

    def __call__(self, text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not self.minimum <= value <= self.maximum:
            raise argparse.ArgumentTypeError(f"{value} is out of range: {self.describe()}")
        return value

    def describe(self) -> str:
        if self.maximum == 2 ** 63 - 1:
            return f"a whole number, at least {self.minimum}"
        return f"a whole number from {self.minimum} to {self.maximum}"


class Duration:
    """A duration (see `duration`) of at least `minimum` seconds and at most `maximum` (if
    given); positive=True: more than 0."""

    def __init__(self, minimum: float = 0.0, positive: bool = False,
                 maximum: float | None = None):
        self.minimum, self.positive, self.maximum = minimum, positive, maximum
        self.__name__ = "duration"

    def __call__(self, text: str) -> float:
        value = duration(text)
        if self.positive and value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 (e.g. 30s)")
        if value < self.minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is shorter than {self.minimum:g}s")
        if self.maximum is not None and value > self.maximum:
            raise argparse.ArgumentTypeError(f"{text!r} is longer than {self.maximum:g}s")
        return value

    def describe(self) -> str:
        return "a duration such as 500ms, 30s, 10m, 1h" + (" (more than 0)" if self.positive else "")


class Bool:
    __name__ = "boolean"

    def __call__(self, text: str) -> bool:
        word = str(text).strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise argparse.ArgumentTypeError(f"{text!r} is not a boolean: use true or false")

    def describe(self) -> str:
        return "true or false"


class Choice:
    def __init__(self, *values: str):
        self.values = values
        self.__name__ = "choice"

    def __call__(self, text: str) -> str:
        if text not in self.values:
            raise argparse.ArgumentTypeError(f"invalid choice {text!r} (choose from "
                                             f"{', '.join(self.values)})")
        return text


def parse_host_port(text: str, host_required: bool = True,
                    any_port: bool = False) -> tuple[str, int]:
    """(host, port) of 'host:port', '[v6]:port' (host without brackets); ValueError says why.
    host: a DNS name or an IP address; port 1..65535, or 0 with any_port (a listening socket:
    the system picks a free port)."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{text!r} is not host:port ([IPv6]:port for an IPv6 address)")
        port = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"{text!r} is not host:port (a port is required)")
        if ":" in host:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, [{host}]:{port}")
        if host and not _HOSTNAME.match(host):
            raise ValueError(f"{text!r}: {host!r} is not a host name or IP address")
    if not host and host_required:
        raise ValueError(f"{text!r} has no host")
    lowest = 0 if any_port else 1
    if not port.isdigit() or not lowest <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from {lowest} to 65535")
    return host, int(port)


class HostPort:
    """host:port (also [IPv6]:port); optional: '' is accepted (the feature is off); listen: an
    address to listen on, where port 0 asks the system for a free one."""

    def __init__(self, optional: bool = False, host_required: bool = False, listen: bool = False):
        self.optional, self.host_required, self.listen = optional, host_required, listen
        self.__name__ = "address"

    def __call__(self, text: str) -> str:
        text = str(text).strip()
        if not text and self.optional:
            return ""
        try:
            parse_host_port(text, self.host_required, any_port=self.listen)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return text

    def describe(self) -> str:
        return "host:port" + (", or empty" if self.optional else "")


class URLs:
    """Comma-separated URLs SCHEME://host:port with one of `schemes` (the scheme is required);
    port_required=False: the port may be left out. optional: '' is accepted. listen: URLs to
    listen on, where port 0 asks the system for a free one."""

    def __init__(self, schemes: tuple[str, ...], optional: bool = False, port_required: bool = True,
                 host_required: bool = True, listen: bool = False):
        self.schemes, self.optional, self.listen = schemes, optional, listen
        self.port_required, self.host_required = port_required, host_required
        self.__name__ = "URL list"

    def __call__(self, text: str) -> str:
        text = str(text).strip()
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            if self.optional:
                return ""
            raise argparse.ArgumentTypeError(f"no URL given ({self.example()})")
        for part in parts:
            self.check(part)
        return ",".join(parts)

    def example(self) -> str:
        return " or ".join(f"{s}://host:port" for s in self.schemes)

    def check(self, url: str) -> None:
        scheme, sep, rest = url.partition("://")
        if not sep:
            raise argparse.ArgumentTypeError(f"{url!r} has no scheme: write {self.example()}")
        if scheme not in self.schemes:
            raise argparse.ArgumentTypeError(f"{url!r}: the scheme must be "
                                             f"{' or '.join(s + '://' for s in self.schemes)}")
        try:
            parsed = urlsplit(url)
        except ValueError as err:  # "Invalid IPv6 URL"
            raise argparse.ArgumentTypeError(f"{url!r}: {err}") from None
        if parsed.path not in ("", "/") or parsed.query or parsed.fragment or parsed.username:
            raise argparse.ArgumentTypeError(f"{url!r}: only {self.example()} (no user, path or query)")
        netloc = parsed.netloc
        try:
            if not self.port_required and not netloc.rsplit("]", 1)[-1].count(":"):
                parse_host_port(f"{netloc}:1", self.host_required)  # the host alone
            else:
                parse_host_port(netloc, self.host_required, any_port=self.listen)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"{url!r}: {err}") from None

    def describe(self) -> str:
        return f"comma-separated {self.example()}" + (", or empty" if self.optional else "")


def Endpoints(*schemes: str, optional: bool = True) -> URLs:
    """Comma-separated service endpoints, e.g. grpc://host:port (host and port required)."""
    return URLs(schemes or ("grpc",), optional=optional)


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


class _FromEnv(str):
    """A default taken from the environment: its checker's error names the variable."""
    env = ""


def _checker(flag: Flag):
    """flag.type (and choices) as argparse's `type`: every refusal is an ArgumentTypeError
    whose text argparse prints after 'argument --flag:'."""
    convert = Choice(*flag.choices) if flag.choices else flag.type

    def check(text):
        try:
            value = convert(text)
            if flag.choices and flag.type is not str:
                value = flag.type(value)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
            why = str(err) or f"invalid value {text!r}"
            if isinstance(text, _FromEnv):
                why = f"${text.env}={str(text)!r}: {why}"
            raise argparse.ArgumentTypeError(why) from None
        return value
    check.__name__ = getattr(convert, "__name__", "value")
    check.flag = flag  # type: ignore[attr-defined]  # what the value must be, for --help and tests
    return check


def add_flags(parser: argparse.ArgumentParser, flags: list[Flag]) -> None:
    """Add `flags` to `parser`. Values, from the environment too, are checked when the command
    line is parsed (only the command that runs checks its own)."""
    for f in flags:
        raw = os.environ.get(f.env)
        default: str = f.default
        if raw is not None:
            default = _FromEnv(raw)
            default.env = f.env
        bare = {"nargs": "?", "const": f.type(f.const)} if f.const is not None else {}
        accepted = getattr(f.type, "describe", None)
        hint = f" ({accepted()})" if accepted and not f.choices else ""
        parser.add_argument(f.name, default=default, type=_checker(f), choices=None,
                            metavar=("{" + ",".join(f.choices) + "}") if f.choices else None,
                            help=f"{f.help}{hint} [env {f.env}]", **bare)


def add_command(subparsers, name: str, summary: str, description: str, flags: list[Flag], func,
                formatter_class=argparse.RawDescriptionHelpFormatter, **defaults) -> argparse.ArgumentParser:
    """The subcommand `name` of the kubefabric CLI: `summary` in the list of commands,
    `description` in its --help, its `flags`, and `func(args)` that runs it (its exit code)."""
    p = subparsers.add_parser(name, help=summary, description=description,
                              formatter_class=formatter_class)
    add_flags(p, flags)
    p.set_defaults(func=func, **defaults)
    return p
