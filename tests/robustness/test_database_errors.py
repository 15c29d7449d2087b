"""What a database outage shows, and to whom (issue 14, item 4): clients get UNAVAILABLE saying
"the shard's database is unavailable" (or etcd's "request timed out" when a COMMIT's outcome is
unknown), never the DSN's user, host, port or database name; the shard service logs the cause,
one line per failure at WARNING, and no traceback: an outage is routine.

The database (real PostgreSQL or MariaDB) is killed under a steady write load through kv-router,
reads are sent meanwhile, then it comes back and writes succeed again.
"""
from __future__ import annotations

import random
import re
import time
from urllib.parse import urlparse

import pytest

from harness.client import Client, Failure
from harness.servers import start_router, start_shard
from test_database_faults import new_database, wait_for
from harness.workload import Ledger, Load

ALLOWED = {
    "kubefabric: the shard's database is unavailable",  # the request was not applied
    "etcdserver: request timed out",                     # its outcome is unknown (COMMIT sent)
}


class EveryFailure(Ledger):
    """A ledger that keeps every failure, not a few samples per code."""

    def __init__(self):
        super().__init__()
        self.every: list[Failure] = []

    def failed(self, keys, failure: Failure, what: str) -> None:
        super().failed(keys, failure, what)
        with self.lock:
            self.every.append(failure)


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


@pytest.mark.parametrize("backend", ["postgres", "mariadb"])
def test_outage_tells_clients_little_and_logs_one_line(backend, request, tmp_path, say):
    db = request.getfixturevalue(f"{backend}_server")
    dsn = new_database(db, "outage")
    parts = urlparse(dsn)
    # the harness's role is named "kubefabric", like the message's prefix: look for it as a user
    secrets = {f"{parts.username}@", f"{parts.username}:***", parts.password, parts.hostname,
               str(parts.port), parts.path.lstrip("/")}
    shard = start_shard(tmp_path, backend, dsn)
    router = start_router(tmp_path, [shard])
    probe = Client(router.endpoint, "probe")
    seen: list[Failure] = []
    try:
        ledger = EveryFailure()
        load = Load(router.endpoint, ledger, 1, random.Random(7), n=4)
        try:
            load.wait_acked(50)
            db.kill()
            for _ in range(3):  # reads during the outage (they retry until the router's deadline)
                resp = probe.get(b"/outage/read")
                if isinstance(resp, Failure):
                    seen.append(resp)
            db.start()
            acked = load.acked
            wait_for(lambda: load.acked > acked + 20, 60, "writes after the database came back")
        finally:
            problems = load.stop()
        assert not problems, problems
        seen += ledger.every
    finally:
        probe.close()
        router.stop()
        shard.stop()
    say(f"{backend} outage: client failures {dict(ledger.failures)}, "
        f"messages {sorted({f.details for f in seen})}")
    assert seen, "no request failed during the outage: the test did not test anything"
    for failure in seen:
        for secret in secrets:
            assert secret not in failure.details, f"a client was told {secret!r}: {failure}"
        assert failure.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"), failure
        assert failure.code != "UNAVAILABLE" or failure.details in ALLOWED, failure
    assert any(f.details == "kubefabric: the shard's database is unavailable" for f in seen), seen
    log = shard.log()
    assert "Traceback" not in log, log[-6000:]
    noisy = [line for line in log.splitlines() if line.strip() and not LOG_LINE.match(line)]
    assert not noisy, f"log lines that are not one-line records (a traceback?): {noisy[:10]}"
    outage = [line for line in log.splitlines() if " WARNING " in line or " ERROR " in line]
    assert any("database is unavailable" in line or "database unavailable" in line
               for line in outage), log[-6000:]
    assert parts.password not in log
