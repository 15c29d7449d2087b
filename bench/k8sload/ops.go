// The single-operation modes of --op (bench/kube.py): N clients repeat one kind of request on
// objects named <prefix><i>, i in [0, --objects):
//
//	create  create objects <prefix>0 .. <prefix>N-1 (each index once, shared by the clients);
//	update  read-modify-write of a random object: Get, bump its replicas field, Update (a full
//	        replace carrying the read resourceVersion), retried on conflict with client-go's
//	        retry.RetryOnConflict(retry.DefaultRetry) as controllers do; one op = one
//	        successful update, the conflicts it met are counted;
//	get     Get a random object;
//	list    list the whole namespace in pages of --page (continue tokens); one op = the full
//	        list, which must hold --objects objects.
//
// create stops after --objects creates; the others run for --warmup + --duration. The measured
// window is the whole create run, or the --duration after the warm-up; with --mark-window its
// start and end are written to stderr the moment they happen, so the caller can read the CPU
// time of the servers at those instants. One JSON line at the end: ops, ops/s, p50/p99 of the
// ops finished in the window, errors (with a few samples), conflicts, pages.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"
)

const (
	windowStart = "k8sload: measured window starts" // --mark-window, on stderr
	windowEnd   = "k8sload: measured window ends"
)

var ops = map[string]bool{"create": true, "update": true, "get": true, "list": true}

type opConfig struct {
	op, prefix       string
	res              schema.GroupVersionResource
	kind             string
	objects          int64
	page             int64
	duration, warmup time.Duration
	markWindow       bool
}

// sample: one finished op, kept if it finished inside the measured window.
type sample struct {
	end     time.Time
	latency time.Duration
}

type collector struct {
	mu        sync.Mutex
	samples   []sample
	errors    []time.Time
	errorText []string
	conflicts atomic.Int64
	pages     atomic.Int64 // pages of the full lists counted in lists
	lists     atomic.Int64 // full lists that finished, warm-up included
}

func (c *collector) done(t0 time.Time, err error) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.errors = append(c.errors, now)
		if len(c.errorText) < 3 {
			c.errorText = append(c.errorText, err.Error())
		}
		return
	}
	c.samples = append(c.samples, sample{now, now.Sub(t0)})
}

// isConfigMap: ConfigMaps keep the bumped field in data (strings), custom resources in spec.
func (o *opConfig) isConfigMap() bool { return o.res.Group == "" && o.res.Resource == "configmaps" }

func (o *opConfig) apiVersion() string {
	if o.res.Group == "" {
		return o.res.Version
	}
	return o.res.Group + "/" + o.res.Version
}

func (o *opConfig) object(i int64) *unstructured.Unstructured {
	obj := map[string]interface{}{
		"apiVersion": o.apiVersion(), "kind": o.kind,
		"metadata": map[string]interface{}{"name": o.prefix + strconv.FormatInt(i, 10),
			"labels": map[string]interface{}{"bench-seq": strconv.FormatInt(i, 10)}},
	}
	if o.isConfigMap() {
		obj["data"] = map[string]interface{}{"color": "red", "replicas": "0"}
	} else {
		obj["spec"] = map[string]interface{}{"color": "red", "replicas": int64(0)}
	}
	return &unstructured.Unstructured{Object: obj}
}

// bump: the update's modification, a counter both kinds of object carry.
func (o *opConfig) bump(obj *unstructured.Unstructured) error {
	if o.isConfigMap() {
		v, _, _ := unstructured.NestedString(obj.Object, "data", "replicas")
		n, _ := strconv.Atoi(v)
		return unstructured.SetNestedField(obj.Object, strconv.Itoa((n+1)%10), "data", "replicas")
	}
	n, _, _ := unstructured.NestedInt64(obj.Object, "spec", "replicas")
	return unstructured.SetNestedField(obj.Object, (n+1)%10, "spec", "replicas") // the CRD: <= maxReplicas (10)
}

func (o *opConfig) do(ctx context.Context, api dynamic.ResourceInterface, rng *rand.Rand, next *atomic.Int64, c *collector) (bool, error) {
	switch o.op {
	case "create":
		i := next.Add(1) - 1
		if i >= o.objects {
			return false, nil
		}
		_, err := api.Create(ctx, o.object(i), metav1.CreateOptions{})
		return true, err
	case "update":
		name := o.prefix + strconv.FormatInt(rng.Int64N(o.objects), 10)
		attempt := 0
		return true, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if attempt++; attempt > 1 {
				c.conflicts.Add(1)
			}
			obj, err := api.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if err := o.bump(obj); err != nil {
				return err
			}
			_, err = api.Update(ctx, obj, metav1.UpdateOptions{})
			return err
		})
	case "get":
		name := o.prefix + strconv.FormatInt(rng.Int64N(o.objects), 10)
		obj, err := api.Get(ctx, name, metav1.GetOptions{})
		if err == nil && obj.GetName() != name {
			err = fmt.Errorf("get %s returned %s", name, obj.GetName())
		}
		return true, err
	default: // list
		opts, items, pages := metav1.ListOptions{Limit: o.page}, int64(0), int64(0)
		for {
			l, err := api.List(ctx, opts)
			if err != nil {
				return true, err
			}
			pages++
			items += int64(len(l.Items))
			if opts.Continue = l.GetContinue(); opts.Continue == "" {
				break
			}
		}
		if items != o.objects {
			return true, fmt.Errorf("a full list returned %d objects, not %d", items, o.objects)
		}
		c.pages.Add(pages) // of finished lists only: a list cut at the window's end is not one
		c.lists.Add(1)
		return true, nil
	}
}

// runOp runs --op with one resource interface per client; the process exit code.
func runOp(o opConfig, clients []dynamic.ResourceInterface) int {
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if o.op != "create" {
		ctx, cancel = context.WithTimeout(ctx, o.warmup+o.duration)
	}
	defer cancel()
	var c collector
	var next atomic.Int64
	var wg sync.WaitGroup
	began := time.Now()
	from, until := began, time.Time{}
	if o.op != "create" {
		from = began.Add(o.warmup)
	}
	mark := func(text string) {
		if o.markWindow {
			fmt.Fprintln(os.Stderr, text)
		}
	}
	if o.op == "create" || o.warmup == 0 {
		mark(windowStart)
	} else {
		go func() { time.Sleep(time.Until(from)); mark(windowStart) }()
	}
	for n, api := range clients {
		wg.Add(1)
		go func(seed uint64, api dynamic.ResourceInterface) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 7))
			for ctx.Err() == nil {
				t0 := time.Now()
				more, err := o.do(ctx, api, rng, &next, &c)
				if !more {
					return
				}
				if err != nil && ctx.Err() != nil {
					return // the window ended during the request: not an error of the server
				}
				c.done(t0, err)
			}
		}(uint64(n), api)
	}
	if o.op == "create" {
		wg.Wait()
		until = time.Now()
		mark(windowEnd)
	} else {
		<-ctx.Done()
		until = time.Now()
		mark(windowEnd)
		wg.Wait()
	}

	var lat []time.Duration
	for _, s := range c.samples {
		if !s.end.Before(from) && !s.end.After(until) {
			lat = append(lat, s.latency)
		}
	}
	errors := 0
	for _, t := range c.errors {
		if !t.Before(from) && !t.After(until) {
			errors++
		}
	}
	secs := until.Sub(from).Seconds()
	line := map[string]interface{}{
		"op": o.op, "resource": o.res.Resource, "clients": len(clients), "objects": o.objects,
		"window_s": secs, "ops": len(lat), "ops_per_s": float64(len(lat)) / secs,
		"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "errors": errors,
		"conflicts": c.conflicts.Load(),
	}
	if n := c.lists.Load(); n > 0 {
		line["pages_per_list"] = float64(c.pages.Load()) / float64(n)
	}
	if len(c.errorText) > 0 {
		line["error_samples"] = c.errorText
	}
	out, _ := json.Marshal(line)
	fmt.Println(string(out))
	if o.op == "create" && len(c.errors) > 0 {
		return 1 // the namespace does not hold the objects the next ops expect
	}
	return 0
}
