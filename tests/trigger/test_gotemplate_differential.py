"""The trigger's Go text/template + sprig evaluator against Go itself: every template of the
corpus over every object, rendered by tests/trigger/goref (Go's text/template and sprig v3,
built from Go modules) and by trigger.gotemplate; outputs must be equal byte for byte, and a
template must fail (to parse, or to execute) on both sides or on neither."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from gotemplate_corpus import cases
from trigger.gotemplate import ExecError, TemplateError, compile_template

GOREF = Path(__file__).parent / "goref"


@pytest.fixture(scope="session")
def goref(tmp_path_factory) -> Path:
    """The Go reference renderer, built once per session (Go's build cache makes rebuilds
    fast). A missing Go toolchain is a failure: CI installs Go."""
    out = tmp_path_factory.mktemp("goref") / "goref"
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    r = subprocess.run(["go", "build", "-o", str(out), "."], cwd=GOREF, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"building the Go reference failed:\n{r.stderr[-3000:]}"
    return out


def python_render(template: str, data) -> dict:
    try:
        t = compile_template("t", template)
    except TemplateError as err:
        return {"error": "parse", "message": str(err)}
    try:
        return {"output": t.render(data)}
    except ExecError as err:
        return {"error": "exec", "message": str(err)}


def test_corpus_matches_go(goref):
    corpus = list(cases())
    lines = "".join(json.dumps({"template": t, "data": d}) + "\n" for _, t, d in corpus)
    r = subprocess.run([str(goref)], input=lines, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    go = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(go) == len(corpus)
    diffs = []
    for (cid, template, data), want in zip(corpus, go):
        got = python_render(template, data)
        if "output" in want:
            if got.get("output") != want["output"]:
                diffs.append(f"{cid} {template!r}\n   go: {want['output']!r}\n   py: {got}")
        elif "error" not in got:
            diffs.append(f"{cid} {template!r}\n   go: {want['error']} error: {want['message']}\n"
                         f"   py: {got['output']!r}")
    assert not diffs, f"{len(diffs)} of {len(corpus)} cases differ from Go:\n" + "\n".join(diffs)
    assert sum("output" in w for w in go) > len(go) // 2  # the corpus mostly renders
