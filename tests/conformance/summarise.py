#!/usr/bin/env python3
"""Summarise run.sh's go test JSON: passed/failed/skipped per package, the failing tests with
their output, one closing line; exit 1 on any failure.

A test can appear in two phases (the shared-server phase skips what fresh-only.txt lists, the
fresh-server phase skips everything else): it counts once, as failed if it failed in any phase,
else passed if it passed in any, else skipped. Counts include subtests (every name go test
reports). A package whose test binary failed without a failing test (build error, panic,
timeout) counts as a failure of its own. Standard library only.
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from pathlib import Path

RANK = {"skip": 0, "pass": 1, "fail": 2}
FILE = re.compile(r"^(shared|fresh-listed|fresh)-(.+)\.json$")


def load(outdir: Path):
    results: dict[str, dict[str, str]] = collections.defaultdict(dict)
    output: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    pkg_errors: dict[str, list[str]] = collections.defaultdict(list)
    skip_reasons: dict[tuple[str, str], str] = {}
    for path in sorted(outdir.glob("*.json")):
        m = FILE.match(path.name)
        if not m:
            continue
        phase = m[1]
        failed_tests = 0
        pkg_failed = False
        pkg_output: list[str] = []
        pkg = None
        for line in path.read_text(errors="replace").splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            pkg = ev.get("Package", pkg)
            action, test = ev.get("Action"), ev.get("Test")
            if action == "output":
                if test:
                    output[(pkg, test)].append(ev.get("Output", ""))
                else:
                    pkg_output.append(ev.get("Output", ""))
            elif action in RANK and test:
                old = results[pkg].get(test)
                if old is None or RANK[action] > RANK[old]:
                    results[pkg][test] = action
                if action == "fail":
                    failed_tests += 1
                if action == "skip":
                    text = "".join(output.get((pkg, test), []))
                    m2 = re.search(r"kubefabric-conformance: (.*)", text)
                    if m2:
                        skip_reasons[(pkg, test)] = m2[1].strip()
            elif action == "fail" and not test:
                pkg_failed = True
        if pkg and pkg_failed and failed_tests == 0:
            stderr = path.with_suffix(".stderr")
            extra = stderr.read_text(errors="replace") if stderr.exists() else ""
            pkg_errors[pkg].append(f"[{phase}] " + ("".join(pkg_output) + extra)[-3000:])
    return results, output, pkg_errors, skip_reasons


def failure_text(lines: list[str], limit: int = 25) -> str:
    keep = [l.rstrip("\n") for l in lines
            if not l.startswith(("=== RUN", "=== PAUSE", "=== CONT", "=== NAME"))
            and "feature_gate.go" not in l]
    if len(keep) > limit:
        keep = keep[:limit] + [f"    ... ({len(keep) - limit} more lines)"]
    return "\n".join(keep)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--server", default="?")
    ap.add_argument("--build-seconds", default="?")
    ap.add_argument("--run-seconds", default="?")
    args = ap.parse_args()

    results, output, pkg_errors, skip_reasons = load(args.outdir)
    totals = collections.Counter()
    rows = []
    for pkg in sorted(set(results) | set(pkg_errors)):
        c = collections.Counter(results[pkg].values())
        totals.update(c)
        rows.append((pkg, c["pass"], c["fail"], c["skip"], "ERROR" if pkg_errors.get(pkg) else ""))

    lines = [f"server: {args.server}   build: {args.build_seconds}s   tests: {args.run_seconds}s", ""]
    lines.append(f"{'package':<60} {'passed':>7} {'failed':>7} {'skipped':>8}")
    for pkg, p, f, s, err in rows:
        lines.append(f"{pkg:<60} {p:>7} {f:>7} {s:>8} {err}")

    # Leaf failures first (a parent fails when a subtest does).
    failing = []
    for pkg in sorted(results):
        names = [t for t, r in results[pkg].items() if r == "fail"]
        for t in sorted(names):
            if not any(o.startswith(t + "/") for o in names):
                failing.append((pkg, t))
    if failing:
        lines += ["", f"FAILING TESTS ({len(failing)} leaf tests)"]
        for pkg, t in failing:
            lines += [f"--- {pkg} {t}", failure_text(output.get((pkg, t), []))]
    for pkg, errs in pkg_errors.items():
        lines += ["", f"PACKAGE ERROR {pkg}"] + errs

    reasons = collections.Counter(skip_reasons[k] for k, r in
                                  ((k, results[k[0]].get(k[1])) for k in skip_reasons) if r == "skip")
    if reasons:
        lines += ["", "SKIPPED BY THE HARNESS (not run in either phase)"]
        lines += [f"  {n} x {why}" for why, n in reasons.most_common()]

    n_err = sum(1 for errs in pkg_errors.values() if errs)
    lines += ["", f"{totals['pass']} passed, {totals['fail'] + n_err} failed, {totals['skip']} skipped"]
    text = "\n".join(lines)
    print(text)
    (args.outdir / "summary.txt").write_text(text + "\n")
    return 1 if totals["fail"] or n_err or not totals["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
