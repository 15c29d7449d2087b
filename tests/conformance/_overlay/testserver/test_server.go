// KubeFabric conformance harness: replaces k8s.io/apiserver/pkg/storage/etcd3/testserver
// at build time (go test -overlay, see ../../run.sh), so that the upstream storage tests run
// unmodified from the module cache against an EXTERNAL etcd v3 endpoint instead of an embedded
// etcd.
//
// Every RunEtcd call gets its own key namespace on the shared server
// (/kfconf/<run>/<n>-<test name>): the client's KV (including RangeStream) and Watcher
// add the prefix on the way out and strip it on the way back, exactly like a dedicated server
// would look to the test. Revisions and compaction stay global to the server.
//
// With KUBEFABRIC_ETCD_SERVER_CMD set instead, every RunEtcd call starts a fresh server of its
// own (as the upstream helper does with an embedded etcd) and no namespace is needed.
//
// Environment:
//
//	KUBEFABRIC_ETCD_ENDPOINT                 host:port or URL list (comma separated) of a shared server
//	KUBEFABRIC_ETCD_SERVER_CMD               or: a shell command template that starts a fresh server
//	                                         per test; {port}, {peer_port}, {data_dir} and
//	                                         {progress_notify_interval} are substituted
//	KUBEFABRIC_ETCD_PROGRESS_NOTIFY_INTERVAL the server's watch progress-notify interval (e.g. 1s);
//	                                         tests that configure this interval run only when it matches
//	KUBEFABRIC_CONFORMANCE_KEEP_KEYS=1       keep each test's keys (default: delete them at cleanup)
//	KUBEFABRIC_CONFORMANCE_FRESH_ONLY        file of regexps (fresh-only.txt) naming tests that need a
//	                                         server of their own, and
//	KUBEFABRIC_CONFORMANCE_PHASE             "shared": skip those tests; "fresh-listed": run only those
package testserver

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"go.etcd.io/etcd/client/v3/namespace"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	storagetesting "k8s.io/apiserver/pkg/storage/testing"
)

const (
	EndpointEnv               = "KUBEFABRIC_ETCD_ENDPOINT"
	ServerCmdEnv              = "KUBEFABRIC_ETCD_SERVER_CMD"
	ProgressNotifyIntervalEnv = "KUBEFABRIC_ETCD_PROGRESS_NOTIFY_INTERVAL"
	KeepKeysEnv               = "KUBEFABRIC_CONFORMANCE_KEEP_KEYS"
	FreshOnlyEnv              = "KUBEFABRIC_CONFORMANCE_FRESH_ONLY"
	PhaseEnv                  = "KUBEFABRIC_CONFORMANCE_PHASE"
)

var (
	runID      = fmt.Sprintf("%x-%d", time.Now().UnixNano()/1e6, os.Getpid())
	testSerial atomic.Int64
	unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.=-]+`)

	prefixMu sync.Mutex
	prefixes = map[*kubernetes.Client]string{}
)

// NewTestConfig returns the embedded-etcd configuration the upstream tests expect to receive
// and tweak. With an external server only a few of its fields mean anything: RunEtcd compares
// them with the defaults and skips tests whose server settings cannot be honoured.
func NewTestConfig(t testing.TB) *embed.Config {
	cfg := embed.NewConfig()
	cfg.UnsafeNoFsync = true
	u := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls = []url.URL{u}
	cfg.AdvertiseClientUrls = []url.URL{u}
	cfg.Dir = t.TempDir()
	return cfg
}

// KeyPrefix is the namespace that RunEtcd gave this client ("" if unknown).
func KeyPrefix(c *kubernetes.Client) string {
	prefixMu.Lock()
	defer prefixMu.Unlock()
	return prefixes[c]
}

type freshRule struct {
	re     *regexp.Regexp
	reason string
}

var (
	freshOnce  sync.Once
	freshRules []freshRule
	freshErr   error
)

func loadFreshRules() {
	path := os.Getenv(FreshOnlyEnv)
	if path == "" {
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		freshErr = err
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		pattern, reason, _ := strings.Cut(line, " #")
		re, err := regexp.Compile(strings.TrimSpace(pattern))
		if err != nil {
			freshErr = fmt.Errorf("%s: %w", path, err)
			return
		}
		freshRules = append(freshRules, freshRule{re, strings.TrimSpace(reason)})
	}
}

// selectPhase skips the test when it belongs to the other phase of run.sh.
func selectPhase(t testing.TB) {
	phase := os.Getenv(PhaseEnv)
	if phase == "" {
		return
	}
	freshOnce.Do(loadFreshRules)
	if freshErr != nil {
		t.Fatalf("kubefabric-conformance: %v", freshErr)
	}
	var rule *freshRule
	for i := range freshRules {
		if freshRules[i].re.MatchString(t.Name()) {
			rule = &freshRules[i]
			break
		}
	}
	switch {
	case phase == "shared" && rule != nil:
		t.Skipf("kubefabric-conformance: needs a server of its own (%s): runs in the fresh-server phase", rule.reason)
	case phase == "fresh-listed" && rule == nil:
		t.Skip("kubefabric-conformance: runs in the shared-server phase")
	}
}

func endpoints(t testing.TB) []string {
	raw := os.Getenv(EndpointEnv)
	if raw == "" {
		t.Fatalf("%s is not set: this build of the storage tests talks to an external etcd endpoint (use tests/conformance/run.sh)", EndpointEnv)
	}
	var eps []string
	for _, ep := range strings.Split(raw, ",") {
		ep = strings.TrimSpace(ep)
		if ep == "" {
			continue
		}
		if !strings.Contains(ep, "://") {
			ep = "http://" + ep
		}
		eps = append(eps, ep)
	}
	return eps
}

// checkConfig skips a test whose embedded-server configuration the external server cannot have.
func checkConfig(t testing.TB, cfg *embed.Config) {
	if cfg == nil {
		return
	}
	if !cfg.ClientTLSInfo.Empty() || cfg.ClientAutoTLS {
		t.Skip("kubefabric-conformance: test needs an etcd serving client TLS with its own certificates; the external endpoint is plaintext")
	}
	for _, u := range cfg.ListenClientUrls {
		if u.Scheme == "https" || u.Scheme == "unixs" {
			t.Skip("kubefabric-conformance: test needs an etcd serving client TLS; the external endpoint is plaintext")
		}
	}
	def := embed.NewConfig()
	if cfg.WatchProgressNotifyInterval != def.WatchProgressNotifyInterval &&
		!strings.Contains(os.Getenv(ServerCmdEnv), "{progress_notify_interval}") {
		have, err := time.ParseDuration(os.Getenv(ProgressNotifyIntervalEnv))
		if err != nil || have != cfg.WatchProgressNotifyInterval {
			t.Skipf("kubefabric-conformance: test needs the server's watch progress-notify interval = %v; set %s when the server runs with it (now %q)",
				cfg.WatchProgressNotifyInterval, ProgressNotifyIntervalEnv, os.Getenv(ProgressNotifyIntervalEnv))
		}
	}
	// QuotaBackendBytes and the fsync setting are server tuning that does not change results:
	// the external server is started with a large quota by run.sh.
}

// RunEtcd returns a client of the external server whose keys live in a namespace of their own.
// The namespace's keys are deleted when the test ends.
func RunEtcd(t testing.TB, cfg *embed.Config) *kubernetes.Client {
	t.Helper()
	selectPhase(t)
	checkConfig(t, cfg)

	var eps []string
	fresh := os.Getenv(ServerCmdEnv) != ""
	if fresh {
		eps = startServer(t, cfg)
	} else {
		eps = endpoints(t)
	}
	logger := zaptest.NewLogger(t, zaptest.Level(zapcore.ErrorLevel)).Named("etcd-client")
	client, err := kubernetes.New(clientv3.Config{
		Endpoints:   eps,
		DialTimeout: 10 * time.Second,
		Logger:      logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	raw := client.KV

	name := unsafeName.ReplaceAllString(t.Name(), "_")
	if len(name) > 80 {
		name = name[:80]
	}
	prefix := fmt.Sprintf("/kfconf/%s/%06d-%s", runID, testSerial.Add(1), name)

	// Fail fast (and clearly) when the server is not there.
	for deadline := time.Now().Add(30 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = client.Status(ctx, eps[0])
		cancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		client.Close()
		t.Fatalf("external etcd %v does not answer Status: %v", eps, err)
	}

	if fresh {
		prefix = ""
	} else {
		client.KV = &prefixKV{KV: namespace.NewKV(raw, prefix), raw: raw, pfx: prefix}
		client.Watcher = namespace.NewWatcher(client.Watcher, prefix)
	}

	// The same recorders the upstream helper installs.
	kubernetesRecorder := storagetesting.NewKubernetesRecorder(client.Kubernetes)
	client.KV = storagetesting.NewKVRecorder(client.KV, kubernetesRecorder)
	client.Kubernetes = kubernetesRecorder

	prefixMu.Lock()
	prefixes[client] = prefix
	prefixMu.Unlock()

	t.Cleanup(func() {
		if keep, _ := strconv.ParseBool(os.Getenv(KeepKeysEnv)); !keep && !fresh {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if _, err := raw.Delete(ctx, prefix, clientv3.WithPrefix()); err != nil {
				t.Logf("kubefabric-conformance: could not delete the keys of %s: %v", prefix, err)
			}
			cancel()
		}
		prefixMu.Lock()
		delete(prefixes, client)
		prefixMu.Unlock()
		client.Close()
	})
	return client
}

// shortDuration writes d as "<n>s" or "<n>ms", which both etcd and kubefabric parse.
func shortDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var startMu sync.Mutex

// defaultProgressNotifyInterval is etcd's --watch-progress-notify-interval default.
const defaultProgressNotifyInterval = 10 * time.Minute

// startServer runs KUBEFABRIC_ETCD_SERVER_CMD on free loopback ports with a fresh data
// directory, waits until it answers Status, and stops it when the test ends.
func startServer(t testing.TB, cfg *embed.Config) []string {
	t.Helper()
	interval := embed.NewConfig().WatchProgressNotifyInterval
	if cfg != nil {
		interval = cfg.WatchProgressNotifyInterval
	}
	if interval == 0 {
		interval = defaultProgressNotifyInterval // what etcd does with 0
	}
	startMu.Lock() // ports are picked then bound by another process: one start at a time
	defer startMu.Unlock()
	port, peerPort := freePort(t), freePort(t)
	dir := t.TempDir()
	cmdline := strings.NewReplacer(
		"{port}", strconv.Itoa(port),
		"{peer_port}", strconv.Itoa(peerPort),
		"{data_dir}", dir+"/data",
		"{progress_notify_interval}", shortDuration(interval),
	).Replace(os.Getenv(ServerCmdEnv))
	logPath := dir + "/server.log"
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", "exec "+cmdline)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %q: %v", cmdline, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logFile.Close(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	ep := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exited:
			out, _ := os.ReadFile(logPath)
			t.Fatalf("server %q exited before it was ready:\n%s", cmdline, out)
		default:
		}
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logPath)
			t.Fatalf("server %q not listening after 60s:\n%s", cmdline, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return []string{ep}
}

// prefixKV is namespace.NewKV plus RangeStream, which the etcd namespace package leaves
// unimplemented.
type prefixKV struct {
	clientv3.KV
	raw clientv3.KV
	pfx string
}

func (kv *prefixKV) GetStream(ctx context.Context, key string, opts ...clientv3.OpOption) (clientv3.GetStreamChan, error) {
	op := clientv3.OpGet(key, opts...)
	begin, end := prefixRange(kv.pfx, []byte(key), op.RangeBytes())
	if end != nil {
		opts = append(opts, clientv3.WithRange(string(end)))
	}
	in, err := kv.raw.GetStream(ctx, string(begin), opts...)
	if err != nil {
		return nil, err
	}
	out := make(chan clientv3.RangeStreamResponse, 1)
	go func() {
		defer close(out)
		for r := range in {
			if r.RangeResponse != nil {
				for _, kv2 := range r.Kvs {
					kv2.Key = kv2.Key[len(kv.pfx):]
				}
			}
			out <- r
		}
	}()
	return out, nil
}

// prefixRange maps [key, end) of the namespace onto the server's keyspace; end "\x00" (from
// key to the end of the keyspace) becomes the end of the namespace.
func prefixRange(pfx string, key, end []byte) ([]byte, []byte) {
	begin := append([]byte(pfx), key...)
	switch {
	case len(end) == 0:
		return begin, nil
	case len(end) == 1 && end[0] == 0:
		e := []byte(pfx)
		for i := len(e) - 1; i >= 0; i-- {
			e[i]++
			if e[i] != 0 {
				return begin, e[:i+1]
			}
		}
		return begin, []byte{0}
	default:
		return begin, append([]byte(pfx), end...)
	}
}
