#!/usr/bin/env bash
# build.sh: builds etcdutl v3.7.3 (snapshot status/restore) from Go modules once and prints its
# path: ~/.cache/kubefabric-tools/bin/etcdutl (KUBEFABRIC_TOOLS_DIR overrides the folder), next to
# the etcd and etcdctl that ../shared/tools/etcd/build.sh builds. About 2 minutes cold.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
out="${KUBEFABRIC_TOOLS_DIR:-$HOME/.cache/kubefabric-tools}/bin/etcdutl"
mkdir -p "$(dirname "$out")"
# one build at a time (pytest workers, other checkouts): the others wait for it
exec 9>"$out.lock"
flock 9
if [ ! -x "$out" ]; then
    echo "building etcdutl v3.7.3 (once; cached at $out)" >&2
    go build -trimpath -o "$out.tmp" go.etcd.io/etcd/etcdutl/v3 >&2
    mv "$out.tmp" "$out"
fi
echo "$out"
