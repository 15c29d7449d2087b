"""Regenerate the Python code for proto/ and for Kubernetes' types into libs/kubefabric/proto/.

    uv run python scripts/gen_proto.py          # write the generated files
    uv run python scripts/gen_proto.py --check  # exit 1 if the committed files are stale

protoc emits absolute imports named after the proto folders (`from mvccpb import kv_pb2`); they are
rewritten to live under the kubefabric.proto package so the generated code never needs sys.path
tricks.

Kubernetes' built-in types (for kubefabric.k8s): the generated.proto files of the module versions
in scripts/k8sjson/go.mod (k8s.io/api, apimachinery, apiextensions-apiserver, kube-aggregator),
fetched with `go mod download` from the Go module proxy, compiled into kubefabric.proto.k8s
(`k8s.io/api/core/v1` -> kubefabric.proto.k8s.api.core.v1.generated_pb2; "-" becomes "_"), and
kubefabric/proto/k8s/gojson.json, the Go JSON rendering facts the .proto files lack, written by
scripts/k8sjson (reflection over the same modules' Go types). Needs Go.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
OUT = ROOT / "libs" / "kubefabric" / "proto"
K8SJSON = ROOT / "scripts" / "k8sjson"
K8S_MODULES = ("k8s.io/api", "k8s.io/apimachinery", "k8s.io/apiextensions-apiserver",
               "k8s.io/kube-aggregator")
K8S_SKIP = ("testdata", "testapigroup")
TOP_PACKAGES = ("mvccpb", "authpb", "etcdserverpb", "v3lockpb", "v3electionpb", "kubefabric", "k8s")
IMPORT = re.compile(rf"^(from|import) ({'|'.join(TOP_PACKAGES)})(\.|\s)", re.M)


def k8s_path(import_path: str) -> str:
    """k8s.io/apiextensions-apiserver/pkg/... -> k8s/apiextensions_apiserver/pkg/... (a Python
    package path; the .proto packages, hence the message names, stay k8s.io's)."""
    return "k8s/" + import_path.removeprefix("k8s.io/").replace("-", "_")


def stage_k8s_protos(stage: Path) -> list[str]:
    """Copy the modules' generated.proto files into stage under Python-safe paths."""
    out = subprocess.run(["go", "mod", "download", "-json", *K8S_MODULES], cwd=K8SJSON,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"go mod download failed:\n{out.stdout}{out.stderr}")
    files = []
    for info in json.loads("[" + out.stdout.replace("}\n{", "},{") + "]"):
        root = Path(info["Dir"])
        for proto in sorted(root.rglob("generated.proto")):
            rel = proto.relative_to(root)
            if any(part in K8S_SKIP for part in rel.parts):
                continue
            target = k8s_path(f"{info['Path']}/{rel}")
            text = re.sub(r'^import "(k8s\.io/[^"]+)";', lambda m: f'import "{k8s_path(m[1])}";',
                          proto.read_text(), flags=re.M)
            (stage / target).parent.mkdir(parents=True, exist_ok=True)
            (stage / target).write_text(text)
            files.append(target)
    return files


def generate(dest: Path) -> None:
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    grpc_include = Path(protoc.__file__).parent / "_proto"
    args = ["protoc", f"-I{PROTO}", f"-I{grpc_include}", f"--python_out={dest}",
            f"--pyi_out={dest}", f"--grpc_python_out={dest}", *files]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    with tempfile.TemporaryDirectory() as stage:
        k8s_files = stage_k8s_protos(Path(stage))
        # a process of its own: its warnings (imports the .proto files never use) are noise
        out = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{stage}",
                              f"--python_out={dest}", *k8s_files], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"protoc failed on the Kubernetes .proto files:\n{out.stderr}")
    gojson = subprocess.run(["go", "run", ".", str(dest / "k8s" / "gojson.json")], cwd=K8SJSON,
                            capture_output=True, text=True)
    if gojson.returncode != 0:
        raise SystemExit(f"scripts/k8sjson failed:\n{gojson.stderr[-3000:]}")
    for path in dest.rglob("*.py*"):
        text = IMPORT.sub(lambda m: f"{m[1]} kubefabric.proto.{m[2]}{m[3]}", path.read_text())
        path.write_text(text)
    for folder in [dest, *(p for p in dest.rglob("*") if p.is_dir())]:
        (folder / "__init__.py").write_text("")


def same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return files_a == files_b and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the generated files are stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "proto"
        fresh.mkdir()
        generate(fresh)
        if args.check:
            if not same_tree(fresh, OUT):
                print("generated protobuf code is stale: run `uv run python scripts/gen_proto.py`",
                      file=sys.stderr)
                return 1
            print("generated protobuf code is up to date")
            return 0
        shutil.rmtree(OUT, ignore_errors=True)
        shutil.copytree(fresh, OUT)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
