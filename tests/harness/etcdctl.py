"""Run Debian's etcdctl (API v3) against a test server and turn its output into comparable values.

Normalisation (the same on both sides, nothing else is touched):
- the server's own endpoint reads ENDPOINT;
- lease IDs etcdctl prints (hex, see HEX_ID, or JSON numbers under ID/id/lease) are renamed lease#N
  by order of first appearance, through the differential fixture's `record.leases`; IDs the test
  typed itself (KNOWN) stay as they are;
- member IDs (told by the test through `members`) read MEMBER; JSON headers and `-w fields` lose
  cluster_id and member_id, and "took" durations are dropped;
- etcdctl's own client-side log lines on stderr (JSON with a timestamp and a random target) are
  reduced to level, msg and error; those about its own calls canceled by Ctrl-C are dropped.
"""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time

from harness.normalise import DROP, rewrite
from harness.stream import NoResponse

KNOWN = {0, 0x1234}
IDENTITY = {"cluster_id", "member_id", "leader", "took"}
# etcdctl prints lease IDs as %016x, lock and election keys as %x: 16 hex digits, or 8 to 15
# with at least one letter (so plain numbers such as revisions and TTLs are left alone).
HEX_ID = re.compile(r"\b(?:[0-9a-f]{16}|(?=[0-9]*[a-f])[0-9a-f]{8,15})\b")


def etcdctl_binary() -> str:
    path = os.environ.get("KUBEFABRIC_TEST_ETCDCTL") or shutil.which("etcdctl")
    if not path:
        raise RuntimeError("etcdctl is not installed: apt-get install etcd-client (or set KUBEFABRIC_TEST_ETCDCTL)")
    return path


class Etcdctl:
    def __init__(self, endpoint: str, leases):
        self.endpoint = endpoint
        self.leases = leases
        self.members: set[int] = set()
        self.started: list[Background] = []
        self.env = {**os.environ, "ETCDCTL_API": "3"}

    def argv(self, args) -> list[str]:
        return [etcdctl_binary(), f"--endpoints={self.endpoint}", "--command-timeout=10s", *args]

    def run(self, *args: str, stdin: str | None = None, timeout: float = 30.0) -> dict:
        """rc, stdout and stderr of one etcdctl command, normalised; JSON output parsed."""
        p = subprocess.run(self.argv(args), input=stdin or "", capture_output=True, text=True,
                           env=self.env, timeout=timeout)
        return {"rc": p.returncode, "stdout": self.output(p.stdout), "stderr": self.errors(p.stderr)}

    def lease_hex(self, out: dict, line: int = 0, field: int = 1) -> str:
        """The real hex lease ID behind a lease#N that `run` printed (for the next command)."""
        name = out["stdout"].splitlines()[line].split()[field]
        return next(f"{i:016x}" for i, n in self.leases.names.items() if n == name)

    # -- normalisation ---------------------------------------------------------------------------

    def text(self, s: str) -> str:
        s = s.replace(self.endpoint, "ENDPOINT")
        for member in self.members:
            s = re.sub(rf"\b{member:x}\b", "MEMBER", s)
        s = re.sub(r"took = [^\s,]+", "took = T", s)
        s = re.sub(r'"(ClusterID|MemberID)" : \d+', r'"\1" : ID', s)
        return HEX_ID.sub(lambda m: self.hex_name(m.group()), s)

    def hex_name(self, text: str) -> str:
        name = self.name(int(text, 16))
        return text if isinstance(name, int) else name

    def name(self, lease_id: int):
        if lease_id in self.members:
            return "MEMBER"
        return lease_id if lease_id in KNOWN else self.leases.name(lease_id)

    def output(self, s: str):
        lines = s.splitlines()
        if lines and all(_is_json(line) for line in lines):
            return [self.scrub(json.loads(line.replace(self.endpoint, "ENDPOINT"))) for line in lines]
        return self.text(s)

    def scrub(self, data):
        def entry(k, v, parent):
            if k in IDENTITY:
                return DROP
            if k in ("ID", "id", "lease") and isinstance(v, int) and "peerURLs" not in parent:
                return self.name(v)
            if k == "ID" and "peerURLs" in parent:
                return DROP   # Member.ID
            return v
        return rewrite(data, entry, lambda v: self.text(v) if isinstance(v, str) else v)

    def errors(self, s: str) -> list:
        out = []
        for line in s.splitlines():
            if _is_json(line):
                entry = json.loads(line)
                if "context canceled" in str(entry.get("error")):
                    continue   # etcdctl logging its own calls cut short by Ctrl-C: timing, not the server
                out.append({k: self.text(str(entry[k])) for k in ("level", "msg", "error") if k in entry})
            else:
                out.append(self.text(line))
        return out

    def background(self, *args: str) -> "Background":
        """A long-running etcdctl command (watch, lock, elect) read line by line."""
        proc = Background(self, self.argv(args))
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        """Kill whatever background command is still running (a failed step must not leak it)."""
        for proc in self.started:
            proc.stop()

    def watch(self, *args: str) -> "Background":
        return self.background("watch", *args)


def without(data, *keys):
    """A copy of parsed JSON output without the given keys (server measurements), at any depth."""
    if isinstance(data, dict):
        return {k: without(v, *keys) for k, v in data.items() if k not in keys}
    if isinstance(data, list):
        return [without(v, *keys) for v in data]
    return data


def _is_json(line: str) -> bool:
    if not line.startswith(("{", "[")):
        return False
    try:
        json.loads(line)
        return True
    except ValueError:
        return False


class Background:
    """A long-running etcdctl: stdout lines are collected by a thread until it ends or stop()."""

    def __init__(self, ctl: Etcdctl, argv: list[str]):
        self.ctl = ctl
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=ctl.env)
        self.lines: queue.Queue = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def read_until(self, last, timeout: float = 10.0) -> list:
        """stdout lines up to and including the line `last` (a string, or a test on the raw line),
        normalised; NoResponse if it does not come in time."""
        done = last if callable(last) else (lambda line: line == last)
        out, deadline = [], time.monotonic() + timeout
        while not out or not done(out[-1]):
            try:
                out.append(self.lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise NoResponse(f"etcdctl watch did not print {last!r}: {out}") from None
        return [self.ctl.output(line) if _is_json(line) else self.ctl.text(line) for line in out]

    def exit(self, timeout: float = 10.0) -> dict:
        """Wait for the process to end by itself: its rc, remaining stdout and stderr."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = "still running"
        self.stop()
        return {"rc": rc, "rest": self.rest(), "stderr": self.ctl.errors(self.proc.stderr.read())}

    def rest(self) -> list:
        """Lines printed but not read yet (once the process has ended)."""
        self.reader.join(5)
        out = []
        while not self.lines.empty():
            out.append(self.ctl.text(self.lines.get()))
        return out

    def interrupt(self) -> None:
        """Ctrl-C: etcdctl lock/elect release what they hold and exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
