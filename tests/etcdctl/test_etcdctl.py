"""etcdctl scenarios: Debian's etcdctl (API v3) runs the same commands against etcd and KubeFabric;
exit code, stdout and stderr are compared after the normalisation in harness/etcdctl.py.

Each scenario is a list of commands (strings split like a shell would), run in order and recorded
under the command line itself; lease IDs printed by one command are fed to the next by name.
"""
from __future__ import annotations

import base64
import re
import shlex
import time

from harness.etcdctl import Etcdctl, without
from harness.stream import NoResponse
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

MEASURED = ("version", "dbSize", "dbSizeInUse", "raftIndex", "raftAppliedIndex")


def scenario(differential, script, **kw):
    """Run script(ctl, do, record) on both sides; do(cmd, stdin=None) runs and records one command."""
    def body(c, record):
        ctl = Etcdctl(c.endpoint, record.leases)
        members = c.call(c.cluster.MemberList, pb.MemberListRequest())
        ctl.members = {m.ID for m in getattr(members, "members", [])}

        def do(cmd: str, stdin: str | None = None, label: str | None = None):
            out = ctl.run(*shlex.split(cmd), stdin=stdin)
            record(label or ctl.text(cmd), out)
            return out
        try:
            script(ctl, do, record)
        finally:
            ctl.stop_all()
    differential(body, **kw)


def ttl_view(out):
    """timetolive output with the remaining TTL masked and attached keys sorted (etcd lists them
    in map order), in JSON ("ttl", "keys") and in plain output ("remaining(59s)", "keys([..])")."""
    if isinstance(out, list):
        return [{**d, "ttl": "N", "keys": sorted(d.get("keys") or [])} if "ttl" in d else d for d in out]
    out = re.sub(r"remaining\(\d+s\)", "remaining(Ns)", out)
    return re.sub(r"keys\(\[([^]]*)\]\)", lambda m: f"keys([{' '.join(sorted(m.group(1).split()))}])", out)


def sorted_lines(out: dict) -> dict:
    """Output whose line order follows server-chosen lease IDs (lock keys): compared as a set."""
    return {**out, "stdout": sorted(line for line in out["stdout"].splitlines() if line)}


def test_put_and_get(differential):
    def script(ctl, do, record):
        for cmd in ["put k1 v1", "put k2 v2", "put k2 v3 --prev-kv", "put k3 v3", "put a x",
                    "put k1 --ignore-value", "put '' v", "put k4",
                    "get k1", "get k --prefix", "get k --prefix --keys-only", "get k --prefix --limit 2",
                    "get k --prefix --limit 1 -w json", "get k --prefix --rev 3", "get k --prefix --rev 2",
                    "get k --prefix --rev 100", "get k --prefix --sort-by=MODIFY --order=DESCEND",
                    "get k --prefix --sort-by=VALUE", "get k --prefix --sort-by=CREATE --order=ASCEND",
                    "get k --prefix --sort-by=VERSION --order=DESCEND", "get k --prefix --order=DESCEND",
                    "get k --prefix --sort-by=KEY --order=DESCEND --limit 2", "get k1 k3",
                    "get --from-key k2", "get --from-key ''", "get k1 -w json", "get k --prefix -w fields",
                    "get k1 --print-value-only", "get k --prefix --consistency=s", "get nothing",
                    "get nothing -w json", "get ''", "get k1 --hex", "get k --prefix -w table"]:
            do(cmd)
    scenario(differential, script)


def test_del(differential):
    def script(ctl, do, record):
        for cmd in ["put k1 v1", "put k2 v2", "put k3 v3", "put a x", "put b y", "put z w",
                    "del nothing", "del k1", "del k --prefix --prev-kv", "get '' --from-key --keys-only",
                    "del a c -w json", "del --from-key y --prev-kv", "del ''", "get '' --from-key"]:
            do(cmd)
    scenario(differential, script)


def test_txn(differential):
    success = ('mod("k1") > "0"\nvalue("k2") = "v2"\ncreate("k1") = "2"\nversion("k2") = "1"\n'
               '\nput k3 x\nget k1\ndel k2\nget k --prefix\n\nput never y\n\n')
    failure = 'value("k1") = "nope"\n\nput never y\n\nput k1 v9 --prev-kv\nget k1\n\n'

    def script(ctl, do, record):
        do("put k1 v1")
        do("put k2 v2")
        do("txn", stdin=success, label="txn success")
        do("txn", stdin=failure, label="txn failure")
        do("txn -i", stdin='version("k1") = "2"\n\nget k1\n\n\n', label="txn interactive")
        do("txn -w json", stdin='value("k3") = "x"\n\ndel k3 --prev-kv\n\n\n', label="txn json")
        do("txn", stdin='\nput empty-compare ok\n\n\n', label="txn without compares")
        do("txn", stdin='bogus("k1") = "1"\n\n\n\n', label="txn bad compare")
        do("txn", stdin='value("k1") = "v9"\n\nput k1 a\nput k1 b\n\n\n', label="txn same key twice")
        do("get '' --from-key")
    scenario(differential, script)


def test_watch(differential):
    end = base64.b64encode(b"END").decode()

    def script(ctl, do, record):
        for cmd in ["put k1 a", "put k2 b", "put k1 c", "del k2", "put other x", "put k9 END"]:  # revs 2..7
            do(cmd)
        watches = {"history": "--prefix k --rev 2", "history, prev-kv": "--prefix k --rev 2 --prev-kv",
                   "range": "k2 kz --rev 2", "single key": "k9 --rev 2"}
        for label, args in watches.items():
            w = ctl.watch(*shlex.split(args))
            record(label, w.read_until("END"))
            w.stop()
        w = ctl.watch("--prefix", "k", "--rev", "2", "-w", "json")
        record("history, json", w.read_until(lambda line: end in line))
        w.stop()
        live = ctl.watch("--prefix", "k", "--rev", "8", "--prev-kv")   # 8 is the next revision
        for cmd in ["put k5 v", "put k5 w", "del k5", "put k9 LIVE-END"]:
            do(cmd)
        record("live", live.read_until("LIVE-END"))
        live.stop()
        try:
            record("nothing more", live.rest())
        except NoResponse as e:
            record("nothing more", str(e))
    scenario(differential, script)


def test_lease(differential):
    def script(ctl, do, record):
        first = do("lease grant 60")
        a = ctl.lease_hex(first)
        do(f"lease timetolive {a}", label="timetolive right after the grant")   # remaining(59s)
        second = do("lease grant 120")
        do("lease grant 1")
        do("lease grant 9000000001")
        do("lease grant 300 -w json")
        b = ctl.lease_hex(second)
        for cmd in [f"put k1 v --lease={a}", f"put k2 v --lease={a}", f"put k3 v --lease={b}",
                    f"lease timetolive --keys {a}", f"lease timetolive --keys {a} -w json",
                    f"lease keep-alive --once {a}", f"lease keep-alive --once {b} -w json",
                    "lease revoke 1234", "lease timetolive 1234", "lease keep-alive --once 1234",
                    "put k4 v --lease=1234", f"lease revoke {a}", f"lease revoke {a}", "get k --prefix",
                    f"lease timetolive --keys {a}", f"lease timetolive --keys {b}", "lease revoke zz"]:
            out = ctl.run(*shlex.split(cmd))
            if "timetolive" in cmd:   # seconds pass between commands: only the first check counts them
                out["stdout"] = ttl_view(out["stdout"])
            record(ctl.text(cmd), out)
        listed = ctl.run("lease", "list")   # order of ids is the server's: compare as a set
        record("lease list", {**listed, "stdout": sorted(listed["stdout"].splitlines())})
        record("lease list -w json", without(ctl.run("lease", "list", "-w", "json"), "leases"))
    scenario(differential, script)


def test_compaction(differential):
    def script(ctl, do, record):
        for cmd in ["put k a", "put k b", "put k c", "put k d",     # revs 2..5
                    "compaction 3", "compaction 3", "compaction 2", "compaction 100",
                    "get k --rev 2", "get k --rev 3", "get k -w json", "compaction 4 --physical",
                    "get k --rev 3", "get k --rev 4", "compaction 0", "compaction x"]:
            do(cmd)
        w = ctl.watch("k", "--rev", "2")
        record("watch from a compacted revision", w.exit())
    scenario(differential, script)


def test_endpoint_member_alarm(differential):
    def script(ctl, do, record):
        status = ctl.run("endpoint", "status")
        line = status["stdout"].strip().split(", ")
        # endpoint, ID, version, db size, is leader, is learner, raft term, raft index, applied, errors
        record("endpoint status", {**status, "stdout": [line[i] for i in (0, 1, 4, 5, 6, 9) if i < len(line)]})
        record("endpoint status -w json", without(ctl.run("endpoint", "status", "-w", "json"), *MEASURED))
        do("endpoint health")
        do("endpoint health -w json")
        members = ctl.run("member", "list")
        cols = members["stdout"].strip().split(", ")
        record("member list", {**members, "stdout": [c if i != 3 else "PEER" for i, c in enumerate(cols)]})
        listed = ctl.run("member", "list", "-w", "json")
        for m in (listed["stdout"][0].get("members", []) if isinstance(listed["stdout"], list) else []):
            m["peerURLs"] = ["PEER" for _ in m.get("peerURLs", [])]
        record("member list -w json", listed)
        do("alarm list")
        do("put k v")
        record("endpoint status after a write",
               without(ctl.run("endpoint", "status", "-w", "json"), *MEASURED))
    scenario(differential, script)


def test_lock_and_election(differential):
    """The concurrency recipes: leases, txns on create revision, watches on the predecessor's key."""
    def script(ctl, do, record):
        do("lock L echo hi")
        holder = ctl.background("lock", "L")
        record("holder", holder.read_until(lambda line: line.startswith("L/")))
        waiter = ctl.background("lock", "L", "echo", "second")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:   # until the waiter has queued its key
            queued = ctl.run("get", "L", "--prefix", "--keys-only")
            if queued["stdout"].count("L/") >= 2:
                break
            time.sleep(0.1)
        record("both keys queued", sorted_lines(queued))
        time.sleep(0.3)
        record("waiter still waiting", waiter.proc.poll())
        holder.interrupt()
        record("holder releases", holder.exit())
        record("waiter runs", waiter.exit())
        do("get L --prefix --keys-only")
        leader = ctl.background("elect", "E", "p1")
        record("campaign", leader.read_until("p1"))
        observer = ctl.background("elect", "-l", "E")
        record("observe", observer.read_until("p1"))
        do("get E --prefix")
        leader.interrupt()
        record("resign", leader.exit())
        observer.interrupt()
        record("observer ends", observer.exit())
        do("get E --prefix")
    scenario(differential, script)
