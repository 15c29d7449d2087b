"""Every flag of every command is checked before anything starts (issue 14, item 5).

One validation layer (kubefabric.config): each flag's `type` is a checker (Count, Duration, Bool,
Choice, HostPort, URLs/Endpoints) or plain text. For every command installed and every flag with a
checker, values it must refuse are given on the command line and as KUBEFABRIC_* variables: the
command must stop at argument parsing with exit status 2 and one line naming the flag (and the
variable). A coverage check makes sure numeric and address flags are never plain text or a bare
int, so a new flag cannot slip past. A few refusals also run as real processes, as a user would:
nothing listens, nothing is logged beyond the one line.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

import pytest

from kubefabric import cli
from kubefabric.config import Bool, Choice, Count, Duration, HostPort, URLs

def subcommands(parser, prefix: tuple[str, ...] = ()):
    """(words, parser) of every command and nested subcommand, e.g. ("trigger", "dlq", "list")."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from subcommands(sub, (*prefix, name))


PARSER = cli.build_parser()
COMMANDS = {" ".join(words): sub for words, sub in subcommands(PARSER)}
# Flags whose value is text by nature: files, names, DSNs (migrate --shard-dsn: NAME=DSN pairs), TLS names, or checked with other
# flags by the command itself (--auto-compaction-retention depends on --auto-compaction-mode,
# --cipher-suites and --tls-min-version on grpc's TLS library: test_shutdown, tests/security).
TEXT = {"--data-dir", "--topology", "--name", "--dsn", "--shard-dsn", "--shard-name", "--cert-file", "--key-file",
        "--trusted-ca-file", "--shard-ca-file", "--shard-cert-file", "--shard-key-file",
        "--shard-server-name", "--nats-ca-file", "--nats-cert-file", "--nats-key-file",
        "--cipher-suites", "--tls-min-version", "--auto-compaction-retention",
        "--service-url-template", "--authorization-always-allow-paths"}
# names that say "number" or "address": such a flag must have a checker
NUMERIC_OR_ADDRESS = ("bytes", "size", "ops", "-per-", "interval", "timeout", "grace", "retention",
                      "address", "url", "shard", "watch-hub", "commit", "ttl", "endpoints",
                      "router", "replicas", "priority")
CHECKERS = (Count, Duration, Bool, Choice, HostPort, URLs)


def flags():
    """(command, option string, checker) of every flag with a checker, every command."""
    for name, sub in sorted(COMMANDS.items()):
        for action in sub._actions:
            flag = getattr(action.type, "flag", None)
            if flag is not None and (flag.type is not str or flag.choices):
                yield name, flag.name, (action.type, flag)


def bad_values(flag) -> list[str]:
    t = flag.type
    if flag.choices:
        return ["nope", flag.choices[0].upper() + "x"]
    if isinstance(t, Count):
        out = ["abc", "1.5", ""]
        if t.minimum > -(2 ** 63):
            out.append(str(t.minimum - 1))
        if t.maximum < 2 ** 63 - 1:
            out.append(str(t.maximum + 1))
        return out
    if isinstance(t, Duration):
        return ["soon", "5d", "1s5"] + (["0"] if t.positive else [])
    if isinstance(t, Bool):
        return ["maybe", "2"]
    if isinstance(t, HostPort):
        out = ["nope", "127.0.0.1:65536", "127.0.0.1:port", "::1:80", "[::1]", "bad host:1"]
        if not t.listen:  # a listening address may ask for any free port
            out.append("127.0.0.1:0")
        if t.host_required:
            out.append(":2390")
        return out + ([] if t.optional else [""])
    if isinstance(t, URLs):
        scheme = t.schemes[0]
        out = ["127.0.0.1:2379", f"ftp://127.0.0.1:1", f"{scheme}://127.0.0.1:70000",
               f"{scheme}://127.0.0.1:1/path", f"{scheme}://[::1:1", f"{scheme}://bad host:1",
               f"{scheme}://127.0.0.1:1,127.0.0.1:2"]
        if not t.listen:
            out.append(f"{scheme}://127.0.0.1:0")
        if t.port_required:
            out.append(f"{scheme}://127.0.0.1")
        if "http" in t.schemes:
            out.append("grpc://127.0.0.1:1")
        else:
            out.append("http://127.0.0.1:1")
        return out + ([] if t.optional else [""])
    raise AssertionError(f"no bad values known for {flag.name}'s {t!r}")


CASES = [(cmd, name, value) for cmd, name, (_, flag) in flags() for value in bad_values(flag)]
# nested commands with their parent's flags would repeat them: their own flags only once
CASES = list(dict.fromkeys(CASES))


def parse(argv: list[str], capsys, env: dict | None = None) -> tuple[int, str]:
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with pytest.raises(SystemExit) as exited:
            cli.build_parser().parse_args(argv)  # a fresh parser: defaults read the environment
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    out = capsys.readouterr()
    return exited.value.code, out.out + out.err


def assert_one_line(code: int, output: str, *names: str) -> None:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert code == 2, f"exit status {code}, want 2: {output}"
    assert len(lines) == 1, f"want one line, got {len(lines)}:\n{output}"
    for name in names:
        assert name in lines[0], f"the error does not name {name}: {lines[0]}"


def test_every_numeric_and_address_flag_is_checked():
    assert {"serve", "backend-sqlite", "backend-pg", "backend-mysql", "watch-hub"} <= set(COMMANDS)
    unchecked = []
    for name, sub in sorted(COMMANDS.items()):
        for action in sub._actions:
            opt = next((o for o in action.option_strings if o.startswith("--")), None)
            if opt is None or opt == "--help" or opt in TEXT or action.type is None:
                continue
            flag = getattr(action.type, "flag", None)
            if flag is None:
                continue  # not a Flag (e.g. topology check's own arguments)
            if flag.choices or isinstance(flag.type, CHECKERS):
                continue
            if flag.type is not str or (opt not in TEXT and any(w in opt for w in NUMERIC_OR_ADDRESS)):
                unchecked.append(f"{name} {opt} ({flag.type!r})")
    assert not unchecked, f"numeric or address flags without a checker: {unchecked}"
    assert len(CASES) > 200, len(CASES)


@pytest.mark.parametrize("command, flag, value", CASES)
def test_bad_value_is_refused_on_one_line(command, flag, value, capsys):
    code, output = parse([*command.split(), f"{flag}={value}"], capsys)
    assert_one_line(code, output, flag)
    env = "KUBEFABRIC_" + flag.lstrip("-").upper().replace("-", "_")
    code, output = parse(command.split(), capsys, {env: value})
    assert_one_line(code, output, flag, env)


# commands that run with no argument at all (no required subcommand or positional)
LEAVES = [name for name, sub in COMMANDS.items()
          if not any(not a.option_strings and a.required for a in sub._actions)]


@pytest.mark.parametrize("command", LEAVES)
def test_defaults_and_good_values_parse(command):
    args = cli.build_parser().parse_args(command.split())  # every default passes its own check
    assert args.command == command.split()[0]
    good = {"--metrics-address": ["", "[::1]:2381", "0.0.0.0:1", "localhost:65535"],
            "--listen-client-urls": ["http://127.0.0.1:2379,https://[::1]:2379", "http://localhost:1",
                                     "http://127.0.0.1:0"],
            "--shard": ["grpc://a:1,grpc://b-2.example:65535", ""],
            "--nats-url": ["nats://h", "tls://h:4222,nats://[::1]:1"],
            "--listen-address": [":2390", "[::]:2390", "127.0.0.1:2390", "127.0.0.1:0"],
            "--shutdown-grace": ["0", "1.5", "500ms", "2h"],
            "--group-commit": ["false", "ON", "0"]}
    for action in COMMANDS[command]._actions:
        for opt in action.option_strings:
            for value in good.get(opt, []):
                if getattr(action.type, "flag", None) is not None:
                    cli.build_parser().parse_args([*command.split(), f"{opt}={value}"])


def test_compaction_retention_is_checked_before_start(tmp_path):
    code, output, _ = run(tmp_path, ["serve", "--auto-compaction-mode", "revision",
                                     "--auto-compaction-retention", "1h"])
    assert code == 2 and "--auto-compaction-retention" in output, output


# ---- as a user runs them: real processes ----

def run(tmp_path, argv: list[str], timeout: float = 120.0) -> tuple[int | None, str, float]:
    """(exit status or None if still running after `timeout`, output, seconds)."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "kubefabric.cli", *argv], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return None, out, time.monotonic() - started
    return proc.returncode, out, time.monotonic() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv, flag", [
    (["serve", "--max-request-bytes", "-5"], "--max-request-bytes"),
    (["serve", "--max-txn-ops", "-3"], "--max-txn-ops"),
    (["serve", "--max-watchers-per-stream", "-1"], "--max-watchers-per-stream"),
    (["serve", "--metrics-address", "nope"], "--metrics-address"),
    (["serve", "--metrics-address", "127.0.0.1:65536"], "--metrics-address"),
    (["serve", "--listen-client-urls", "127.0.0.1:{port}"], "--listen-client-urls"),
    (["serve", "--shard", "http://127.0.0.1:{port}"], "--shard"),
    (["backend-sqlite", "--dsn", "sqlite://shard", "--metrics-address", "nope"], "--metrics-address"),
    (["backend-sqlite", "--dsn", "sqlite://shard", "--listen-address", "127.0.0.1:99999"], "--listen-address"),
    (["watch-hub", "--nats-url", "nats://127.0.0.1:1", "--shard", "grpc://127.0.0.1:1",
      "--metrics-address", "127.0.0.1:70000"], "--metrics-address"),
])
def test_refused_before_anything_starts(tmp_path, argv, flag):
    port = free_port()
    argv = [a.format(port=port) for a in argv]
    if argv[0] == "serve" and "--listen-client-urls" not in argv:
        argv += ["--listen-client-urls", f"http://127.0.0.1:{port}"]
    code, output, took = run(tmp_path, argv)
    assert_one_line(code, output, flag)
    assert "Traceback" not in output and "serving" not in output, output
    assert not any(tmp_path.iterdir()), f"it created files: {list(tmp_path.iterdir())}"


def test_listing_the_commands_loads_no_grpc():
    """Every command's module is loaded to build the command line; none may load grpc there:
    `serve --cipher-suites` configures grpc's TLS before grpc is loaded (a command that imported
    it early broke that flag for every command)."""
    probe = ("import sys; from kubefabric import cli; cli.build_parser(); "
             "print(sorted(m for m in sys.modules if m == 'grpc' or m.startswith('grpc.')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"grpc loaded while building the command line: {out.stdout}"
