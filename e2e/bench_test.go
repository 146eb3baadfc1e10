//go:build bench

package e2e

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cmacme "github.com/cert-manager/cert-manager/pkg/apis/acme/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// TestBench is what 'make bench' runs. On the stack of the end-to-end tests
// and in one run, it issues the same workloads through four issuers and
// prints their figures side by side:
//   - ours: an ACMEClusterIssuer, routes through the Istio gateway;
//   - cert-manager's own ACME ClusterIssuer at its best: its Order and
//     Challenge controllers and its self-check, its solver Pods replaced by
//     an in-process stand-in that answers every Challenge's key at once
//     (no Istio, no Pod to start);
//   - cert-manager's ACME ClusterIssuer whose solver names our IngressClass
//     (our solver mode), on the smaller workloads;
//   - the floor: cert-manager's CA ClusterIssuer, which does no ACME and
//     no routing, so its figures are what cert-manager's Certificate
//     machinery and the API server cost any issuer here.
//
// Workloads: one Certificate with two names, several times one after
// another; then each size of BENCH_SIZES created at once; then, for ours,
// the memory case: Certificates issued until ours number
// BENCH_MEMORY_CERTS, the cluster filled with unrelated Secrets, Gateways
// and VirtualServices, and a few more issued among them. See benchConfig
// for the variables.
func TestBench(t *testing.T) {
	cfg := benchConfigFromEnv(t)
	opts := clusterOptions{
		controller: true,
		api:        testenv.APIServerOptions{AuditPolicy: benchAuditPolicy},
		certManagerArgs: []string{
			"-workers", strconv.Itoa(cfg.certManagerWorkers),
			"-kube-api-qps", strconv.Itoa(cfg.certManagerQPS), "-kube-api-burst", strconv.Itoa(2 * cfg.certManagerQPS),
		},
	}
	pprofAddr := ""
	if cfg.profileDir != "" {
		if err := os.MkdirAll(cfg.profileDir, 0o755); err != nil {
			t.Fatalf("BENCH_PROFILE=%s: %v", cfg.profileDir, err)
		}
		pprofAddr = testenv.Addr(testenv.FreePort(t))
		opts.controllerArgs = []string{"--pprof-bind-address", pprofAddr}
	}
	c := startClusterWith(t, opts)
	// The gateway translates Istio's configuration at most every 100 ms
	// for requests it can already route, as istiod debounces its pushes.
	c.gateway.Debounce = 100 * time.Millisecond
	m := c.startMeter(cfg.keyAlgorithm)
	standIn := c.startStandIn()

	// The platform's shared Gateway for the Certificates' names, as in the
	// README: our routes attach to it (one VirtualService per name).
	shared := &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: gatewayNamespace, Name: "shared"}}
	shared.Spec.Selector = map[string]string{"istio": "ingressgateway"}
	shared.Spec.Servers = []*istioapi.Server{httpServer("*.example.com")}
	c.create(shared)
	c.clusterIssuer("pebble", v1alpha1.ACMESolver{})
	c.cmClusterIssuer("standin", cmacme.ACMEChallengeSolver{HTTP01: &cmacme.ACMEChallengeSolverHTTP01{
		Ingress: &cmacme.ACMEChallengeSolverHTTP01Ingress{IngressClassName: ptr.To("standin"), ServiceType: corev1.ServiceTypeClusterIP},
	}})
	c.caClusterIssuer("floor")
	c.applyChartIngressClasses()
	c.cmClusterIssuer("letsencrypt", cmacme.ACMEChallengeSolver{HTTP01: &cmacme.ACMEChallengeSolverHTTP01{
		Ingress: &cmacme.ACMEChallengeSolverHTTP01Ingress{IngressClassName: ptr.To("istio-acme"), ServiceType: corev1.ServiceTypeClusterIP},
	}})

	sides := []*benchSide{
		{key: "ours", title: "ACMEClusterIssuer", issuer: cmmeta.IssuerReference{Group: v1alpha1.GroupVersion.Group, Kind: "ACMEClusterIssuer", Name: "pebble"}, maxSize: math.MaxInt},
		{key: "cm", title: "cert-manager, instant solver", issuer: cmmeta.IssuerReference{Group: "cert-manager.io", Kind: "ClusterIssuer", Name: "standin"}, standIn: standIn, maxSize: cfg.certManagerMaxSize},
		{key: "cmi", title: "cert-manager + our class", issuer: cmmeta.IssuerReference{Group: "cert-manager.io", Kind: "ClusterIssuer", Name: "letsencrypt"}, maxSize: cfg.solverModeMaxSize},
		{key: "floor", title: "floor: cert-manager CA", issuer: cmmeta.IssuerReference{Group: "cert-manager.io", Kind: "ClusterIssuer", Name: "floor"}, maxSize: math.MaxInt},
	}
	report := &benchReport{cfg: cfg, sides: sides}

	// One Certificate at a time: a first one (cold), then cfg.oneRuns.
	// Ours and the floor alone; cert-manager's two ACME issuers side by
	// side: each spends 8 of its 10 s waiting between the tries of its
	// self-check.
	alone, waiting := []*benchSide{sides[0], sides[3]}, sides[1:3]
	for _, s := range alone {
		s.cold = m.issue(s, s.key+"-warmup", 1).only()
	}
	for i, d := range m.issueSideBySide(waiting, "warmup") {
		waiting[i].cold = d
	}
	for i := range cfg.oneRuns {
		for _, s := range alone {
			s.one = append(s.one, m.issue(s, fmt.Sprintf("%s-one%d", s.key, i), 1).only())
		}
		for j, d := range m.issueSideBySide(waiting, fmt.Sprintf("one%d", i)) {
			waiting[j].one = append(waiting[j].one, d)
		}
	}
	report.printHeader(os.Stdout)
	report.printOne(os.Stdout)
	// Sizes at once, each side in turn on the same cluster; each block is
	// printed when done.
	for _, n := range cfg.sizes {
		for _, s := range sides {
			if n == 0 || n > s.maxSize {
				continue
			}
			c.waitQuiet()
			resetPeakRSS(c.controller.PID())
			profile := m.startProfile(pprofAddr, cfg, fmt.Sprintf("%s-%d", s.key, n))
			f := m.issue(s, fmt.Sprintf("%s-n%d", s.key, n), n)
			profile()
			s.at = append(s.at, f)
		}
		report.printSize(os.Stdout, n)
	}
	// The memory case, ours only: Certificates issued until ours number
	// cfg.memoryCerts, then a cluster of a real size around them, and
	// cfg.clutterBatch more issued in it.
	if ours := sides[0]; cfg.memoryCerts > 0 {
		c.waitQuiet()
		resetPeakRSS(c.controller.PID())
		if more := cfg.memoryCerts - ours.issued; more > 0 {
			report.topUp = m.issue(ours, "ours-mem", more)
			c.waitQuiet()
		}
		report.clutter = c.createClutter(cfg.clutter)
		// The peak so far is the informers taking in the clutter; the
		// batch's own is measured from here.
		report.clutterPeakRSS = peakRSS(c.controller.PID())
		resetPeakRSS(c.controller.PID())
		if cfg.clutterBatch > 0 {
			// Heap profiles before and after the batch: what it
			// allocated is the difference of their alloc_space
			// (go tool pprof -sample_index=alloc_space -diff_base).
			heap := func(name string) {
				if pprofAddr != "" {
					m.saveProfile(http.DefaultClient, "http://"+pprofAddr, "heap", filepath.Join(cfg.profileDir, name))
				}
			}
			heap("ours-heap-before-clutter-batch.pprof")
			profile := m.startProfile(pprofAddr, cfg, "ours-clutter")
			report.memory = m.issue(ours, "ours-clutter", cfg.clutterBatch)
			profile()
			heap("ours-heap-after-clutter-batch.pprof")
		}
		c.waitQuiet()
		report.memoryIssued = ours.issued
		report.peakRSS = peakRSS(c.controller.PID())
		report.settledRSS = residentRSS(c.controller.PID())
		report.printMemory(os.Stdout)
	}
	if pprofAddr != "" {
		m.saveProfile(http.DefaultClient, "http://"+pprofAddr, "heap", filepath.Join(cfg.profileDir, "ours-heap.pprof"))
	}
	c.waitNothingLeft()
}

// benchSide is one issuer's Certificates and figures.
type benchSide struct {
	key, title string
	issuer     cmmeta.IssuerReference
	// standIn, when set, answers this side's HTTP-01 challenges: its
	// names resolve to the stand-in instead of the Istio gateway.
	standIn *standIn
	// maxSize leaves out the at-once sizes above it (0: all of them).
	maxSize int
	// issued counts this side's Certificates issued so far.
	issued int
	cold   time.Duration
	one    []time.Duration
	at     []*benchFigures
}

// benchFigures are one workload's figures.
type benchFigures struct {
	n int
	// all is from the first creation until every one is Ready; each is
	// every Certificate's time from its creation to Ready.
	all  time.Duration
	each []time.Duration
	// cpu is each process's CPU time during the workload.
	cpu processCPU
	// requests counts API requests by client and verb (audit log).
	requests map[string]map[string]int
	// requestsByResource counts them by client, verb and resource.
	requestsByResource map[string]map[string]int
	// solverWrites counts writes of solver objects by client: Istio
	// Gateways and VirtualServices by ours (and their deletion by the
	// garbage collector when they go with their challenge), Pods, Services
	// and Ingresses by cert-manager's HTTP-01 solver.
	solverWrites map[string]int
	hosts        int
	// peakRSS is our controller's peak resident memory in the workload.
	peakRSS string
	// standInRequests counts the stand-in's answers.
	standInRequests int
}

// only is the time of a workload of one Certificate (its timeout when it
// never became Ready, which the bench has reported as an error).
func (f *benchFigures) only() time.Duration {
	if len(f.each) == 0 {
		return f.all
	}
	return f.each[0]
}

// benchAuditPolicy records every request but watches, without bodies, to
// count requests by client, verb and resource.
const benchAuditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  verbs: [watch]
- level: Metadata
`

// waitQuiet waits until no ACME challenge of any issuer is left, so that a
// workload does not pay for the one before it.
func (c *cluster) waitQuiet() {
	c.t.Helper()
	c.eventually("no challenge left", 5*time.Minute, func() (bool, string) {
		var ours v1alpha1.ACMEChallengeList
		var theirs cmacme.ChallengeList
		if err := c.cl.List(context.Background(), &ours); err != nil {
			return false, err.Error()
		}
		if err := c.cl.List(context.Background(), &theirs); err != nil {
			return false, err.Error()
		}
		return len(ours.Items)+len(theirs.Items) == 0, fmt.Sprintf("%d ACMEChallenges, %d Challenges", len(ours.Items), len(theirs.Items))
	})
}

// startProfile takes CPU profiles of our controller and of the API server
// for cfg.profileSeconds in the background; the returned function waits
// for them.
func (m *meter) startProfile(pprofAddr string, cfg benchConfig, name string) func() {
	if pprofAddr == "" {
		return func() {}
	}
	what := fmt.Sprintf("profile?seconds=%d", cfg.profileSeconds)
	var wg sync.WaitGroup
	wg.Go(func() {
		m.saveProfile(http.DefaultClient, "http://"+pprofAddr, what, filepath.Join(cfg.profileDir, "ours-cpu-"+name+".pprof"))
	})
	wg.Go(func() {
		// The API server serves its profiles to administrators.
		cl, err := rest.HTTPClientFor(m.c.api.Config)
		if err != nil {
			m.c.t.Errorf("API server profile: %v", err)
			return
		}
		m.saveProfile(cl, strings.TrimSuffix(m.c.api.Config.Host, "/"), what, filepath.Join(cfg.profileDir, "apiserver-cpu-"+name+".pprof"))
	})
	return wg.Wait
}

// saveProfile writes the pprof profile what served at base to path.
func (m *meter) saveProfile(cl *http.Client, base, what, path string) {
	res, err := cl.Get(base + "/debug/pprof/" + what)
	if err != nil {
		m.c.t.Errorf("profile %s: %v", path, err)
		return
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err == nil && res.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", res.Status, data)
	}
	if err == nil {
		err = os.WriteFile(path, data, 0o644)
	}
	if err != nil {
		m.c.t.Errorf("profile %s: %v", path, err)
		return
	}
	fmt.Printf("profile written: %s\n", path)
}
