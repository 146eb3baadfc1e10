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

	cmacme "github.com/cert-manager/cert-manager/pkg/apis/acme/v1"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// TestBench is what 'make bench' runs. It measures, on the same stack as the
// end-to-end tests and in the same run, the time from Certificate creation
// to Ready for one Certificate with two names (issued one after another) and
// for 20 Certificates created at once, with the CPU time and API requests
// they cost: first through an ACMEClusterIssuer, then through cert-manager's
// own ACME ClusterIssuer whose HTTP-01 solver names our IngressClass (its
// Order and Challenge controllers, its own self-check). It prints both side
// by side with the ratio. The targets for the ACMEClusterIssuer are 1 s and
// 5 s.
func TestBench(t *testing.T) {
	c := startCluster(t)
	// The gateway translates Istio's configuration at most every 100 ms
	// for requests it can already route, as istiod debounces its pushes.
	c.gateway.Debounce = 100 * time.Millisecond
	c.clusterIssuer("pebble", v1alpha1.ACMESolver{})
	ours := c.benchRun("ours", func(name string, hosts ...string) *cmapi.Certificate {
		return c.certificate(name, "pebble", hosts...)
	})
	c.waitNothingLeft()

	c.applyChartIngressClasses()
	c.cmClusterIssuer("letsencrypt", cmacme.ACMEChallengeSolver{HTTP01: &cmacme.ACMEChallengeSolverHTTP01{
		Ingress: &cmacme.ACMEChallengeSolverHTTP01Ingress{IngressClassName: ptr.To("istio-acme"), ServiceType: corev1.ServiceTypeClusterIP},
	}})
	theirs := c.benchRun("cm", func(name string, hosts ...string) *cmapi.Certificate {
		return c.cmCertificate(name, hosts...)
	})
	c.waitNothingLeft()

	fmt.Printf("\n%-44s %-34s %-34s %s\n", "", "ACMEClusterIssuer", "cert-manager ACME + IngressClass", "ratio")
	row := func(what string, a, b time.Duration) {
		fmt.Printf("%-44s %-34s %-34s %.1fx\n", what, a.Round(time.Millisecond), b.Round(time.Millisecond), b.Seconds()/a.Seconds())
	}
	row("first Certificate after start (cold)", ours.cold, theirs.cold)
	row(fmt.Sprintf("one Certificate, 2 names (median of %d)", len(ours.one)), median(ours.one), median(theirs.one))
	row(fmt.Sprintf("%d at once: all Ready", benchConcurrent), ours.all, theirs.all)
	row(fmt.Sprintf("%d at once: each, median", benchConcurrent), median(ours.each), median(theirs.each))
	row(fmt.Sprintf("our controller's CPU for the %d", benchConcurrent), ours.cpu, theirs.cpu)
	row(fmt.Sprintf("cert-manager's CPU for the %d", benchConcurrent), ours.certManagerCPU, theirs.certManagerCPU)
	fmt.Printf("%-44s %-34s %s\n", "one Certificate (min, median, max)", summaryShort(ours.one), summaryShort(theirs.one))
	fmt.Printf("%-44s %-34s %s\n", fmt.Sprintf("%d at once, each (min, median, max)", benchConcurrent), summaryShort(ours.each), summaryShort(theirs.each))
	fmt.Printf("our controller's API requests per Certificate:\n  ACMEClusterIssuer: %s\n  cert-manager ACME: %s\n", ours.requests, theirs.requests)
	fmt.Printf("our controller's peak resident memory:       %s\n", peakRSS(c.controller.PID()))
}

// benchConcurrent is how many Certificates the bench creates at once.
const benchConcurrent = 20

// benchFigures are one issuer's figures.
type benchFigures struct {
	cold, all           time.Duration
	one, each           []time.Duration
	cpu, certManagerCPU time.Duration
	requests            string
}

// benchRun issues, through newCert, a first Certificate, then 7 one after
// another, then benchConcurrent at once, each for two names under prefix.
func (c *cluster) benchRun(prefix string, newCert func(name string, hosts ...string) *cmapi.Certificate) benchFigures {
	c.t.Helper()
	var f benchFigures
	cert := func(name string) *cmapi.Certificate {
		host := name + ".example.com"
		return newCert(name, host, "www."+host)
	}
	f.cold = c.waitReady(cert(prefix+"-warmup"), 120*time.Second)
	for i := range 7 {
		f.one = append(f.one, c.waitReady(cert(fmt.Sprintf("%s-seq%d", prefix, i)), 120*time.Second))
	}

	requestsBefore := c.apiRequests()
	cpuBefore, cmBefore := cpuTime(c.controller.PID()), cpuTime(c.certManager.PID())
	start := time.Now()
	crts := make([]*cmapi.Certificate, benchConcurrent)
	for i := range crts {
		crts[i] = cert(fmt.Sprintf("%s-par%d", prefix, i))
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, crt := range crts {
		wg.Go(func() {
			d := c.waitReadyQuiet(crt, 300*time.Second)
			mu.Lock()
			f.each = append(f.each, d)
			mu.Unlock()
		})
	}
	wg.Wait()
	f.all = time.Since(start)
	f.cpu = cpuTime(c.controller.PID()) - cpuBefore
	f.certManagerCPU = cpuTime(c.certManager.PID()) - cmBefore
	f.requests = perCertificate(requestsBefore, c.apiRequests(), benchConcurrent)
	return f
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return slices.Sorted(slices.Values(ds))[len(ds)/2]
}

// summaryShort is "min / median / max" in tenths of seconds.
func summaryShort(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Sorted(slices.Values(ds))
	return fmt.Sprintf("%.1f / %.1f / %.1f s", s[0].Seconds(), s[len(s)/2].Seconds(), s[len(s)-1].Seconds())
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
