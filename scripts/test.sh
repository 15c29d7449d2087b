#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (Debian packages when
# run as root, uv and the locked Python environment), checks that generated code is fresh and
# that libs/ and services/ type-check (mypy), then runs every suite against real servers:
#   1. pytest: differential (etcd vs KubeFabric), etcdctl, shard conformance and model, fuzzing,
#      robustness (crash, shutdown, disk full), TLS, bench smoke;
#   2. Kubernetes conformance: k8s.io/apiserver's storage tests against `kubefabric serve`;
#   3. a real kube-apiserver on KubeFabric driven with kubectl.
# Go builds are cached (~/.cache/go-build, ~/.cache/kubefabric-*): the first run on a machine
# compiles kube-apiserver and the test binaries (about 20 minutes on 2 cores), later runs reuse them.
# With arguments, only pytest runs, with those arguments: scripts/test.sh tests/differential -k watch
set -euo pipefail
cd "$(dirname "$0")/.."

# libprotobuf-dev: protoc's well-known .proto files (google/protobuf/*.proto), which the Rust
# etcd-client crate's build imports; protobuf-compiler only recommends it
apt_packages=(etcd-server etcd-client postgresql mariadb-server nats-server protobuf-compiler libprotobuf-dev)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts a packaged server where an init system runs. The tests start their own on
    # loopback (free ports, their own data): stop only the servers this script just installed,
    # and say so. Servers that were installed before are never touched.
    declare -A service_of=([etcd-server]=etcd [postgresql]=postgresql [mariadb-server]=mariadb
                           [nats-server]=nats-server)
    for p in "${missing[@]}"; do
      svc=${service_of[$p]:-}
      [ -n "$svc" ] || continue
      if systemctl disable --now "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1; then
        echo "stopped and disabled the $svc service that installing $p started (the tests run their own)"
      fi
    done
  else
    echo "missing Debian packages: ${missing[*]} (run as root or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet uv
fi
command -v go >/dev/null || { echo "Go is required (bench client, conformance harness)" >&2; exit 1; }

uv sync --frozen --quiet
uv run --frozen --no-sync python scripts/gen_proto.py --check
# kube-apiserver for the tests that run one (tests/k8s ...; built once, cached), before pytest
# so that no test waits for the 10-15 minute cold build
KUBEFABRIC_TEST_KUBE_APISERVER=$(bash tests/conformance/kube-apiserver/build.sh | tail -n1)
export KUBEFABRIC_TEST_KUBE_APISERVER
# etcdutl 3.7.3 for the snapshot restore tests (tests/snapshot; built once, about a minute cold)
KUBEFABRIC_TEST_ETCDUTL=$(bash tests/tools/etcdutl/build.sh | tail -n1)
export KUBEFABRIC_TEST_ETCDUTL
if (($#)); then
  exec uv run --frozen --no-sync pytest -n 2 --dist worksteal "$@"
fi
status=0
phase() {  # run one phase, say how long it took (CI must stay under an hour: watch these)
  local name=$1 start=$SECONDS
  shift
  "$@" || status=1
  echo "phase $name: $((SECONDS - start)) s"
}
phase mypy uv run --frozen --no-sync mypy  # libs/ and services/ (pyproject.toml [tool.mypy])
phase pytest uv run --frozen --no-sync pytest -n 2 --dist worksteal --durations=30
phase conformance tests/conformance/run.sh kubefabric
phase apiserver-scenario tests/conformance/apiserver_scenario.sh kubefabric
echo "total: $SECONDS s"
exit $status
