// What k8sload measures besides the requests themselves: the latencies and errors of a report
// window, their percentiles, and the RSS of the processes named by --pid.
package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

type pidFlags map[string]int

func (p pidFlags) String() string { return fmt.Sprint(map[string]int(p)) }
func (p pidFlags) Set(v string) error {
	name, pid, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("--pid wants name=pid, got %q", v)
	}
	n, err := strconv.Atoi(pid)
	if err != nil {
		return err
	}
	p[name] = n
	return nil
}

type window struct {
	mu      sync.Mutex
	creates []time.Duration
	lists   []time.Duration
	errors  int64
	samples []string
}

func (w *window) add(create, list time.Duration, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.errors++
		if len(w.samples) < 3 {
			w.samples = append(w.samples, err.Error())
		}
		return
	}
	w.creates = append(w.creates, create)
	w.lists = append(w.lists, list)
}

func (w *window) take() (creates, lists []time.Duration, errors int64, samples []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	creates, lists, errors, samples = w.creates, w.lists, w.errors, w.samples
	w.creates, w.lists, w.errors, w.samples = nil, nil, 0, nil
	return
}

func pct(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(float64(len(d)-1) * p)
	return float64(d[i].Microseconds()) / 1000
}

func rssMiB(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return -1
}
