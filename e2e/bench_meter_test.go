//go:build bench

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// meter measures workloads: when each Certificate became Ready (from a
// watch, so that waiting costs the API server nothing), the API requests
// of every client (from the audit log), and the CPU time of every process.
type meter struct {
	c       *cluster
	mu      sync.Mutex
	readyAt map[string]time.Time // namespace/name -> first seen Ready
	audit   *auditTail
	// key is the Certificates' private key algorithm.
	key cmapi.PrivateKeyAlgorithm
}

func (c *cluster) startMeter(key cmapi.PrivateKeyAlgorithm) *meter {
	c.t.Helper()
	m := &meter{c: c, readyAt: map[string]time.Time{}, audit: &auditTail{path: c.api.AuditLogPath}, key: key}
	inf, err := c.informers.GetInformer(context.Background(), &cmapi.Certificate{})
	if err != nil {
		c.t.Fatal(err)
	}
	record := func(obj any) {
		crt, ok := obj.(*cmapi.Certificate)
		if !ok || !isReady(crt) {
			return
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		key := crt.Namespace + "/" + crt.Name
		if _, seen := m.readyAt[key]; !seen {
			m.readyAt[key] = time.Now()
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    record,
		UpdateFunc: func(_, obj any) { record(obj) },
	}); err != nil {
		c.t.Fatal(err)
	}
	m.requestsSince() // skip the setup's requests
	return m
}

// certificates are n Certificates of side s, each for two names under
// prefix; the stand-in's names resolve to it.
func (m *meter) certificates(s *benchSide, prefix string, n int) []*cmapi.Certificate {
	crts := make([]*cmapi.Certificate, n)
	for i := range crts {
		name := fmt.Sprintf("%s-%d", prefix, i)
		host := name + ".example.com"
		crts[i] = &cmapi.Certificate{}
		crts[i].Namespace, crts[i].Name = appNamespace, name
		crts[i].Spec = cmapi.CertificateSpec{
			SecretName: name + "-tls", DNSNames: []string{host, "www." + host}, IssuerRef: s.issuer,
			PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: m.key},
		}
		if s.standIn != nil {
			for _, h := range crts[i].Spec.DNSNames {
				m.c.pebble.AddA(m.c.t, h, s.standIn.ip)
			}
		}
	}
	return crts
}

// issueSideBySide creates one Certificate for each side at the same time
// and returns each one's time until Ready (the timeout when it never was,
// which it reports as an error). Only for issuers that spend their time
// waiting, not working: each would otherwise slow the other.
func (m *meter) issueSideBySide(sides []*benchSide, prefix string) []time.Duration {
	c := m.c
	c.t.Helper()
	crts := make([]*cmapi.Certificate, len(sides))
	for i, s := range sides {
		crts[i] = m.certificates(s, s.key+"-"+prefix, 1)[0]
	}
	created := make([]time.Time, len(crts))
	for i, crt := range crts {
		created[i] = time.Now()
		if err := c.cl.Create(context.Background(), crt); err != nil {
			c.t.Errorf("creating Certificate %s: %v", crt.Name, err)
		}
	}
	_, took, ready := m.waitReady(crts, created, created[0], workloadTimeout(1))
	for i := range sides {
		if ready[i] {
			sides[i].issued++
		}
	}
	c.waitQuiet()
	m.requestsSince() // not counted: the sides' requests are mixed
	return took
}

// issue creates n Certificates of side s at once (from 16 clients), each
// for two names under prefix, waits until all are Ready and returns the
// workload's figures.
func (m *meter) issue(s *benchSide, prefix string, n int) *benchFigures {
	c := m.c
	c.t.Helper()
	crts := m.certificates(s, prefix, n)
	f := &benchFigures{n: n, hosts: 2 * n}
	m.requestsSince()
	cpuBefore := readProcessCPU()
	standInBefore := s.standIn.answered()

	created := make([]time.Time, n)
	start := time.Now()
	work := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range work {
				created[i] = time.Now()
				if err := c.cl.Create(context.Background(), crts[i]); err != nil {
					c.t.Errorf("creating Certificate %s: %v", crts[i].Name, err)
				}
			}
		})
	}
	for i := range crts {
		work <- i
	}
	close(work)
	wg.Wait()

	last, took, ready := m.waitReady(crts, created, start, workloadTimeout(n))
	f.all = last.Sub(start)
	for i, d := range took {
		if ready[i] {
			f.each = append(f.each, d)
		}
	}
	f.cpu = readProcessCPU().minus(cpuBefore)
	f.peakRSS = peakRSS(c.controller.PID())
	f.standInRequests = s.standIn.answered() - standInBefore
	// Requests still in flight when the last Certificate became Ready
	// (cleanup of challenges) belong to the workload.
	c.waitQuiet()
	f.requests, f.requestsByResource, f.solverWrites = countRequests(m.requestsSince())
	s.issued += len(f.each)
	if n > 1 {
		// Progress: the table comes at the end.
		fmt.Printf("%s: %d at once, all Ready after %.1f s (each %s)\n", s.title, n, f.all.Seconds(), secondsSummary(f.each, true))
	}
	return f
}

// waitReady waits until every one of crts is Ready, or reports an error
// once timeout has passed since start. It returns when the last one became
// Ready (when it gave up, if one never did) and each one's time from its
// creation until Ready (the timeout if never) and whether it was.
func (m *meter) waitReady(crts []*cmapi.Certificate, created []time.Time, start time.Time, timeout time.Duration) (time.Time, []time.Duration, []bool) {
	c := m.c
	c.t.Helper()
	var last time.Time
	for {
		missing, newest := m.readyState(crts)
		if missing == nil {
			last = newest
			break
		}
		if time.Now().After(start.Add(timeout)) {
			c.t.Errorf("%d of %d Certificates not Ready after %s; %s: %s", len(missing), len(crts), timeout, missing[0].Name, c.requestState(missing[0]))
			last = time.Now()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	took, ready := make([]time.Duration, len(crts)), make([]bool, len(crts))
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, crt := range crts {
		took[i] = timeout
		if at, ok := m.readyAt[crt.Namespace+"/"+crt.Name]; ok {
			took[i], ready[i] = at.Sub(created[i]), true
		}
	}
	return last, took, ready
}

// requestsSince returns the requests the API server completed since the
// last call.
func (m *meter) requestsSince() []auditEntry {
	entries, err := m.audit.next()
	if err != nil {
		m.c.t.Errorf("counting API requests: %v", err)
	}
	return entries
}

// readyState returns the Certificates not yet Ready, and when the last of
// the others became Ready.
func (m *meter) readyState(crts []*cmapi.Certificate) ([]*cmapi.Certificate, time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var missing []*cmapi.Certificate
	var newest time.Time
	for _, crt := range crts {
		at, ok := m.readyAt[crt.Namespace+"/"+crt.Name]
		if !ok {
			missing = append(missing, crt)
		} else if at.After(newest) {
			newest = at
		}
	}
	return missing, newest
}

// testProcess names this process in processCPU: it runs the gateway with
// Istio's translation, the stand-in solver and the bench's watches.
const testProcess = "test process"

// Clients as the bench names them.
const (
	clientOurs        = "ours"
	clientCertManager = "cert-manager"
	// clientOthers are the rest: the test's watches and its gateway's
	// reads, the garbage collector, the API server itself.
	clientOthers = "others"
)

// countRequests counts audit entries by client (ours, cert-manager, the
// rest) and verb, and by verb and resource, and the writes of solver
// objects by ours and cert-manager.
func countRequests(entries []auditEntry) (requests map[string]map[string]int, byResource map[string]map[string]int, solverWrites map[string]int) {
	requests, byResource = map[string]map[string]int{}, map[string]map[string]int{}
	solverWrites = map[string]int{}
	for _, e := range entries {
		who := clientOthers
		switch {
		case e.byController():
			who = clientOurs
		case strings.HasPrefix(e.user(), "system:serviceaccount:cert-manager:"):
			who = clientCertManager
		}
		if requests[who] == nil {
			requests[who] = map[string]int{}
		}
		requests[who][e.Verb]++
		if byResource[who] == nil {
			byResource[who] = map[string]int{}
		}
		res := e.ObjectRef.Resource
		if e.ObjectRef.Subresource != "" {
			res += "/" + e.ObjectRef.Subresource
		}
		byResource[who][e.Verb+" "+res]++
		write := e.Verb == "create" || e.Verb == "update" || e.Verb == "patch" || e.Verb == "delete" || e.Verb == "deletecollection"
		switch r := e.ObjectRef.Resource; {
		// A write the API server refused (a create that found the object
		// there already) changes nothing istiod pushes; it still counts
		// as an API request above.
		case !write || e.ObjectRef.Subresource != "" || e.ResponseStatus.Code >= 300:
		case who == clientOurs && (r == "gateways" || r == "virtualservices"):
			solverWrites[who]++
		case e.byGarbageCollector() && e.Verb == "delete" && (r == "gateways" || r == "virtualservices"):
			// Our routes that go with their challenge: a change istiod
			// pushes like any other. Nothing else of the bench's has an
			// owner.
			solverWrites[clientOurs]++
		case who == clientCertManager && (r == "pods" || r == "services" || r == "ingresses"):
			solverWrites[who]++
		}
	}
	return requests, byResource, solverWrites
}

// processCPU is CPU time by process: this test process and every process
// it started (API server, etcd, controller-manager, Pebble, its DNS,
// cert-manager, our controller), by the name of its binary.
type processCPU map[string]time.Duration

// readProcessCPU reads the CPU time of this process and its children.
func readProcessCPU() processCPU {
	out := processCPU{testProcess: cpuTime(os.Getpid())}
	children, _ := testenv.Children() // best effort: a figure, not a check
	for _, c := range children {
		out[filepath.Base(c.Argv[0])] += cpuTime(c.PID)
	}
	return out
}

func (p processCPU) minus(before processCPU) processCPU {
	out := processCPU{}
	for k, v := range p {
		out[k] = v - before[k]
	}
	return out
}

// cpuTime reads a process's user and system CPU time from /proc.
func cpuTime(pid int) time.Duration {
	fields, err := testenv.StatFields(pid)
	if err != nil || len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// peakRSS reads VmHWM, the peak resident set size, of a process.
func peakRSS(pid int) string { return procStatus(pid, "VmHWM") }

// residentRSS reads VmRSS, the resident set size of a process now.
func residentRSS(pid int) string { return procStatus(pid, "VmRSS") }

func procStatus(pid int, field string) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return err.Error()
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// resetPeakRSS starts a process's VmHWM again from its current RSS.
func resetPeakRSS(pid int) {
	_ = os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0) // best effort: older kernels lack it
}
