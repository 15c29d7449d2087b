#!/usr/bin/env bash
# Run a published etcd client library's own test suite against real etcd and against
# `kubefabric serve`, each started here on free loopback ports with fresh data, and compare:
# every test that passes on etcd must pass on KubeFabric. A test that fails on etcd too is
# listed, not counted (such tests depend on the library's own CI setup, not on the server).
#
#   tests/clients/run.sh python-etcd3      # kragniz/python-etcd3 0.12.0 (PyPI sdist), pytest
#   tests/clients/run.sh aetcd             # martyanov/aetcd 1.0.0 (PyPI sdist, asyncio), pytest
#   tests/clients/run.sh rust-etcd-client  # the etcd-client crate 0.21.1 (crates.io), cargo test
#
# The Rust suite connects to localhost:2379, fixed in its source: each server then runs in a
# network namespace of its own (unshare -n, as root), where 127.0.0.1:2379 is free and private.
#
# Downloads (the sdist, a virtualenv with the suite's pinned dependencies) are cached under
# ~/.cache/kubefabric-tools/clients; the reference etcd is $KUBEFABRIC_TEST_ETCD or Debian's.
# Results (JUnit XML, server logs) stay in $KUBEFABRIC_CLIENTS_OUT (default: a temporary dir).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
lib=${1:?usage: tests/clients/run.sh python-etcd3}
cache=${KUBEFABRIC_TOOLS_CACHE:-$HOME/.cache/kubefabric-tools}/clients
out=${KUBEFABRIC_CLIENTS_OUT:-$(mktemp -d -t kf-clients.XXXXXX)}
mkdir -p "$cache" "$out"
etcd_bin=${KUBEFABRIC_TEST_ETCD:-$(command -v etcd || true)}
[ -x "$etcd_bin" ] || { echo "etcd is not installed: apt-get install etcd-server (or set KUBEFABRIC_TEST_ETCD)" >&2; exit 1; }
command -v etcdctl >/dev/null || { echo "etcdctl is not installed: apt-get install etcd-client" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_ready() {  # endpoint log: until Maintenance.Status answers, at most 60 s
  for _ in $(seq 120); do
    ETCDCTL_API=3 etcdctl --endpoints "$1" --command-timeout 2s endpoint status >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "server at $1 did not start; its log:" >&2; tail -n 30 "$2" >&2; return 1
}

start_etcd() {  # sets endpoint=host:port (port: $fixed_port, else a free one)
  local client peer; client=${fixed_port:-$(free_port)}; peer=$(free_port)
  "$etcd_bin" --name default --data-dir "$out/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "default=http://127.0.0.1:$peer" --log-level error "${server_flags[@]}" >"$out/etcd.log" 2>&1 &
  pids+=($!)
  wait_ready "127.0.0.1:$client" "$out/etcd.log"
  endpoint=127.0.0.1:$client
}

start_kubefabric() {
  local client; client=${fixed_port:-$(free_port)}
  (cd "$repo" && exec uv run --frozen --no-sync python -m kubefabric.cli serve \
    --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --listen-client-urls "http://127.0.0.1:$client" --data-dir "$out/kf-data" "${server_flags[@]}") >"$out/kubefabric.log" 2>&1 &
  pids+=($!)
  wait_ready "127.0.0.1:$client" "$out/kubefabric.log"
  endpoint=127.0.0.1:$client
}

# ---- the libraries: prepare_LIB once (cached), run_LIB SERVER-ENDPOINT JUNIT-FILE ----

server_flags=()  # the flags a library's suite asks the server for (etcd's names, which kubefabric serve shares)

# sdist DIR PACKAGE VERSION: src=$cache/DIR-VERSION; unless it is ready (.ready, written by the
# caller once the suite's requirements are installed), a fresh venv there and the package's PyPI
# source release (which holds its tests) unpacked beside it
sdist() {
  src=$cache/$1-$3
  [ -f "$src/.ready" ] && return 0
  rm -rf "$src"; mkdir -p "$src"
  command -v uv >/dev/null || python3 -m pip install --quiet uv
  uv venv --quiet --seed --python 3.11 "$src/venv"
  "$src/venv/bin/python" -m pip download --quiet --no-deps --no-binary :all: -d "$src" "$2==$3"
  tar xzf "$src/$2-$3.tar.gz" -C "$src"
}

PY_ETCD3=0.12.0
prepare_python-etcd3() {
  sdist python-etcd3 etcd3 "$PY_ETCD3"
  if [ ! -f "$src/.ready" ]; then
    # the suite's own test requirements (requirements/test.txt), pinned to versions that install
    # on Python 3.11; grpcio new enough for 3.11, protobuf 3.20 (pure Python) for the library's
    # 2017-era generated code
    uv pip install --quiet --python "$src/venv/bin/python" "$src/etcd3-$PY_ETCD3" \
      grpcio==1.62.3 protobuf==3.20.3 tenacity==6.1.0 six==1.16.0 \
      pytest==7.4.4 "hypothesis==5.48.0" mock==5.1.0
    # hypothesis as the suite pins it (4.x-5.48): later releases refuse its @given tests that use a
    # function-scoped fixture (the FailedHealthCheck added in 5.49)
    touch "$src/.ready"
  fi
}

run_python-etcd3() {
  local endpoint=$1 junit=$2 suite
  suite=$cache/python-etcd3-$PY_ETCD3/etcd3-$PY_ETCD3
  # The suite talks to localhost:2379: the library's clients get the endpoint from
  # KUBEFABRIC_CLIENT_ENDPOINT (conftest.py here), its etcdctl calls from ETCDCTL_ENDPOINTS.
  # TEST_ETCD_VERSION as the suite's CI sets it, so its tests of etcd >= 3.3 features run.
  # The package's own directory is on PYTHONPATH as in the suite's tox setup: its auth test
  # patches the top-level module etcdrpc.
  (cd "$suite" && PYTHONPATH="$PYTHONPATH:$suite/etcd3" KUBEFABRIC_CLIENT_ENDPOINT=$endpoint ETCDCTL_ENDPOINTS=http://$endpoint ETCDCTL_API=3 \
    TEST_ETCD_VERSION=v3.4.0 PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python \
    "$cache/python-etcd3-$PY_ETCD3/venv/bin/python" -m pytest -p no:cacheprovider -q \
      --confcutdir "$suite" -o "python_files=test_*.py" --rootdir "$suite" \
      -c /dev/null -p kf_client_endpoint --junitxml "$junit" tests \
      >"$junit.log" 2>&1) || true
}

AETCD=1.0.0
prepare_aetcd() {
  sdist aetcd aetcd "$AETCD"
  if [ ! -f "$src/.ready" ]; then
    # the suite's own test extra (pytest, pytest-asyncio, pytest-mock as pyproject.toml pins them;
    # pytest-cov left out, its coverage report is not a result); grpcio and protobuf within the
    # library's ranges (grpcio>1.66, protobuf>4,<8), the versions our own lockfile has
    SETUPTOOLS_SCM_PRETEND_VERSION=$AETCD uv pip install --quiet --python "$src/venv/bin/python" \
      "$src/aetcd-$AETCD" grpcio==1.85.3 protobuf==7.36.2 \
      pytest==9.0.3 pytest-asyncio==1.3.0 pytest-mock==3.15.1
    touch "$src/.ready"
  fi
}

run_aetcd() {
  local endpoint=$1 junit=$2 suite
  suite=$cache/aetcd-$AETCD/aetcd-$AETCD
  # Its integration fixtures and etcdctl calls take the server from TEST_ETCD_HTTP_URL (as pifpaf
  # sets it in the suite's CI); test_auth's own aetcd.Client() takes the library's default
  # localhost:2379, pointed at the server by the plugin. asyncio_mode=auto as its pyproject.toml
  # sets it (its async fixtures are plain @pytest.fixture). Without --with-cluster, as a
  # one-member server: test_member_list (three pifpaf members) is skipped on both.
  (cd "$suite" && TEST_ETCD_HTTP_URL=http://$endpoint KUBEFABRIC_CLIENT_ENDPOINT=$endpoint \
    "$cache/aetcd-$AETCD/venv/bin/python" -m pytest -p no:cacheprovider -q \
      --confcutdir "$suite" --rootdir "$suite" -c /dev/null -o asyncio_mode=auto \
      -p kf_client_endpoint --junitxml "$junit" tests \
      >"$junit.log" 2>&1) || true
}

ETCD_CLIENT=0.21.1
prepare_rust-etcd-client() {
  src=$cache/rust-etcd-client-$ETCD_CLIENT
  export PATH="$PATH:$HOME/.cargo/bin"
  command -v cargo >/dev/null || { echo "cargo is required for $lib" >&2; exit 1; }
  command -v protoc >/dev/null || { echo "protoc is required for $lib: apt-get install protobuf-compiler" >&2; exit 1; }
  [ -f /usr/include/google/protobuf/descriptor.proto ] ||
    { echo "protoc's well-known types are required for $lib: apt-get install libprotobuf-dev" >&2; exit 1; }
  if [ ! -f "$src/.ready" ]; then
    rm -rf "$src"; mkdir -p "$src/fetch/src"
    # the crate as published, through cargo's own download (a throwaway package depending on it)
    printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\netcd-client = "=%s"\n' \
      "$ETCD_CLIENT" >"$src/fetch/Cargo.toml"
    touch "$src/fetch/src/lib.rs"
    (cd "$src/fetch" && cargo fetch --quiet)
    tar xzf "$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/etcd-client-$ETCD_CLIENT.crate | head -n1)" -C "$src"
    (cd "$src/etcd-client-$ETCD_CLIENT" && cargo test --locked --no-run --quiet)
    touch "$src/.ready"
  fi
  # the suite's own setup (its CI workflow): etcd with --auth-token-ttl 2 and a root user
  # root/rootpwd granted the root role; the tests enable and disable auth themselves
  server_flags=(--auth-token-ttl 2 --max-request-bytes 1572864)
}

run_rust-etcd-client() {  # runs inside the server's network namespace, the server on :2379
  local endpoint=$1 results=$2
  ETCDCTL_API=3 etcdctl --endpoints "$endpoint" user add root --new-user-password=rootpwd >/dev/null
  ETCDCTL_API=3 etcdctl --endpoints "$endpoint" user grant-role root root >/dev/null
  (cd "$cache/rust-etcd-client-$ETCD_CLIENT/etcd-client-$ETCD_CLIENT" &&
    timeout 600 cargo test --offline --locked --no-fail-fast 2>&1 || true) >"$results"
}

case $lib in
  python-etcd3|aetcd|rust-etcd-client) ;;
  *) echo "unknown library '$lib' (known: python-etcd3, aetcd, rust-etcd-client)" >&2; exit 2 ;;
esac
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"  # kf_client_endpoint.py, the endpoint plugin
"prepare_$lib"
if [ "${2:-}" = --inside ]; then  # run.sh LIB --inside etcd|kubefabric RESULTS, in a new netns
  ip link set lo up
  fixed_port=2379
  "start_$3"
  "run_$lib" "$endpoint" "$4"
  exit 0
fi
rm -rf "$out/etcd-data" "$out/kf-data"
if [ "$lib" = rust-etcd-client ]; then
  [ "$(id -u)" = 0 ] || { echo "$lib needs root (unshare -n: its suite's fixed port 2379 in a private network namespace)" >&2; exit 1; }
  echo "$lib on etcd ($("$etcd_bin" --version | head -n1)) and on KubeFabric, each at 127.0.0.1:2379 in its own network namespace"
  start=$SECONDS
  unshare -n bash "$0" "$lib" --inside etcd "$out/etcd.txt" & etcd_run=$!
  unshare -n bash "$0" "$lib" --inside kubefabric "$out/kubefabric.txt" & kf_run=$!
  wait "$etcd_run" "$kf_run"
  echo "both suites ran in $((SECONDS - start)) s"
  echo "results and logs: $out"
  exec python3 "$here/compare.py" "$out/etcd.txt" "$out/kubefabric.txt" "$here/known_differences.txt"
fi
# Both servers at once, each suite run against its own: the suites mostly wait (leases, locks,
# watches), so running them side by side halves the wall time.
start_etcd; etcd_endpoint=$endpoint
start_kubefabric; kf_endpoint=$endpoint
echo "$lib on etcd ($("$etcd_bin" --version | head -n1)) at $etcd_endpoint, on KubeFabric at $kf_endpoint"
start=$SECONDS
"run_$lib" "$etcd_endpoint" "$out/etcd.xml" & etcd_run=$!
"run_$lib" "$kf_endpoint" "$out/kubefabric.xml" & kf_run=$!
wait "$etcd_run" "$kf_run"
echo "both suites ran in $((SECONDS - start)) s"
cleanup; pids=()
echo "results and logs: $out"
exec python3 "$here/compare.py" "$out/etcd.xml" "$out/kubefabric.xml" "$here/known_differences.txt"
