//go:build bench

package e2e

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// TestBench is what 'make bench' runs. It measures, on the same stack as the
// end-to-end tests, the time from Certificate creation to Ready for one
// Certificate with two names (issued one after another) and for 20
// Certificates created at once, and the controller's peak memory. The
// figures to beat (cert-manager's own ACME issuer on this machine, in its best
// case) are 9.2-10.1 s and 72.5 s; the targets are 1 s and 5 s.
func TestBench(t *testing.T) {
	c := startCluster(t)
	// The gateway translates Istio's configuration at most every 100 ms
	// for requests it can already route, as istiod debounces its pushes.
	c.gateway.Debounce = 100 * time.Millisecond
	c.clusterIssuer("pebble", v1alpha1.ACMESolver{})

	first := c.certificate("warmup", "pebble", "warmup.example.com", "www.warmup.example.com")
	cold := c.waitReady(first, 60*time.Second)
	fmt.Printf("first Certificate after start (cold caches):   %s\n", cold.Round(time.Millisecond))

	const sequential = 7
	var one []time.Duration
	for i := range sequential {
		host := fmt.Sprintf("seq%d.example.com", i)
		crt := c.certificate(fmt.Sprintf("seq%d", i), "pebble", host, "www."+host)
		one = append(one, c.waitReady(crt, 60*time.Second))
	}
	fmt.Printf("one Certificate, 2 names, %d runs:             %s\n", sequential, summary(one))

	const concurrent = 20
	requestsBefore := c.apiRequests()
	cpuBefore := cpuTime(c.controller.PID())
	start := time.Now()
	crts := make([]*cmapi.Certificate, concurrent)
	for i := range concurrent {
		host := fmt.Sprintf("par%d.example.com", i)
		crts[i] = c.certificate(fmt.Sprintf("par%d", i), "pebble", host, "www."+host)
	}
	var mu sync.Mutex
	var each []time.Duration
	var wg sync.WaitGroup
	for _, crt := range crts {
		wg.Go(func() {
			d := c.waitReadyQuiet(crt, 180*time.Second)
			mu.Lock()
			each = append(each, d)
			mu.Unlock()
		})
	}
	wg.Wait()
	fmt.Printf("%d Certificates created at once, 2 names each: all Ready after %s (each: %s)\n",
		concurrent, time.Since(start).Round(time.Millisecond), summary(each))
	fmt.Printf("controller CPU time for those 20:              %s\n", (cpuTime(c.controller.PID()) - cpuBefore).Round(time.Millisecond))
	fmt.Printf("controller API requests per Certificate:       %s\n", perCertificate(requestsBefore, c.apiRequests(), concurrent))
	fmt.Printf("controller peak resident memory:               %s\n", peakRSS(c.controller.PID()))
	c.waitNothingLeft()
}

// peakRSS reads VmHWM, the peak resident set size, of a process.
func peakRSS(pid int) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return err.Error()
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// apiRequests scrapes the controller's client-go request counter by method.
func (c *cluster) apiRequests() map[string]float64 {
	out := map[string]float64{}
	for labels, n := range c.metric("rest_client_requests_total") {
		for _, kv := range strings.Split(labels, ",") {
			if v, ok := strings.CutPrefix(kv, "method="); ok {
				out[strings.Trim(v, `"`)] += n
			}
		}
	}
	return out
}

func perCertificate(before, after map[string]float64, n int) string {
	var parts []string
	total := 0.0
	for _, m := range slices.Sorted(maps.Keys(after)) {
		d := (after[m] - before[m]) / float64(n)
		total += d
		parts = append(parts, fmt.Sprintf("%s %.1f", m, d))
	}
	return fmt.Sprintf("%.1f (%s)", total, strings.Join(parts, ", "))
}

// cpuTime reads a process's user and system CPU time from /proc.
func cpuTime(pid int) time.Duration {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clockTicks
}
