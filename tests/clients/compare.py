"""Compare one client library's suite on etcd and on KubeFabric: two JUnit XML files, or two
outputs of Rust's `cargo test` (any other file name than *.xml).

Every test that passes on etcd must pass on KubeFabric; a test that fails or is skipped on etcd
is listed, not counted. Exit 0 when nothing that passes on etcd fails on KubeFabric."""
from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET

LIBTEST_BINARY = re.compile(r"^\s*Running (\S+)")              # Running tests/client.rs (target/...)
LIBTEST_RESULT = re.compile(r"^test (\S+) \.\.\. (ok|FAILED|ignored)")
LIBTEST_PANIC = re.compile(r"^thread '([^']+)' .*panicked at (.*)")


def libtest_outcomes(path: str) -> tuple[dict[str, str], dict[str, str]]:
    """cargo test output -> (test id -> outcome, test id -> first line of its panic)."""
    result: dict[str, str] = {}
    why: dict[str, str] = {}
    binary = ""
    lines = open(path, errors="replace").read().splitlines()
    for i, line in enumerate(lines):
        if m := LIBTEST_BINARY.match(line):
            binary = m.group(1)
        elif m := LIBTEST_RESULT.match(line):
            result[f"{binary}::{m.group(1)}"] = {"ok": "passed", "FAILED": "failed", "ignored": "skipped"}[m.group(2)]
        elif m := LIBTEST_PANIC.match(line):
            detail = lines[i + 1] if i + 1 < len(lines) else m.group(2)
            why.setdefault(f"{binary}::{m.group(1)}", detail.strip()[:200])
    return result, why


def outcomes(path: str) -> dict[str, str]:
    """test id -> passed | failed | skipped (error counts as failed)."""
    if not path.endswith(".xml"):
        return libtest_outcomes(path)[0]
    result: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("skipped") is not None:
            result[name] = "skipped"
        elif case.find("failure") is not None or case.find("error") is not None:
            result[name] = "failed"
        else:
            result[name] = "passed"
    return result


def reason(path: str, name: str) -> str:
    if not path.endswith(".xml"):
        return libtest_outcomes(path)[1].get(name, "")
    for case in ET.parse(path).getroot().iter("testcase"):
        if f"{case.get('classname')}::{case.get('name')}" == name:
            for tag in ("failure", "error"):
                node = case.find(tag)
                if node is not None:
                    return (node.get("message") or "").splitlines()[0][:200] if node.get("message") else tag
    return ""


def known_differences(path: str) -> dict[str, str]:
    known: dict[str, str] = {}
    for line in open(path):
        if line.strip() and not line.startswith("#"):
            name, _, why = line.strip().partition(" -- ")
            known[name] = why
    return known


def main(etcd_xml: str, kf_xml: str, known_path: str) -> int:
    etcd, kf = outcomes(etcd_xml), outcomes(kf_xml)
    known = known_differences(known_path)
    if not etcd:
        print(f"no test ran on etcd ({etcd_xml}): the suite did not start")
        return 1
    passed_etcd = [n for n, o in etcd.items() if o == "passed"]
    regressions = [n for n in passed_etcd if kf.get(n) != "passed"]
    for n in sorted(n for n, o in etcd.items() if o != "passed"):
        print(f"not counted ({etcd[n]} on etcd, {kf.get(n, 'missing')} on KubeFabric): {n}"
              f"{' -- ' + reason(etcd_xml, n) if etcd[n] == 'failed' else ''}")
    caught_up = [n for n in known if n in etcd and kf.get(n) == "passed"]
    for n in sorted(caught_up):
        print(f"PASSES NOW, remove it from {known_path}: {n}")
    for n in sorted(n for n in regressions if n in known):
        print(f"known difference: {n} -- {known[n]}")
    regressions = [n for n in regressions if n not in known]
    for n in sorted(regressions):
        print(f"DIFFERS (passed on etcd, {kf.get(n, 'missing')} on KubeFabric): {n} -- {reason(kf_xml, n)}")
    kf_passed = sum(1 for n in passed_etcd if kf.get(n) == "passed")
    print(f"etcd: {len(passed_etcd)} of {len(etcd)} passed; KubeFabric: {kf_passed} of those "
          f"{len(passed_etcd)} passed ({sum(1 for o in kf.values() if o == 'passed')} of {len(kf)} in all)")
    print(f"{len(passed_etcd) - len(regressions) - sum(1 for n in passed_etcd if n in known and kf.get(n) != 'passed')}"
          f" passed, {len(regressions)} failed, {sum(1 for n in passed_etcd if n in known and kf.get(n) != 'passed')}"
          f" known differences")
    return 1 if regressions or caught_up else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
