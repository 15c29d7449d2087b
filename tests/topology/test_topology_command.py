"""`kubefabric topology check` end to end, as an operator runs it."""
from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

GOOD = textwrap.dedent("""\
    default: main
    shards:
      - {name: main, endpoint: embedded}
      - {name: pg, endpoint: "grpc://pg:2390"}
    rules:
      - {prefix: /registry/events/, shard: pg}
      - {namespace: tenant-a, resources: [pods], shard: pg}
      - {prefix: /registry/events/x/, shard: main}
    """)


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["uv", "run", "--frozen", "-q", "kubefabric", "topology", "check", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture
def good(tmp_path) -> str:
    f = tmp_path / "good.yaml"
    f.write_text(GOOD)
    return str(f)


def test_routes_keys_and_prints_warnings(good):
    r = check(good, "/registry/pods/tenant-a/web", "/registry/namespaces/tenant-a",
              "/registry/events/ns/e", r"/bin/\xff\\")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"{good}: valid: 2 shard(s), 3 rule(s), default main",
        "/registry/pods/tenant-a/web -> pg (rule at line 7: namespace tenant-a, resources pods)",
        "/registry/namespaces/tenant-a -> main (default)",
        "/registry/events/ns/e -> pg (rule at line 6: prefix /registry/events/)",
        r"/bin/\xff\\ -> main (default)",
    ]
    assert r.stderr.splitlines() == [
        f"{good}:8: warning: rule at line 8 (prefix /registry/events/x/) is unreachable: every "
        f"key it can match is matched first by rule at line 6 (prefix /registry/events/)"]


def test_ranges(good):
    r = check(good, "--range", "/registry/pods/", "/registry/pods0",
              "--range", "/registry/pods/tenant-b/", "/registry/pods/tenant-b0",
              "--range", "/registry/events/", r"\x00")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:] == [
        "[/registry/pods/, /registry/pods0) -> main, pg",
        "[/registry/pods/tenant-b/, /registry/pods/tenant-b0) -> main",
        "[/registry/events/, +inf) -> main, pg",
    ]


def test_invalid_file_exits_1_with_every_problem_and_no_traceback(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("shards:\n  - {name: a, endpoint: 'http://a:1'}\nrules:\n  - {prefix: /x, shard: b}\n")
    r = check(str(f), "/x")
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.splitlines() == [
        f"{f}:2: bad endpoint 'http://a:1': use 'embedded' or grpc://HOST:PORT[,grpc://HOST:PORT...]",
        f"{f}:4: unknown shard 'b' (shards: a)",
    ]


def test_missing_file_and_bad_key(tmp_path, good):
    r = check(str(tmp_path / "nope.yaml"))
    assert r.returncode == 1 and "cannot read" in r.stderr and "Traceback" not in r.stderr
    r = check(good, r"/a\q")
    assert r.returncode == 2 and "bad escape" in r.stderr and "Traceback" not in r.stderr


def test_against(tmp_path, good):
    new = tmp_path / "new.yaml"
    new.write_text(GOOD + "  - {namespace: tenant-b, shard: pg}\n")
    r = check(str(new), "--against", good)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == (
        f"reload from {good}: allowed if shard 'main' holds no key the new rules move, in "
        f"[/registry/, /registry0) (the router checks this before switching)")
    new.write_text(GOOD.replace("tenant-a", "tenant-c"))
    r = check(str(new), "--against", good)
    assert r.returncode == 1
    assert f"{new}:7: rule #2 changed" in r.stderr and r.stderr.endswith("refused\n")


def test_keys_and_options_in_any_order(tmp_path, good):
    """`check FILE --against OLD KEY...` (README) parses like `check FILE KEY... --against OLD`."""
    keys = ["/registry/pods/tenant-a/web", "/registry/events/ns/e"]
    orders = [[good, *keys, "--against", good], [good, "--against", good, *keys],
              ["--against", good, good, keys[0], "--range", "/a", "/b", keys[1]]]
    outputs = []
    for argv in orders:
        r = check(*argv)
        assert r.returncode == 0, (argv, r.stderr)
        outputs.append([line for line in r.stdout.splitlines() if " -> " in line and "[" not in line])
    assert outputs[0] == outputs[1] == outputs[2] and len(outputs[0]) == 2, outputs


def test_help_points_at_the_docs():
    r = check("--help")
    assert r.returncode == 0
    assert "docs/topology.md" in r.stdout and "first match" in r.stdout
    r = subprocess.run(["uv", "run", "--frozen", "-q", "kubefabric", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert "topology" in r.stdout
