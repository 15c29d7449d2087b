"""Compare one client library's suite on etcd and on KubeFabric (two JUnit XML files).

Every test that passes on etcd must pass on KubeFabric; a test that fails or is skipped on etcd
is listed, not counted. Exit 0 when nothing that passes on etcd fails on KubeFabric."""
from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def outcomes(path: str) -> dict[str, str]:
    """test id -> passed | failed | skipped (error counts as failed)."""
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
    for case in ET.parse(path).getroot().iter("testcase"):
        if f"{case.get('classname')}::{case.get('name')}" == name:
            for tag in ("failure", "error"):
                node = case.find(tag)
                if node is not None:
                    return (node.get("message") or "").splitlines()[0][:200] if node.get("message") else tag
    return ""


def main(etcd_xml: str, kf_xml: str) -> int:
    etcd, kf = outcomes(etcd_xml), outcomes(kf_xml)
    if not etcd:
        print(f"no test ran on etcd ({etcd_xml}): the suite did not start")
        return 1
    passed_etcd = [n for n, o in etcd.items() if o == "passed"]
    regressions = [n for n in passed_etcd if kf.get(n) != "passed"]
    for n in sorted(n for n, o in etcd.items() if o != "passed"):
        print(f"not counted ({etcd[n]} on etcd, {kf.get(n, 'missing')} on KubeFabric): {n}"
              f"{' -- ' + reason(etcd_xml, n) if etcd[n] == 'failed' else ''}")
    for n in sorted(regressions):
        print(f"DIFFERS (passed on etcd, {kf.get(n, 'missing')} on KubeFabric): {n} -- {reason(kf_xml, n)}")
    kf_passed = sum(1 for n in passed_etcd if kf.get(n) == "passed")
    print(f"etcd: {len(passed_etcd)} of {len(etcd)} passed; KubeFabric: {kf_passed} of those "
          f"{len(passed_etcd)} passed ({sum(1 for o in kf.values() if o == 'passed')} of {len(kf)} in all)")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
