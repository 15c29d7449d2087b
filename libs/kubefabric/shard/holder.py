"""The process that holds a shard's leader lease, as recorded in the lease row's `holder`.

A holder is written as `host=<name> pid=<n> start=<ticks> boot=<id> pidns=<inode> id=<random>`:
the host name and PID say who leads (logs, `describe`); the start time (clock ticks after boot,
/proc/PID/stat), the kernel's boot id and the PID namespace make "that process still runs" a
question this host can answer without mistaking a reused PID or another container's PID 1 for
it; the random id tells two campaigns of one process apart.

Replicas of a SQLite shard ask it (they share the file, hence the host); on a server database
only a holder of this very process is answered (a shard closed here, reopened by a test or a
restart of the service's loop); otherwise the lease has to run out.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
from functools import cache


_held: set[str] = set()  # holders of this process whose lease is in use (see hold/release)


def hold(holder: str) -> None:
    """This process leads with `holder` (until release)."""
    _held.add(holder)


def release(holder: str) -> None:
    _held.discard(holder)


@cache
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _pidns() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks after boot, or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: fields after its last ')'
    return int(stat.rsplit(b")", 1)[1].split()[19])


def state(pid: int) -> str:
    """The kernel's one-letter state of the process (R, S, D, T stopped, ...), or '' if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except OSError:
        return ""


def this_process() -> str:
    """A new holder of this process."""
    pid = os.getpid()
    return (f"host={socket.gethostname()} pid={pid} start={start_ticks(pid) or 0} "
            f"boot={_boot_id()} pidns={_pidns()} id={secrets.token_hex(4)}")


def parse(holder: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in holder.split() if "=" in part)


def describe(holder: str) -> str:
    fields = parse(holder)
    if "pid" not in fields:
        return "nobody" if not holder else holder
    return f"pid {fields['pid']} on {fields.get('host', '?')}"


def local_pid(holder: str) -> int | None:
    """The holder's PID when it is a process of this kernel boot and PID namespace (else None:
    this host cannot see it, e.g. another container)."""
    fields = parse(holder)
    if not fields.get("pid") or fields.get("boot") != _boot_id() or fields.get("pidns") != _pidns():
        return None
    return int(fields["pid"])


def is_this_process(holder: str) -> bool:
    fields = parse(holder)
    return local_pid(holder) == os.getpid() and int(fields.get("start") or 0) == start_ticks(os.getpid())


def gone(holder: str) -> bool:
    """True when the holder certainly no longer leads: a process of this host whose PID is free
    or taken by a newer process, one of an earlier boot of this host, or a holder of this
    process that released its lease."""
    fields = parse(holder)
    if "pid" not in fields:
        return False
    if fields.get("host") == socket.gethostname() and fields.get("boot") not in ("", _boot_id()):
        return True  # the host rebooted since
    pid = local_pid(holder)
    if pid is None:
        return False
    if start_ticks(pid) != int(fields.get("start") or 0):
        return True
    return pid == os.getpid() and holder not in _held


def kill(holder: str) -> bool:
    """SIGKILL the holder if it is still the recorded process (start time checked through a
    pidfd, so a reused PID is never hit); True when the signal was sent. Raises PermissionError
    when this process may not signal it."""
    pid = local_pid(holder)
    if pid is None or pid == os.getpid():
        return False
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if start_ticks(pid) != int(parse(holder).get("start") or 0):
            return False  # the PID was reused after the holder exited
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)
