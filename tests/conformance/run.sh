#!/usr/bin/env bash
# Kubernetes storage conformance: runs k8s.io/apiserver's own storage tests (unmodified, from the
# Go module cache) against an external etcd v3 server: the reference etcd or kubefabric.
#
#   tests/conformance/run.sh [--fresh] [etcd|etcd34|kubefabric] [PACKAGE...]
#
#   etcd        etcd 3.7.3 built by ../shared/tools/etcd/build.sh (or $KUBEFABRIC_TEST_ETCD)
#   etcd34      Debian's etcd 3.4 (/usr/bin/etcd)
#   kubefabric  `kubefabric serve` from this repository (uv environment)
#   PACKAGE     short names (etcd3 cacher registry factory reconcilers peerproxy), import
#               paths, `k8s` (the REST storage tests of 8 built-in resources from
#               k8s.io/kubernetes/pkg/registry, built in ./kube-apiserver) or `all`;
#               default: the 6 k8s.io/apiserver packages
#   --fresh     every test gets a server of its own (slow, the upstream isolation); default:
#               one server per package shared by its tests, each test in a key namespace of its
#               own, then the tests listed in fresh-only.txt with a server each
#
# Prints passed/failed/skipped per package and the failing tests, leaves the raw go test JSON
# and server logs in tests/conformance/_out/<server>-<time>/, exits non-zero on any failure.
# Environment: KUBEFABRIC_CONFORMANCE_TIMEOUT (per package, default 30m),
# KUBEFABRIC_CONFORMANCE_RUN (a -run regexp), KUBEFABRIC_CONFORMANCE_CACHE (build dir, default
# ~/.cache/kubefabric-conformance), KUBEFABRIC_CONFORMANCE_OUT (output dir),
# KUBEFABRIC_CONFORMANCE_KEEP_BINARIES=1 (keep the test binaries in the output dir).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
mode=hybrid
server=etcd
pkgs=()
for arg in "$@"; do
    case "$arg" in
        --fresh) mode=fresh ;;
        --shared) mode=hybrid ;;
        etcd|etcd34|kubefabric) server=$arg ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        -*) echo "unknown option $arg" >&2; exit 2 ;;
        k8s) pkgs+=(@k8s) ;;
        all) pkgs+=(@api @k8s) ;;
        *) pkgs+=("$arg") ;;
    esac
done

all_pkgs=(
    k8s.io/apiserver/pkg/storage/etcd3
    k8s.io/apiserver/pkg/storage/cacher
    k8s.io/apiserver/pkg/registry/generic/registry
    k8s.io/apiserver/pkg/storage/storagebackend/factory
    k8s.io/apiserver/pkg/reconcilers
    k8s.io/apiserver/pkg/util/peerproxy
)
reg=k8s.io/kubernetes/pkg/registry
k8s_pkgs=(
    $reg/core/pod/storage $reg/core/service/storage $reg/core/namespace/storage
    $reg/core/configmap/storage $reg/core/secret/storage $reg/core/node/storage
    $reg/apps/deployment/storage $reg/batch/job/storage
)
[ ${#pkgs[@]} -eq 0 ] && pkgs=(@api)
expanded=()
for p in "${pkgs[@]}"; do
    case "$p" in
        @api) expanded+=("${all_pkgs[@]}") ;;
        @k8s) expanded+=("${k8s_pkgs[@]}") ;;
        */*) expanded+=("$p") ;;
        *) found=; for q in "${all_pkgs[@]}"; do [ "${q##*/}" = "$p" ] && found=$q; done
           [ -n "$found" ] || { echo "unknown package $p" >&2; exit 2; }
           expanded+=("$found") ;;
    esac
done
pkgs=("${expanded[@]}")
# binname PACKAGE: the test binary's (and output files') name, unique per package
binname() {
    case "$1" in
        k8s.io/kubernetes/pkg/registry/*) local r=${1#k8s.io/kubernetes/pkg/registry/}; echo "k8s_${r//\//_}" ;;
        *) echo "${1##*/}" ;;
    esac
}

timeout=${KUBEFABRIC_CONFORMANCE_TIMEOUT:-30m}
cache=${KUBEFABRIC_CONFORMANCE_CACHE:-$HOME/.cache/kubefabric-conformance}
out=${KUBEFABRIC_CONFORMANCE_OUT:-$here/_out/$server-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$cache" "$out"
log() { echo "[conformance] $*" >&2; }

# ---- the server: one command template for the shared server and the per-test servers ----------
case "$server" in
    etcd)
        if [ -n "${KUBEFABRIC_TEST_ETCD:-}" ]; then etcd_bin=$KUBEFABRIC_TEST_ETCD
        else etcd_bin="$(bash "$repo/../shared/tools/etcd/build.sh" | tail -n1)/etcd"; fi
        template="$etcd_bin --name default --data-dir {data_dir} --listen-client-urls http://127.0.0.1:{port} --advertise-client-urls http://127.0.0.1:{port} --listen-peer-urls http://127.0.0.1:{peer_port} --initial-advertise-peer-urls http://127.0.0.1:{peer_port} --initial-cluster default=http://127.0.0.1:{peer_port} --watch-progress-notify-interval={progress_notify_interval} --quota-backend-bytes=8589934592 --unsafe-no-fsync --log-level=error"
        version="$("$etcd_bin" --version | sed -n 1p)"
        ;;
    etcd34)
        etcd_bin=/usr/bin/etcd
        template="$etcd_bin --name default --data-dir {data_dir} --listen-client-urls http://127.0.0.1:{port} --advertise-client-urls http://127.0.0.1:{port} --listen-peer-urls http://127.0.0.1:{peer_port} --initial-advertise-peer-urls http://127.0.0.1:{peer_port} --initial-cluster default=http://127.0.0.1:{peer_port} --experimental-watch-progress-notify-interval={progress_notify_interval} --quota-backend-bytes=8589934592 --log-level=error --logger=zap"
        version="$("$etcd_bin" --version | sed -n 1p)"
        ;;
    kubefabric)
        (cd "$repo" && uv sync --frozen --quiet) >&2
        kf_bin="$repo/.venv/bin/kubefabric"
        template="$kf_bin serve --listen-client-urls http://127.0.0.1:{port} --data-dir {data_dir} --watch-progress-notify-interval {progress_notify_interval} --sqlite-synchronous NORMAL --log-level warning"
        version="kubefabric $(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
        ;;
esac
log "server: $version"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

server_pid=
start_shared_server() { # $1: name for the log and data dir; sets endpoint
    local name=$1 port peer dir cmd
    port=$(free_port); peer=$(free_port)
    dir="$(mktemp -d "${TMPDIR:-/tmp}/kfconf-$name.XXXXXX")"
    cmd=${template//\{port\}/$port}; cmd=${cmd//\{peer_port\}/$peer}
    cmd=${cmd//\{data_dir\}/$dir/data}; cmd=${cmd//\{progress_notify_interval\}/600s}
    setsid bash -c "exec $cmd" >"$out/server-$name.log" 2>&1 &
    server_pid=$!; server_dir=$dir; endpoint=127.0.0.1:$port
    for _ in $(seq 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        kill -0 "$server_pid" 2>/dev/null || { cat "$out/server-$name.log" >&2; log "server exited"; return 1; }
        sleep 0.1
    done
    log "server did not listen on $port within 60s"; return 1
}
stop_shared_server() {
    [ -n "$server_pid" ] || return 0
    kill -TERM -- "-$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    rm -rf "$server_dir"; server_pid=
}
cleanup() { stop_shared_server; [ -n "${KUBEFABRIC_CONFORMANCE_KEEP_BINARIES:-}" ] || rm -rf "$out/bin"; }
trap cleanup EXIT

# ---- build: upstream tests from the module cache, two helper files swapped by -overlay ---------
# go refuses -overlay for files under GOMODCACHE, so the build sees k8s.io/apiserver through a
# symlink at a stable path (stable paths keep ~/.cache/go-build hits across checkouts).
cd "$here"
apiver=$(go list -m -f '{{.Version}}' k8s.io/apiserver)
go mod download k8s.io/apiserver
moddir=$(go list -m -f '{{.Dir}}' k8s.io/apiserver)
src="$cache/src/apiserver@$apiver"
mkdir -p "$cache/src" "$out/bin"
[ "$(readlink "$src" 2>/dev/null)" = "$moddir" ] || ln -sfn "$moddir" "$src"
# Per-run files (concurrent runs must not rewrite each other's): the overlay map, the go.mod
# with the replace line, the test binaries.
cat >"$out/overlay.json" <<EOF
{"Replace": {
  "$src/pkg/storage/etcd3/testserver/test_server.go": "$here/_overlay/testserver/test_server.go",
  "$src/pkg/storage/etcd3/testing/test_server.go": "$here/_overlay/etcd3testing/test_server.go"
}}
EOF
{ cat go.mod; echo; echo "replace k8s.io/apiserver => $src"; } >"$out/go.mod"
cp go.sum "$out/go.sum"
gobuild=(-modfile="$out/go.mod" -overlay="$out/overlay.json")

api_pkgs=(); kube_pkgs=()
for p in "${pkgs[@]}"; do
    case "$p" in k8s.io/kubernetes/*) kube_pkgs+=("$p") ;; *) api_pkgs+=("$p") ;; esac
done
log "building the test binaries of ${#pkgs[@]} package(s) (k8s.io/apiserver $apiver)"
t0=$(date +%s)
[ ${#api_pkgs[@]} -eq 0 ] || go test "${gobuild[@]}" -c -o "$out/bin/" "${api_pkgs[@]}"
if [ ${#kube_pkgs[@]} -gt 0 ]; then
    # k8s.io/kubernetes packages build in the kube-apiserver module (it has the staging
    # replaces); its k8s.io/apiserver replace is pointed at the same symlink.
    kdir="$here/kube-apiserver"
    sed "s#^\(\s*\)k8s.io/apiserver => k8s.io/apiserver v[0-9.]*\$#\1k8s.io/apiserver => $src#" \
        "$kdir/go.mod" >"$out/k8s.go.mod"
    grep -q "k8s.io/apiserver => $src" "$out/k8s.go.mod" || { log "no k8s.io/apiserver replace in $kdir/go.mod"; exit 1; }
    cp "$kdir/go.sum" "$out/k8s.go.sum"
    kubedir=$(cd "$kdir" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
    for p in "${kube_pkgs[@]}"; do
        (cd "$kdir" && go test -modfile="$out/k8s.go.mod" -overlay="$out/overlay.json" -c \
            -o "$out/bin/$(binname "$p").test" "$p")
    done
fi
build_s=$(( $(date +%s) - t0 ))
log "build: ${build_s}s"
echo "$build_s" >"$out/build-seconds"

# ---- run -----------------------------------------------------------------------------------
freshfile="$here/fresh-only.txt"
toplevel_fresh=$(grep -v '^\s*#' "$freshfile" | sed -n 's/^\^\([A-Za-z0-9_]*\).*/\1/p' | sort -u | paste -sd'|' -)

run_pkg() { # $1: package, $2: phase name, rest: extra test flags
    local pkg=$1 phase=$2; shift 2
    local short; short=$(binname "$pkg")
    local bin="$out/bin/$short.test"
    [ -x "$bin" ] || { log "$pkg has no test binary"; return 0; }
    local runflag=()
    [ -n "${KUBEFABRIC_CONFORMANCE_RUN:-}" ] && runflag=(-test.run="$KUBEFABRIC_CONFORMANCE_RUN")
    local dir="$src/${pkg#k8s.io/apiserver/}"
    case "$pkg" in k8s.io/kubernetes/*) dir="$kubedir/${pkg#k8s.io/kubernetes/}" ;; esac
    ( cd "$dir" &&
      go tool test2json -t -p "$pkg" "$bin" -test.v=test2json -test.paniconexit0 \
          -test.count=1 -test.timeout="$timeout" "$@" "${runflag[@]}" ) \
        >>"$out/$phase-$short.json" 2>>"$out/$phase-$short.stderr" || true
}

fresh_phase() { # $1: package, $2: phase, rest: extra test flags; a fresh server per RunEtcd call
    (
        unset KUBEFABRIC_ETCD_ENDPOINT KUBEFABRIC_ETCD_PROGRESS_NOTIFY_INTERVAL
        export KUBEFABRIC_ETCD_SERVER_CMD="$template" KUBEFABRIC_CONFORMANCE_FRESH_ONLY="$freshfile"
        [ "$2" = fresh-listed ] && export KUBEFABRIC_CONFORMANCE_PHASE=fresh-listed
        run_pkg "$@"
    )
}

t0=$(date +%s)
for pkg in "${pkgs[@]}"; do
    short=$(binname "$pkg")
    if [ "$mode" = fresh ]; then
        log "$short: every test with a $server server of its own"
        fresh_phase "$pkg" fresh
        continue
    fi
    log "$short: shared $server server"
    start_shared_server "$short"
    KUBEFABRIC_ETCD_ENDPOINT=$endpoint KUBEFABRIC_ETCD_PROGRESS_NOTIFY_INTERVAL=10m \
        KUBEFABRIC_CONFORMANCE_FRESH_ONLY="$freshfile" KUBEFABRIC_CONFORMANCE_PHASE=shared \
        run_pkg "$pkg" shared
    stop_shared_server
    listed=$("$out/bin/$short.test" -test.list "^($toplevel_fresh)\$" 2>/dev/null | grep '^Test' | paste -sd'|' - || true)
    if [ -n "$listed" ]; then
        log "$short: the tests of fresh-only.txt, a $server server each"
        fresh_phase "$pkg" fresh-listed -test.run="^($listed)\$"
    fi
done
run_s=$(( $(date +%s) - t0 ))
log "tests: ${run_s}s"

python3 "$here/summarise.py" --server "$version" --build-seconds "$build_s" --run-seconds "$run_s" "$out"
