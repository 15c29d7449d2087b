// Command loadgen drives an etcd v3 API server (etcd, kine, kubefabric) with one workload and
// prints one JSON line with throughput and latency percentiles.
//
// Workloads:
//
//	put            Put of --val-size bytes to a random key out of --key-space keys under the prefix.
//	get            point Range (linearizable unless --serializable) of a random key out of
//	               --get-keys keys pre-loaded under the prefix.
//	range          Range over a prefix holding --range-keys pre-loaded keys (all returned).
//	watch-latency  one writer Puts at --rate per second, --clients watchers watch the prefix, each
//	               on a watch stream of its own; latency = event received minus the writer's Put
//	               response (commit ack).
//	watch-fanout   the same with many watchers sharing few streams (default: one stream per
//	               connection, one connection per 100 watchers, as informers sharing a clientv3
//	               client do), e.g. --clients 1000 --conns 10: 100 watchers on each of 10 streams;
//	               adds the latency of the slowest watcher per event.
//
// --clients goroutines run closed loops (one request in flight each). They share --conns client
// connections round-robin (default: one connection per 8 clients, like etcd's own benchmark tool
// which multiplexes many clients over few HTTP/2 connections). The run is bounded: --warmup then
// --duration, or --warmup then --total operations, and a hard --max-time deadline in any case.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"
)

type config struct {
	endpoints   []string
	workload    string
	clients     int
	conns       int
	duration    time.Duration
	warmup      time.Duration
	markWindow  bool
	total       int64
	maxTime     time.Duration
	valSize     int
	valueKind   string // "bytes" or "k8s"
	keySpace    int
	getKeys     int
	rangeKeys   int
	loadFrom    int // load: the first key number written (keys below it are already there)
	loadBatch   int // load: puts per Txn
	rate        float64
	streams     int           // watch workloads: watch streams the watchers share (0: per workload)
	drain       time.Duration // watch workloads: how long to wait for the last write's events
	prefix      string
	prefixes    []string // put/get keys, spread over these (default: just prefix); see keyAt
	serializble bool
	reqTimeout  time.Duration
	dialTimeout time.Duration
}

// Result is the one JSON line printed per run. The first nine fields are the contract with
// bench/run.py; the rest are for diagnosis.
type Result struct {
	Workload   string  `json:"workload"`
	Clients    int     `json:"clients"`
	Ops        int64   `json:"ops"`
	Seconds    float64 `json:"seconds"`
	OpsPerSec  float64 `json:"ops_per_sec"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	Errors     int64   `json:"errors"`
	Conns      int     `json:"conns"`
	MeanMs     float64 `json:"mean_ms"`
	P90Ms      float64 `json:"p90_ms"`
	MaxMs      float64 `json:"max_ms"`
	ValSize    int     `json:"val_size"`
	Endpoints  string  `json:"endpoints"`
	FirstError string  `json:"first_error,omitempty"`
	Prefixes   int     `json:"prefixes,omitempty"` // --prefixes: how many the keys were spread over
	// watch-latency only
	Writes      int64   `json:"writes,omitempty"`
	Watchers    int     `json:"watchers,omitempty"`
	Missed      int64   `json:"missed_events,omitempty"`
	EarlyEvents int64   `json:"events_before_ack,omitempty"`
	PutP50Ms    float64 `json:"put_p50_ms,omitempty"`
	SendToEvP50 float64 `json:"send_to_event_p50_ms,omitempty"`
	SendToEvP99 float64 `json:"send_to_event_p99_ms,omitempty"`
	Streams     int     `json:"streams,omitempty"`
	// per measured write, the latency of the last watcher to get it (ack -> event)
	SlowP50Ms float64 `json:"slowest_p50_ms,omitempty"`
	SlowP99Ms float64 `json:"slowest_p99_ms,omitempty"`
	SlowMaxMs float64 `json:"slowest_max_ms,omitempty"`
	// the same from the writer's Put being sent (commit ack not needed: includes the Put itself)
	SlowSendP50 float64 `json:"slowest_send_p50_ms,omitempty"`
	SlowSendP99 float64 `json:"slowest_send_p99_ms,omitempty"`
	Unordered   int64   `json:"unordered_events,omitempty"` // duplicate or out-of-order events at a watcher
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	if cfg.workload == "status" {
		if err := probe(cfg); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen: not ready:", err)
			os.Exit(1)
		}
		fmt.Println(`{"ready":true}`)
		return
	}
	res, err := run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}

func parseFlags(args []string) (*config, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	c := &config{}
	endpoints := fs.String("endpoints", "127.0.0.1:2379", "comma-separated host:port or http://host:port list")
	fs.StringVar(&c.workload, "workload", "put", "put | get | range | watch-latency | watch-fanout | status (readiness probe: Maintenance.Status until it answers or --max-time) | "+
		"load (write the --range-keys keys of the range workload, then stop)")
	fs.IntVar(&c.clients, "clients", 1, "concurrent clients (watchers for watch-latency and watch-fanout)")
	fs.IntVar(&c.conns, "conns", 0, "gRPC connections shared round-robin by the clients (0: ceil(clients/8); watch-fanout: ceil(clients/100))")
	fs.IntVar(&c.streams, "streams", 0, "watch workloads: watch streams, spread round-robin over the connections, the watchers spread round-robin over them "+
		"(0: watch-latency one per watcher, watch-fanout one per connection)")
	fs.DurationVar(&c.drain, "drain", 5*time.Second, "watch workloads: after the last write, wait up to this long for its events")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "measured time (ignored when --total > 0)")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "unmeasured time before measuring")
	fs.Int64Var(&c.total, "total", 0, "measure exactly this many operations instead of --duration (watch-latency: writes)")
	fs.DurationVar(&c.maxTime, "max-time", 10*time.Minute, "hard deadline for the whole run, preload included")
	fs.IntVar(&c.valSize, "val-size", 256, "value size in bytes")
	fs.StringVar(&c.valueKind, "value", "bytes", "bytes: --val-size letters; k8s: a custom resource of about --val-size bytes "+
		"as kube-apiserver stores it (JSON with apiVersion, kind, metadata.name/namespace, labels app=a<i mod 100>, "+
		"tier=t<i mod 3>, spec.customer=c<i mod 1000>) for key number i, so label indexes have something to index")
	fs.IntVar(&c.keySpace, "key-space", 10000, "put: number of distinct keys written at random")
	fs.IntVar(&c.getKeys, "get-keys", 1000, "get: number of keys pre-loaded and read at random")
	fs.IntVar(&c.rangeKeys, "range-keys", 1000, "range: number of keys pre-loaded under the range prefix")
	fs.IntVar(&c.loadFrom, "load-from", 0, "load: write keys number --load-from up to --range-keys only (grow a loaded range in steps)")
	fs.IntVar(&c.loadBatch, "load-batch", 1, "load: puts per Txn (etcd refuses more than its --max-txn-ops, 128 by default)")
	fs.Float64Var(&c.rate, "rate", 100, "watch workloads: writer puts per second (0: as fast as possible)")
	fs.StringVar(&c.prefix, "prefix", "/bench/", "key prefix; the workload name is appended")
	prefixes := fs.String("prefixes", "", "put/get: comma-separated key prefixes instead of --prefix, e.g. /bench/s0/,/bench/s1/; "+
		"the workload name is appended to each and key i lives under prefix i mod count (spread evenly)")
	fs.BoolVar(&c.serializble, "serializable", false, "get/range: serializable instead of linearizable reads")
	fs.DurationVar(&c.reqTimeout, "request-timeout", 10*time.Second, "per-request timeout")
	fs.DurationVar(&c.dialTimeout, "dial-timeout", 5*time.Second, "connection timeout")
	fs.BoolVar(&c.markWindow, "mark-window", false, "put/get/range: write the lines \""+windowStart+"\" and \""+windowEnd+"\" to stderr "+
		"when the measured window opens and closes (bench/run.py reads the servers' CPU time at those moments)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	for _, e := range strings.Split(*endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			c.endpoints = append(c.endpoints, e)
		}
	}
	switch {
	case len(c.endpoints) == 0:
		return nil, errors.New("--endpoints is empty")
	case c.clients < 1:
		return nil, errors.New("--clients must be >= 1")
	case c.total <= 0 && c.duration <= 0:
		return nil, errors.New("need --duration > 0 or --total > 0")
	case c.keySpace < 1 || c.getKeys < 1 || c.rangeKeys < 1:
		return nil, errors.New("key counts must be >= 1")
	case c.loadFrom < 0 || c.loadFrom > c.rangeKeys:
		return nil, errors.New("--load-from must be between 0 and --range-keys")
	case c.loadBatch < 1:
		return nil, errors.New("--load-batch must be >= 1")
	case c.valueKind != "bytes" && c.valueKind != "k8s":
		return nil, fmt.Errorf("--value is bytes or k8s, not %q", c.valueKind)
	}
	if c.conns <= 0 {
		if c.workload == "watch-fanout" {
			c.conns = (c.clients + 99) / 100
		} else {
			c.conns = (c.clients + 7) / 8
		}
	}
	if c.conns > c.clients {
		c.conns = c.clients
	}
	switch c.workload {
	case "put", "get", "range", "watch-latency", "watch-fanout", "status", "load":
	default:
		return nil, fmt.Errorf("unknown --workload %q", c.workload)
	}
	if c.streams <= 0 {
		if c.workload == "watch-fanout" {
			c.streams = c.conns
		} else {
			c.streams = c.clients
		}
	}
	c.streams = min(c.streams, c.clients)
	c.prefix = strings.TrimSuffix(c.prefix, "/") + "/" + c.workload + "/"
	for _, p := range strings.Split(*prefixes, ",") {
		if p = strings.TrimSpace(p); p != "" {
			c.prefixes = append(c.prefixes, strings.TrimSuffix(p, "/")+"/"+c.workload+"/")
		}
	}
	if len(c.prefixes) > 0 && c.workload != "put" && c.workload != "get" && c.workload != "status" {
		return nil, fmt.Errorf("--prefixes works with put and get only, not %q", c.workload)
	}
	if len(c.prefixes) == 0 {
		c.prefixes = []string{c.prefix}
	}
	return c, nil
}

func newClients(cfg *config) ([]*clientv3.Client, error) {
	var out []*clientv3.Client
	for i := 0; i < cfg.conns; i++ {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   cfg.endpoints,
			DialTimeout: cfg.dialTimeout,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			closeAll(out)
			return nil, err
		}
		out = append(out, cli)
	}
	return out, nil
}

func closeAll(cs []*clientv3.Client) {
	for _, c := range cs {
		c.Close()
	}
}

// errCounter counts errors and keeps the first message.
type errCounter struct {
	n     atomic.Int64
	once  sync.Once
	first string
}

func (e *errCounter) add(err error) {
	e.n.Add(1)
	e.once.Do(func() { e.first = err.Error() })
}

func key(prefix string, i int) string { return prefix + fmt.Sprintf("%08d", i) }

// keyAt is key number i of the put/get key space: under prefix i mod len(prefixes), so the keys
// spread evenly over the prefixes (with one prefix, the same as key(cfg.prefix, i)).
func (c *config) keyAt(i int) string { return key(c.prefixes[i%len(c.prefixes)], i) }

func run(cfg *config) (*Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.maxTime)
	defer cancel()
	clis, err := newClients(cfg)
	if err != nil {
		return nil, err
	}
	defer closeAll(clis)
	value := make([]byte, cfg.valSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	// the value of key number i of the put/get key space (valueOf) and of the range one
	valueOf := func(int) string { return string(value) }
	rangeValueOf := valueOf
	if cfg.valueKind == "k8s" {
		valueOf = func(i int) string { return k8sObject(cfg.keyAt(i), i, cfg.valSize) }
		rangeValueOf = func(i int) string { return k8sObject(key(cfg.prefix, i), i, cfg.valSize) }
	}
	res := &Result{Workload: cfg.workload, Clients: cfg.clients, Conns: cfg.conns, ValSize: cfg.valSize,
		Endpoints: strings.Join(cfg.endpoints, ",")}
	if len(cfg.prefixes) > 1 {
		res.Prefixes = len(cfg.prefixes)
	}
	if cfg.workload == "watch-latency" || cfg.workload == "watch-fanout" {
		return res, watchLatency(ctx, cfg, clis, res)
	}

	// Pre-load (skipped when a previous run on the same server already did it).
	switch cfg.workload {
	case "load":
		start := time.Now()
		if cfg.loadFrom > 0 || cfg.loadBatch > 1 {
			err = bulkLoad(ctx, cfg, clis, rangeValueOf)
		} else {
			err = preload(ctx, cfg, clis, []string{cfg.prefix}, func(i int) string { return key(cfg.prefix, i) },
				cfg.rangeKeys, rangeValueOf)
		}
		res.Ops = int64(cfg.rangeKeys - cfg.loadFrom)
		res.Seconds = time.Since(start).Seconds()
		return res, err
	case "get":
		err = preload(ctx, cfg, clis, cfg.prefixes, cfg.keyAt, cfg.getKeys, valueOf)
	case "range":
		err = preload(ctx, cfg, clis, []string{cfg.prefix}, func(i int) string { return key(cfg.prefix, i) },
			cfg.rangeKeys, rangeValueOf)
	}
	if err != nil {
		return nil, fmt.Errorf("preload: %w", err)
	}

	var op func(ctx context.Context, cli *clientv3.Client, rng *rand.Rand) error
	readOpts := func(extra ...clientv3.OpOption) []clientv3.OpOption {
		if cfg.serializble {
			extra = append(extra, clientv3.WithSerializable())
		}
		return extra
	}
	switch cfg.workload {
	case "put":
		op = func(ctx context.Context, cli *clientv3.Client, rng *rand.Rand) error {
			i := rng.IntN(cfg.keySpace)
			_, err := cli.Put(ctx, cfg.keyAt(i), valueOf(i))
			return err
		}
	case "get":
		opts := readOpts()
		op = func(ctx context.Context, cli *clientv3.Client, rng *rand.Rand) error {
			r, err := cli.Get(ctx, cfg.keyAt(rng.IntN(cfg.getKeys)), opts...)
			if err == nil && len(r.Kvs) != 1 {
				err = fmt.Errorf("get returned %d kvs, want 1", len(r.Kvs))
			}
			return err
		}
	case "range":
		opts := readOpts(clientv3.WithPrefix())
		op = func(ctx context.Context, cli *clientv3.Client, rng *rand.Rand) error {
			r, err := cli.Get(ctx, cfg.prefix, opts...)
			if err == nil && len(r.Kvs) != cfg.rangeKeys {
				err = fmt.Errorf("range returned %d kvs, want %d", len(r.Kvs), cfg.rangeKeys)
			}
			return err
		}
	}
	return res, closedLoop(ctx, cfg, clis, op, res)
}

// preload writes keys keyAt(0..n-1) unless the prefixes already hold exactly n keys together.
// (One count per prefix: with --prefixes on a sharded server, each count stays on one shard.)
func preload(ctx context.Context, cfg *config, clis []*clientv3.Client, prefixes []string,
	keyAt func(int) string, n int, valueOf func(int) string) error {
	var count int64
	var err error
	for _, prefix := range prefixes {
		cctx, cancel := context.WithTimeout(ctx, cfg.reqTimeout)
		r, e := clis[0].Get(cctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if e != nil {
			err = e
			break
		}
		count += r.Count
	}
	if err == nil && count == int64(n) {
		return nil
	}
	return writeInParallel(ctx, cfg, clis, 0, n, 1, func(ctx context.Context, cli *clientv3.Client, i, _ int) error {
		_, err := cli.Put(ctx, keyAt(i), valueOf(i))
		return err
	})
}

// bulkLoad writes keys --load-from .. --range-keys-1 of the range workload, --load-batch Puts per Txn.
func bulkLoad(ctx context.Context, cfg *config, clis []*clientv3.Client, rangeValueOf func(int) string) error {
	return writeInParallel(ctx, cfg, clis, cfg.loadFrom, cfg.rangeKeys, cfg.loadBatch,
		func(ctx context.Context, cli *clientv3.Client, lo, hi int) error {
			ops := make([]clientv3.Op, 0, hi-lo)
			for i := lo; i < hi; i++ {
				ops = append(ops, clientv3.OpPut(key(cfg.prefix, i), rangeValueOf(i)))
			}
			_, err := cli.Txn(ctx).Then(ops...).Commit()
			return err
		})
}

// writeInParallel calls write(lo, hi) for consecutive spans of `step` key numbers covering
// from..n-1, from min(64, max(8, clients)) goroutines spread over the connections; a failed
// write is tried three times, each with --request-timeout; the first failure stops the run.
func writeInParallel(ctx context.Context, cfg *config, clis []*clientv3.Client, from, n, step int,
	write func(ctx context.Context, cli *clientv3.Client, lo, hi int) error) error {
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	workers := min(64, max(8, cfg.clients))
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(cli *clientv3.Client) {
			defer wg.Done()
			for ctx.Err() == nil {
				lo := int(next.Add(int64(step))) - step
				if lo >= n {
					return
				}
				hi := min(lo+step, n)
				var err error
				for attempt := 0; attempt < 3; attempt++ {
					cctx, cancel := context.WithTimeout(ctx, cfg.reqTimeout)
					err = write(cctx, cli, lo, hi)
					cancel()
					if err == nil {
						break
					}
				}
				if err != nil {
					select {
					case errs <- fmt.Errorf("keys %d..%d: %w", lo, hi-1, err):
					default:
					}
					return
				}
			}
		}(clis[w%len(clis)])
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

// The --mark-window lines: written right before the window opens and right after it closes, so
// a reader that samples on them brackets exactly the measured operations (and a little more).
const (
	windowStart = "loadgen: measured window starts"
	windowEnd   = "loadgen: measured window ends"
)

func mark(cfg *config, line string) {
	if cfg.markWindow {
		fmt.Fprintln(os.Stderr, line) // os.Stderr is unbuffered: the reader sees it now
	}
}

// closedLoop runs cfg.clients goroutines, each issuing op back to back, and fills res.
func closedLoop(ctx context.Context, cfg *config, clis []*clientv3.Client,
	op func(context.Context, *clientv3.Client, *rand.Rand) error, res *Result) error {
	var (
		measuring atomic.Bool
		remaining atomic.Int64 // --total mode: measured ops left to start
		stop      atomic.Bool
		errs      errCounter
		wg        sync.WaitGroup
		lats      = make([][]time.Duration, cfg.clients)
	)
	remaining.Store(cfg.total)
	for c := 0; c < cfg.clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			cli := clis[c%len(clis)]
			rng := rand.New(rand.NewPCG(uint64(c)+1, uint64(time.Now().UnixNano())))
			local := make([]time.Duration, 0, 4096)
			defer func() { lats[c] = local }()
			for !stop.Load() && ctx.Err() == nil {
				measured := measuring.Load()
				if measured && cfg.total > 0 && remaining.Add(-1) < 0 {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, cfg.reqTimeout)
				start := time.Now()
				err := op(cctx, cli, rng)
				el := time.Since(start)
				cancel()
				if !measured || stop.Load() && cfg.total == 0 {
					// warm-up op, or one that ended after the measured window closed.
					if !measured && err != nil {
						errs.add(err) // still report: a failing warm-up means a broken server
					}
					continue
				}
				if err != nil {
					errs.add(err)
					if errors.Is(err, context.Canceled) || ctx.Err() != nil {
						return
					}
					continue
				}
				local = append(local, el)
			}
		}(c)
	}
	time.Sleep(min(cfg.warmup, cfg.maxTime))
	mark(cfg, windowStart)
	begin := time.Now()
	measuring.Store(true)
	if cfg.total > 0 {
		wg.Wait()
	} else {
		select {
		case <-time.After(cfg.duration):
		case <-ctx.Done():
		}
		stop.Store(true)
	}
	elapsed := time.Since(begin)
	stop.Store(true)
	mark(cfg, windowEnd)
	wg.Wait()
	if cfg.total == 0 {
		elapsed = min(elapsed, cfg.duration)
	}
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	fill(res, all, elapsed)
	res.Errors = errs.n.Load()
	res.FirstError = errs.first
	if ctx.Err() != nil && cfg.total > 0 {
		return fmt.Errorf("hit --max-time before --total ops: %w", ctx.Err())
	}
	return nil
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func fill(res *Result, lats []time.Duration, elapsed time.Duration) {
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	res.Ops = int64(len(lats))
	res.Seconds = math.Round(elapsed.Seconds()*1000) / 1000
	if elapsed > 0 {
		res.OpsPerSec = math.Round(float64(len(lats))/elapsed.Seconds()*10) / 10
	}
	var sum time.Duration
	for _, l := range lats {
		sum += l
	}
	if len(lats) > 0 {
		res.MeanMs = ms(sum / time.Duration(len(lats)))
		res.MaxMs = ms(lats[len(lats)-1])
	}
	res.P50Ms = ms(percentile(lats, 0.50))
	res.P90Ms = ms(percentile(lats, 0.90))
	res.P99Ms = ms(percentile(lats, 0.99))
}

// watchLatency (watch-latency and watch-fanout): cfg.clients watchers on cfg.streams watch streams
// (watcher w on stream w mod streams, stream s on connection s mod conns); one writer puts
// "<unix-nanos>" padded to --val-size at --rate. For each event the latency is (time the watcher
// got it) - (time the writer's Put returned); when an event beats the Put response the latency
// counts as 0. ops = events delivered in the measured window, at all watchers; slowest_* = per
// measured write, the latency of the last watcher to get it (writes some watcher missed are
// counted in missed_events instead).
func watchLatency(ctx context.Context, cfg *config, clis []*clientv3.Client, res *Result) error {
	type event struct {
		rev  int64
		at   time.Time
		sent int64 // unix nanos from the value
	}
	W := cfg.clients
	res.Watchers = W
	res.Streams = cfg.streams
	var errs errCounter
	var unordered atomic.Int64
	events := make([][]event, W)
	seen := make([]atomic.Int64, W) // highest revision each watcher has received
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	var wg sync.WaitGroup
	ready := make(chan error, W)
	for w := 0; w < W; w++ {
		// The client multiplexes watches with equal outgoing metadata onto one gRPC stream;
		// distinct metadata per stream number gives each stream its own (watch-latency: one per
		// watcher, as separate informers would have; watch-fanout: many watchers share one).
		s := w % cfg.streams
		sctx := metadata.AppendToOutgoingContext(wctx, "bench-watcher", strconv.Itoa(s))
		wch := clis[s%len(clis)].Watch(sctx, cfg.prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			created := false
			local := make([]event, 0, 1024)
			defer func() { events[w] = local }()
			for resp := range wch {
				now := time.Now()
				if err := resp.Err(); err != nil {
					if !created {
						ready <- err
						created = true
					} else if wctx.Err() == nil {
						errs.add(err)
					}
					return
				}
				if resp.Created && !created {
					created = true
					ready <- nil
				}
				for _, ev := range resp.Events {
					if n := len(local); n > 0 && ev.Kv.ModRevision <= local[n-1].rev {
						unordered.Add(1)
					}
					sent, _ := strconv.ParseInt(strings.TrimRight(string(ev.Kv.Value[:min(len(ev.Kv.Value), 20)]), " "), 10, 64)
					local = append(local, event{rev: ev.Kv.ModRevision, at: now, sent: sent})
				}
				if n := len(resp.Events); n > 0 {
					seen[w].Store(resp.Events[n-1].Kv.ModRevision)
				}
			}
			if !created {
				ready <- errors.New("watch channel closed before creation")
			}
		}(w)
	}
	for w := 0; w < W; w++ {
		select {
		case err := <-ready:
			if err != nil {
				return fmt.Errorf("watch create: %w", err)
			}
		case <-time.After(cfg.reqTimeout):
			return errors.New("watch create: timed out")
		}
	}

	// Writer.
	type write struct {
		rev      int64
		ack      time.Time
		measured bool
		putLat   time.Duration
	}
	var writes []write
	var interval time.Duration
	if cfg.rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.rate)
	}
	value := make([]byte, max(cfg.valSize, 20))
	begin := time.Now().Add(cfg.warmup)
	end := begin.Add(cfg.duration)
	var measuredWrites int64
	next := time.Now()
	for i := 0; ctx.Err() == nil; i++ {
		now := time.Now()
		if cfg.total > 0 {
			if measuredWrites >= cfg.total {
				break
			}
		} else if !now.Before(end) {
			break
		}
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(interval)
		}
		measured := !time.Now().Before(begin)
		sent := time.Now()
		copy(value, fmt.Sprintf("%-20d", sent.UnixNano()))
		for j := 20; j < len(value); j++ {
			value[j] = 'v'
		}
		cctx, cancel := context.WithTimeout(ctx, cfg.reqTimeout)
		r, err := clis[0].Put(cctx, key(cfg.prefix, i%1000), string(value[:max(cfg.valSize, 20)]))
		ack := time.Now()
		cancel()
		if err != nil {
			errs.add(err)
			continue
		}
		writes = append(writes, write{rev: r.Header.Revision, ack: ack, measured: measured, putLat: ack.Sub(sent)})
		if measured {
			measuredWrites++
		}
	}
	writerEnd := time.Now()
	measureSecs := writerEnd.Sub(begin)
	if cfg.total == 0 {
		measureSecs = min(measureSecs, cfg.duration)
	}
	// Let the last events arrive (bounded), then stop the watchers.
	byRev := make(map[int64]write, len(writes))
	for _, wr := range writes {
		byRev[wr.rev] = wr
	}
	var want int64
	for _, wr := range writes {
		if wr.measured {
			want++
		}
	}
	want *= int64(W)
	lastRev := int64(0)
	if len(writes) > 0 {
		lastRev = writes[len(writes)-1].rev
	}
	// Give the watchers up to --drain to deliver the last write.
	drainUntil := time.Now().Add(cfg.drain)
	for lastRev > 0 && time.Now().Before(drainUntil) {
		behind := false
		for w := range seen {
			if seen[w].Load() < lastRev {
				behind = true
				break
			}
		}
		if !behind {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	wcancel()
	wg.Wait()

	var lats, sendLats, putLats []time.Duration
	var got, early int64
	slowest := make(map[int64]time.Duration, len(writes))  // per measured write: its last delivery
	slowSend := make(map[int64]time.Duration, len(writes)) // the same from the Put's send time
	deliveries := make(map[int64]int, len(writes))         // and how many watchers got it
	for _, evs := range events {
		for _, ev := range evs {
			wr, ok := byRev[ev.rev]
			if !ok || !wr.measured {
				continue
			}
			got++
			d := ev.at.Sub(wr.ack)
			if d < 0 {
				early++
				d = 0
			}
			lats = append(lats, d)
			deliveries[ev.rev]++
			slowest[ev.rev] = max(slowest[ev.rev], d)
			if ev.sent > 0 {
				sd := ev.at.Sub(time.Unix(0, ev.sent))
				sendLats = append(sendLats, sd)
				slowSend[ev.rev] = max(slowSend[ev.rev], sd)
			}
		}
	}
	for _, wr := range writes {
		if wr.measured {
			putLats = append(putLats, wr.putLat)
		}
	}
	fill(res, lats, measureSecs)
	var slow, slowS []time.Duration
	for rev, d := range slowest {
		if deliveries[rev] == W {
			slow = append(slow, d)
			slowS = append(slowS, slowSend[rev])
		}
	}
	sort.Slice(slow, func(i, j int) bool { return slow[i] < slow[j] })
	sort.Slice(slowS, func(i, j int) bool { return slowS[i] < slowS[j] })
	res.SlowSendP50 = ms(percentile(slowS, 0.5))
	res.SlowSendP99 = ms(percentile(slowS, 0.99))
	res.SlowP50Ms = ms(percentile(slow, 0.5))
	res.SlowP99Ms = ms(percentile(slow, 0.99))
	if len(slow) > 0 {
		res.SlowMaxMs = ms(slow[len(slow)-1])
	}
	res.Unordered = unordered.Load()
	res.Writes = int64(len(putLats))
	res.Missed = max(0, want-got)
	res.EarlyEvents = early
	sort.Slice(sendLats, func(i, j int) bool { return sendLats[i] < sendLats[j] })
	sort.Slice(putLats, func(i, j int) bool { return putLats[i] < putLats[j] })
	res.SendToEvP50 = ms(percentile(sendLats, 0.5))
	res.SendToEvP99 = ms(percentile(sendLats, 0.99))
	res.PutP50Ms = ms(percentile(putLats, 0.5))
	res.Errors = errs.n.Load() + res.Missed + res.Unordered
	res.FirstError = errs.first
	if res.Missed > 0 && res.FirstError == "" {
		res.FirstError = fmt.Sprintf("%d of %d watch events not delivered", res.Missed, want)
	}
	if res.Unordered > 0 && res.FirstError == "" {
		res.FirstError = fmt.Sprintf("%d watch events duplicated or out of order", res.Unordered)
	}
	return nil
}

// probe polls Maintenance.Status on the first endpoint until it answers or --max-time passes.
func probe(cfg *config) error {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.maxTime)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.endpoints[:1], DialTimeout: cfg.maxTime, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		_, err = cli.Status(cctx, cfg.endpoints[0])
		ccancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// k8sObject is a custom resource stored under key (…/<namespace>/<name>) as kube-apiserver
// stores one: JSON, padded in spec.pad to about size bytes. Labels and spec.customer depend on
// i, so a selector app=a7 matches 1% of the objects.
func k8sObject(key string, i, size int) string {
	parts := strings.Split(strings.TrimSuffix(key, "/"), "/")
	name, ns := parts[len(parts)-1], "default"
	if len(parts) >= 2 {
		ns = parts[len(parts)-2]
	}
	head := fmt.Sprintf(`{"apiVersion":"bench.example.com/v1","kind":"Widget","metadata":{"name":%q,"namespace":%q,`+
		`"uid":"00000000-0000-0000-0000-%012d","labels":{"app":"a%d","tier":"t%d"}},"spec":{"customer":"c%d","pad":"`,
		name, ns, i, i%100, i%3, i%1000)
	tail := `"}}`
	pad := max(0, size-len(head)-len(tail))
	return head + strings.Repeat("x", pad) + tail
}
