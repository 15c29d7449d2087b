#!/usr/bin/env bash
# build.sh: builds a real kube-apiserver from Go modules (k8s.io/kubernetes, version in go.mod)
# once and prints its path: ~/.cache/kubefabric-tools/kube-apiserver-<version>
# (KUBEFABRIC_TOOLS_DIR overrides the folder). About 10-15 minutes cold on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
version=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)      # v1.37.2
out="${KUBEFABRIC_TOOLS_DIR:-$HOME/.cache/kubefabric-tools}/kube-apiserver-$version"
mkdir -p "$(dirname "$out")"
# one build at a time (pytest workers, the scenario, other checkouts): the others wait for it
exec 9>"$out.lock"
flock 9
if [ ! -x "$out" ]; then
    minor=${version#v1.}; minor=${minor%%.*}
    mkdir -p "$(dirname "$out")"
    echo "building kube-apiserver $version (once; cached at $out)" >&2
    go build -trimpath -o "$out.tmp" -ldflags "-s -w \
        -X k8s.io/component-base/version.gitVersion=$version \
        -X k8s.io/component-base/version.gitMajor=1 \
        -X k8s.io/component-base/version.gitMinor=$minor \
        -X k8s.io/component-base/version.gitTreeState=clean \
        -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z" \
        k8s.io/kubernetes/cmd/kube-apiserver >&2
    mv "$out.tmp" "$out"
fi
echo "$out"
