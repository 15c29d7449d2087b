"""Regenerate the Python code for proto/ into libs/kubefabric/proto/.

    uv run python scripts/gen_proto.py          # write the generated files
    uv run python scripts/gen_proto.py --check  # exit 1 if the committed files are stale

protoc emits absolute imports named after the proto folders (`from mvccpb import kv_pb2`); they are
rewritten to live under the kubefabric.proto package so the generated code never needs sys.path
tricks.
"""
from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
OUT = ROOT / "libs" / "kubefabric" / "proto"
TOP_PACKAGES = ("mvccpb", "authpb", "etcdserverpb", "kubefabric")
IMPORT = re.compile(rf"^(from|import) ({'|'.join(TOP_PACKAGES)})(\.|\s)", re.M)


def generate(dest: Path) -> None:
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    grpc_include = Path(protoc.__file__).parent / "_proto"
    args = ["protoc", f"-I{PROTO}", f"-I{grpc_include}", f"--python_out={dest}",
            f"--pyi_out={dest}", f"--grpc_python_out={dest}", *files]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
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
