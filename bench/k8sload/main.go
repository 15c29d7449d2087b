// k8sload: the Kubernetes-API load of issue 18's benchmark, with client-go. N concurrent clients
// each loop: create a namespaced object labelled with its client and sequence number, then read
// it back by that label selector (a list that must return exactly that object). It stops when
// the namespace holds --objects objects, or with --duration after that long (one measured
// window at a checkpoint of a bulk-loaded namespace, the first --warmup not counted), printing
// one JSON line per --report-every objects (with --duration: one line for the window):
// requests per second, p50/p99 of creates and of lists, errors, and the RSS of the processes
// named by --pid (read from /proc), so the caller sees how each grows with the object count.
// With --op create|update|get|list it runs one kind of request instead (ops.go, bench/kube.py).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the API server to load")
	gvr := flag.String("resource", "widgets.v1.example.kubefabric.io", "plural.version.group of the resource")
	kind := flag.String("kind", "Widget", "the resource's kind")
	namespace := flag.String("namespace", "bench", "namespace the objects are created in")
	clientsN := flag.Int("clients", 120, "concurrent clients (each with its own connection)")
	objects := flag.Int64("objects", 100000, "stop when this many objects exist")
	start := flag.Int64("start", 0, "objects already in the namespace (a resumed run)")
	every := flag.Int64("report-every", 10000, "print a line every this many objects")
	timeout := flag.Duration("timeout", 2*time.Hour, "give up after this long")
	duration := flag.Duration("duration", 0, "run this long (then one line for the window) instead of up to --objects")
	warmup := flag.Duration("warmup", 0, "with --duration: requests of the first this long are not counted")
	prefix := flag.String("prefix", "c", "names are <prefix><client>-<seq>, the client label <prefix><client> (unique per run)")
	op := flag.String("op", "create-list", "create-list (create an object, then list it by label: "+
		"issue 18's load), or one operation on <prefix><i>, i < --objects: create, update (get + "+
		"replace, retried on conflict), get, list (the whole namespace, --page per page)")
	page := flag.Int64("page", 500, "with --op list: objects per page")
	markWindow := flag.Bool("mark-window", false, "with --op: write the measured window's start and end to stderr")
	pids := pidFlags{}
	flag.Var(pids, "pid", "name=pid of a process whose RSS to report (repeatable)")
	flag.Parse()

	parts := strings.SplitN(*gvr, ".", 3)
	if len(parts) == 2 {
		parts = append(parts, "") // plural.version: the core group (configmaps.v1)
	}
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		fmt.Fprintln(os.Stderr, "--resource wants plural.version.group, or plural.version for the core group")
		os.Exit(2)
	}
	res := schema.GroupVersionResource{Resource: parts[0], Version: parts[1], Group: parts[2]}
	if *op != "create-list" && !ops[*op] {
		fmt.Fprintf(os.Stderr, "--op %q: choose create-list, create, update, get or list\n", *op)
		os.Exit(2)
	}
	if *op != "create-list" && *op != "create" && *duration <= 0 {
		fmt.Fprintf(os.Stderr, "--op %s needs --duration\n", *op)
		os.Exit(2)
	}
	base, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeconfig:", err)
		os.Exit(2)
	}
	base.QPS, base.Burst = -1, 0 // no client-side rate limit
	base.Timeout = 60 * time.Second
	if *op != "create-list" {
		clients := make([]dynamic.ResourceInterface, *clientsN)
		for c := range clients {
			clients[c] = newClient(base, res, *namespace)
		}
		os.Exit(runOp(opConfig{op: *op, prefix: *prefix, res: res, kind: *kind, objects: *objects,
			page: *page, duration: *duration, warmup: *warmup, markWindow: *markWindow}, clients))
	}

	if *duration > 0 {
		*timeout = *warmup + *duration
		*objects = 1 << 62
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var created atomic.Int64
	created.Store(*start)
	var w window
	var wg sync.WaitGroup
	began := time.Now()
	for c := 0; c < *clientsN; c++ {
		api := newClient(base, res, *namespace)
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for seq := 0; ctx.Err() == nil && created.Load() < *objects; seq++ {
				name := fmt.Sprintf("%s%d-%d", *prefix, c, seq)
				client := fmt.Sprintf("%s%d", *prefix, c)
				obj := &unstructured.Unstructured{Object: map[string]interface{}{
					"apiVersion": res.Group + "/" + res.Version, "kind": *kind,
					"metadata": map[string]interface{}{"name": name, "labels": map[string]interface{}{
						"bench-client": client, "bench-seq": strconv.Itoa(seq)}},
					"spec": map[string]interface{}{"color": "red", "replicas": int64(seq % 10)},
				}}
				t0 := time.Now()
				_, err := api.Create(ctx, obj, metav1.CreateOptions{})
				t1 := time.Now()
				if err != nil {
					if ctx.Err() != nil && *duration > 0 {
						break // the window ended during the request: not an error of the server
					}
					w.add(0, 0, fmt.Errorf("create %s: %w", name, err))
					continue
				}
				n := created.Add(1)
				list, err := api.List(ctx, metav1.ListOptions{
					LabelSelector: fmt.Sprintf("bench-client=%s,bench-seq=%d", client, seq)})
				t2 := time.Now()
				if err != nil && ctx.Err() != nil && *duration > 0 {
					break
				}
				if err == nil && (len(list.Items) != 1 || list.Items[0].GetName() != name) {
					err = fmt.Errorf("list by label found %d objects, not %s", len(list.Items), name)
				}
				w.add(t1.Sub(t0), t2.Sub(t1), err)
				_ = n
			}
		}(c)
	}

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	next := (*start / *every + 1) * *every
	last := time.Now()
	report := func(final bool) {
		creates, lists, errors, samples := w.take()
		now := time.Now()
		secs := now.Sub(last).Seconds()
		last = now
		line := map[string]interface{}{
			"objects": created.Load(), "elapsed_s": now.Sub(began).Seconds(), "window_s": secs,
			"requests": len(creates) + len(lists), "req_per_s": float64(len(creates)+len(lists)) / secs,
			"create_p50_ms": pct(creates, 0.5), "create_p99_ms": pct(creates, 0.99),
			"list_p50_ms": pct(lists, 0.5), "list_p99_ms": pct(lists, 0.99),
			"errors": errors, "final": final,
		}
		if len(samples) > 0 {
			line["error_samples"] = samples
		}
		rss := map[string]float64{}
		for name, pid := range pids {
			rss[name] = rssMiB(pid)
		}
		line["rss_mib"] = rss
		out, _ := json.Marshal(line)
		fmt.Println(string(out))
	}
	if *duration > 0 {
		time.Sleep(*warmup)
		w.take()
		last = time.Now()
		<-done
		report(true)
		return
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			report(true)
			return
		case <-tick.C:
			if created.Load() >= next {
				report(false)
				next += *every
			}
		}
	}
}

// newClient: a client of the namespaced resource on a connection of its own.
func newClient(base *rest.Config, res schema.GroupVersionResource, namespace string) dynamic.ResourceInterface {
	cfg := rest.CopyConfig(base)
	// A dialer of its own keeps client-go from sharing one transport (and one HTTP/2
	// connection) between the clients, as separate processes would not share one.
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	cfg.Dial = dialer.DialContext
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(2)
	}
	return client.Resource(res).Namespace(namespace)
}
