"""Start `python -m kubefabric.cli ...` servers by forking a process that has already imported
them: the tests start thousands of Python servers, and each spent ~2 s of CPU importing grpc,
SQLAlchemy, protobuf and the services before it served (most of CI's time on 2 cores).

One zygote per test process (pytest or an xdist worker), started on first use. It imports every
service's main module, then waits on a Unix socket; each request carries the command line, the
working directory, the environment and the child's stdout/stderr (as file descriptors). It forks
once per request; the child sets its process state as a fresh interpreter would have it and runs
kubefabric.cli as __main__. The request's connection stays open as the child's status channel: the
zygote writes the child's wait status on it when it exits. `popen()` returns a ZygoteProcess with
the parts of subprocess.Popen the harness and the tests use (pid, poll, wait, send_signal,
terminate, kill, returncode, args).

Invariants:
- A child is indistinguishable to the tests from an exec'd server but for its /proc cmdline (the
  zygote's) and its parent pid (the zygote's): the same argv parsing, environment, cwd, stdio,
  exit status (negative for a signal, as Popen reports it).
- What a process reads once while loading grpc (GRPC_* variables, among them --cipher-suites'
  GRPC_SSL_CIPHER_SUITES), OpenTelemetry (OTEL_*) or Python itself (PYTHON*) cannot differ from the zygote's: such a
  command is started with subprocess.Popen, as before (`popen` decides).
- The preloaded objects stay frozen (gc.freeze) in the children: shared with the zygote's pages
  and never scanned by their collections.
- No thread runs in the zygote (nothing of grpc beyond its import), so fork copies a consistent
  process; every child dies with the zygote (PR_SET_PDEATHSIG), the zygote with the test process.
- KUBEFABRIC_TEST_ZYGOTE=0 turns it off (every server exec'd, as before).
"""
from __future__ import annotations

import ctypes
import gc
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CLI = [sys.executable, "-m", "kubefabric.cli"]
# loaded before the first fork: what `kubefabric <command>` imports once its flags are checked
PRELOAD = ["kv_router.main", "kubefabric.shardsvc.main", "backend_sqlite.store", "backend_pg.store",
           "backend_mysql.store", "watch_hub.main", "trigger.main", "aggregation.main"]
STATUS = struct.Struct("!i")   # the child's raw wait status, written when it exits
PR_SET_PDEATHSIG = 1


def enabled() -> bool:
    return os.environ.get("KUBEFABRIC_TEST_ZYGOTE", "1") != "0"


def _load_time_env(env: dict[str, str]) -> dict[str, str]:
    """The variables a process may read once, while it loads (Python's, grpc's, OpenTelemetry's)."""
    return {k: v for k, v in env.items() if k.startswith(("PYTHON", "GRPC_", "OTEL_"))}


# ---- the test process's side ----

class ZygoteProcess:
    """A forked server, seen through its status channel (the subset of subprocess.Popen the
    harness uses)."""

    def __init__(self, args: list[str], pid: int, channel: socket.socket):
        self.args, self.pid, self.returncode = args, pid, None
        self._channel = channel
        self._lock = threading.Lock()

    def _read_status(self, timeout: float | None) -> bool:
        with self._lock:
            if self.returncode is not None:
                return True
            self._channel.settimeout(timeout)
            try:
                data = self._channel.recv(STATUS.size, socket.MSG_WAITALL)
            except (BlockingIOError, socket.timeout):
                return False
            finally:
                self._channel.settimeout(None)
            # no status (the zygote died): the child died with it (PR_SET_PDEATHSIG)
            status = STATUS.unpack(data)[0] if len(data) == STATUS.size else signal.SIGKILL
            self.returncode = os.waitstatus_to_exitcode(status)
            self._channel.close()
            return True

    def poll(self) -> int | None:
        self._read_status(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._read_status(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __del__(self):
        try:
            self._channel.close()
        except Exception:
            pass


_zygote: subprocess.Popen | None = None
_zygote_address = ""
_zygote_env: dict[str, str] = {}
_start_lock = threading.Lock()


def _ensure_zygote() -> str:
    global _zygote, _zygote_address, _zygote_env
    with _start_lock:
        if _zygote is not None and _zygote.poll() is None:
            return _zygote_address
        from .servers import spawn   # its spawner thread: the zygote dies with this process
        address = os.path.join(tempfile.mkdtemp(prefix="kf-zygote-"), "sock")
        env = {**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "false"}
        log = Path(address).with_name("zygote.log")
        _zygote = spawn([*CLI[:1], "-c", "from harness.zygote import serve; serve()", address],
                        env=env, cwd=Path(__file__).resolve().parents[1], stdin=subprocess.DEVNULL,
                        stdout=log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not os.path.exists(address):
            if _zygote.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the test zygote did not start (exit {_zygote.poll()}):\n"
                                   f"{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.02)
        _zygote_address, _zygote_env = address, _load_time_env(env)
        return address


def _fd_of(stream) -> int:
    if stream == subprocess.DEVNULL:
        return os.open(os.devnull, os.O_RDWR)
    return stream if isinstance(stream, int) else stream.fileno()


def popen(argv: list, stdout=None, stderr=None, cwd=None, env=None):
    """subprocess.Popen(argv, stdout=..., stderr=..., cwd=...) for `python -m kubefabric.cli ...`,
    forked from the zygote when it can be (see the module's invariants)."""
    argv = [str(a) for a in argv]
    environ = dict(os.environ if env is None else env)
    usable = (enabled() and argv[:3] == CLI and "--cipher-suites" not in argv
              and stdout is not None and stderr == subprocess.STDOUT
              and "KUBEFABRIC_CIPHER_SUITES" not in environ)
    if usable:
        address = _ensure_zygote()
        usable = _load_time_env({**environ, "GRPC_ENABLE_FORK_SUPPORT": "false"}) == _zygote_env
    if not usable:
        return subprocess.Popen(argv, stdout=stdout, stderr=stderr, cwd=cwd, env=env)
    out = _fd_of(stdout)
    request = json.dumps({"argv": argv[3:], "cwd": str(cwd or os.getcwd()), "env": environ}).encode()
    channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        channel.connect(address)
        socket.send_fds(channel, [struct.pack("!I", len(request)) + request], [out])
        pid = STATUS.unpack(_recv_exactly(channel, STATUS.size))[0]
    except BaseException:
        channel.close()
        raise
    finally:
        if stdout == subprocess.DEVNULL:
            os.close(out)
    return ZygoteProcess(argv, pid, channel)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = sock.recv(n, socket.MSG_WAITALL)
    if len(data) != n:
        raise RuntimeError("the test zygote closed the connection")
    return data


# ---- the zygote ----

def serve() -> None:
    address = sys.argv[1]
    for module in PRELOAD:
        __import__(module)
    gc.freeze()   # what is loaded stays out of every child's collections (and shared with it)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address + ".tmp")
    os.rename(address + ".tmp", address)   # the path appears once it accepts
    listener.listen(64)
    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_w, False)
    signal.set_wakeup_fd(wakeup_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: dict[int, socket.socket] = {}
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(wakeup_r, selectors.EVENT_READ, "child")
    while True:
        for key, _ in sel.select():
            if key.data == "accept":
                conn, _ = listener.accept()
                request = _read_request(conn)
                if request is None:
                    continue
                pid = os.fork()
                if pid == 0:   # the child leaves this loop for good: the server, then exit
                    sel.close()
                    for fd in (wakeup_r, wakeup_w):
                        os.close(fd)
                    for s in (listener, conn, *children.values()):
                        s.close()
                    _become_server(*request)
                os.close(request[1])
                children[pid] = conn
                conn.sendall(STATUS.pack(pid))
            else:
                os.read(wakeup_r, 4096)
                _reap(children)


def _read_request(conn: socket.socket) -> tuple[dict, int] | None:
    """The request's command line, cwd and environment, and the child's stdout descriptor."""
    try:
        head, fds, _, _ = socket.recv_fds(conn, 4, 1)
        (size,) = struct.unpack("!I", head)
        body = b""
        while len(body) < size:
            chunk = conn.recv(size - len(body))
            if not chunk:
                raise OSError("short request")
            body += chunk
        return json.loads(body), fds[0]
    except (OSError, ValueError, struct.error, IndexError):
        conn.close()
        return None


def _reap(children: dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is not None:
            try:
                conn.sendall(STATUS.pack(status))
            except OSError:
                pass   # the test process let go of it
            conn.close()


def _become_server(request: dict, out: int) -> None:
    """In the forked child: the process state `python -m kubefabric.cli ARGS` would start with,
    then the command. It ends the process as the interpreter would end that one (its exit code,
    a traceback and status 1 for an exception, atexit handlers and thread joins on the way)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(devnull)
    os.close(out)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    import atexit
    import importlib.util
    import runpy
    # as with `python -m`: the command runs as __main__, not as the module kubefabric.cli
    sys.modules.pop("kubefabric.cli", None)
    sys.argv = [importlib.util.find_spec("kubefabric.cli").origin, *request["argv"]]
    code = 0
    try:
        runpy.run_module("kubefabric.cli", run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        if isinstance(stop.code, int) or stop.code is None:
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    # the interpreter's exit but for tearing down the modules (the zygote's preloaded ones too,
    # which took longer than the server's own shutdown): threads joined, atexit run, output flushed
    threading._shutdown()   # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
