"""harness.servers.spawn: a server started from a short-lived thread outlives that thread.

PR_SET_PDEATHSIG fires when the thread that forked the child ends. The fault injectors of the
history suites run in threading.Timer threads; a nats-server or watch-hub they restarted was
SIGKILLed as soon as the injector returned, so those tests ran with the server down for good."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

from harness.servers import spawn, stop_process


def test_a_child_spawned_from_a_thread_lives_after_the_thread_ends():
    started: list[subprocess.Popen] = []
    t = threading.Thread(target=lambda: started.append(spawn(["sleep", "30"])))
    t.start()
    t.join()
    time.sleep(0.3)
    (proc,) = started
    try:
        assert proc.poll() is None, f"the child died with its starting thread (exit {proc.returncode})"
    finally:
        stop_process(proc)


def test_a_child_dies_with_the_process_that_spawned_it(tmp_path):
    """The point of spawn(): no server outlives a killed pytest or benchmark."""
    pidfile = tmp_path / "pid"
    script = (f"import time; from harness.servers import spawn; "
              f"p = spawn(['sleep', '60']); open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(pidfile.read_text())
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{child}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the child {child} outlived its parent")
