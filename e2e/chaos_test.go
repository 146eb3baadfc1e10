package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
	"github.com/istio-acme/istio-acme-issuer/solver"
)

// chaosPlan is one chaos campaign: a burst of Certificates issued while the
// CA misbehaves, controller replicas are killed, the API server restarts
// and the gateway's configuration lags.
type chaosPlan struct {
	certificates int
	// kills is how many times a replica is SIGKILLed (and restarted) while
	// Certificates are pending; a kill waits until the other replica is
	// ready, so the token Service always has an endpoint.
	kills int
	// killEvery is the mean time between kills.
	killEvery time.Duration
	// restartAPIServerAfter restarts kube-apiserver once, this long into
	// the burst (0: never).
	restartAPIServerAfter time.Duration
	// lag is the gateway's configuration lag from lagFrom for lagFor.
	lag, lagFrom, lagFor time.Duration
	faults               []testenv.FaultRule
	// pebbleNonceReject is Pebble's own share of badNonce answers (%).
	pebbleNonceReject int
	// renewals is how many Certificates, once Ready, have their window at
	// the CA moved into the past (as before a revocation), so that their
	// renewals run while the chaos goes on.
	renewals int
	timeout  time.Duration
	seed     uint64
}

// chaosRenewalCheck is the replicas' wait between two readings of the CA's
// renewal information in a campaign (1-24 h in a cluster).
const chaosRenewalCheck = 2 * time.Second

// TestChaos is the bounded chaos campaign of 'make test': a few kills, a
// few faults of every kind, one API server restart, a lagging gateway.
// 'make chaos' runs the full campaign (TestChaosCampaign).
func TestChaos(t *testing.T) {
	runChaos(t, chaosPlan{
		certificates:          12,
		kills:                 4,
		killEvery:             1500 * time.Millisecond,
		restartAPIServerAfter: 4 * time.Second,
		lag:                   2 * time.Second, lagFrom: time.Second, lagFor: 8 * time.Second,
		faults:            boundedFaults,
		pebbleNonceReject: 5,
		renewals:          3,
		timeout:           4 * time.Minute,
		seed:              chaosSeed(t),
	})
}

// chaosSeed is CHAOS_SEED, to repeat a run whose seed a log printed, or a
// new one.
func chaosSeed(t *testing.T) uint64 {
	if s := os.Getenv("CHAOS_SEED"); s != "" && s != "0" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED=%q: %v", s, err)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

// boundedFaults inject every kind of fault at a low rate.
var boundedFaults = []testenv.FaultRule{
	{Endpoint: testenv.EndpointNewOrder, Kind: testenv.Fault503, Fraction: 0.1},
	{Endpoint: testenv.EndpointNewOrder, Kind: testenv.FaultRateLimited, Fraction: 0.1, RetryAfter: 3 * time.Second},
	{Endpoint: testenv.EndpointNewOrder, Kind: testenv.FaultReset, Fraction: 0.05, AfterCA: true},
	{Endpoint: testenv.EndpointChallenge, Kind: testenv.Fault500, Fraction: 0.1},
	{Endpoint: testenv.EndpointChallenge, Kind: testenv.FaultReset, Fraction: 0.05, AfterCA: true},
	{Endpoint: testenv.EndpointOrder, Kind: testenv.FaultBadNonce, Fraction: 0.1},
	{Endpoint: testenv.EndpointOrder, Kind: testenv.FaultTimeout, Fraction: 0.02, AfterCA: true, Delay: 16 * time.Second},
	{Endpoint: testenv.EndpointAuthorization, Kind: testenv.FaultReset, Fraction: 0.05},
	{Endpoint: testenv.EndpointFinalize, Kind: testenv.Fault503, Fraction: 0.1},
	{Endpoint: testenv.EndpointCertificate, Kind: testenv.Fault500, Fraction: 0.1},
}

// auditPolicy records who wrote what (never bodies), to count the
// controller's writes per object.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
  resources:
  - group: istio-acme.io
  - group: networking.istio.io
  - group: cert-manager.io
    resources: [certificaterequests, certificaterequests/status]
  - group: ""
    resources: [secrets, events]
  - group: events.k8s.io
    resources: [events]
- level: None
`

func runChaos(t *testing.T, plan chaosPlan) {
	t.Logf("chaos seed %d", plan.seed)
	rng := rand.New(rand.NewPCG(plan.seed, plan.seed>>1))
	c := startClusterWith(t, clusterOptions{
		api:       testenv.APIServerOptions{AuditPolicy: auditPolicy},
		pebbleEnv: []string{fmt.Sprintf("PEBBLE_WFE_NONCEREJECT=%d", plan.pebbleNonceReject)},
		controllerArgs: []string{
			"--renewal-info-min-interval=" + (chaosRenewalCheck / 2).String(), "--renewal-info-max-interval=" + chaosRenewalCheck.String(),
		},
	})
	proxy := testenv.StartFaultProxy(t, c.pebble, plan.seed)
	rs := c.startReplicas(2)
	c.gateway.Debounce = 100 * time.Millisecond

	c.clusterIssuerAt("chaos", proxy.DirectoryURL, v1alpha1.ACMESolver{})

	seen := c.watchRequests()
	proxy.SetRules(plan.faults)
	start := time.Now()
	crts := make([]*cmapi.Certificate, plan.certificates)
	for i := range crts {
		host := fmt.Sprintf("c%d.chaos.example.com", i)
		names := []string{host}
		if i%4 == 0 {
			names = append(names, "www."+host)
		}
		crts[i] = c.certificate(fmt.Sprintf("chaos%d", i), "chaos", names...)
	}

	// The chaos runs until every Certificate is Ready.
	allReady := make(chan struct{})
	var chaos sync.WaitGroup
	var killedAt []time.Time
	var apiDowntime time.Duration
	var apiDownAt time.Time
	chaos.Go(func() {
		killedAt = killReplicas(c, rs, plan, rng, allReady)
	})
	if plan.restartAPIServerAfter > 0 {
		chaos.Go(func() {
			select {
			case <-time.After(plan.restartAPIServerAfter):
			case <-allReady:
				return
			}
			var err error
			apiDownAt = time.Now()
			if apiDowntime, err = c.api.Restart(t); err != nil {
				t.Errorf("restarting kube-apiserver: %v", err)
				return
			}
			t.Logf("chaos: kube-apiserver restarted (%s without an API server)", apiDowntime.Round(time.Millisecond))
		})
	}
	if plan.lag > 0 {
		chaos.Go(func() {
			time.Sleep(plan.lagFrom)
			c.gateway.SetLag(plan.lag)
			t.Logf("chaos: the gateway's configuration lags %s", plan.lag)
			select {
			case <-time.After(plan.lagFor):
			case <-allReady:
			}
			c.gateway.SetLag(0)
			t.Logf("chaos: the gateway's configuration is current again")
		})
	}

	var each []time.Duration
	var mu sync.Mutex
	var waits sync.WaitGroup
	var renewalTimes []time.Duration
	for i, crt := range crts {
		waits.Go(func() {
			d := c.waitReadyQuiet(crt, plan.timeout)
			mu.Lock()
			each = append(each, d)
			mu.Unlock()
			if i < plan.renewals {
				r := c.renewWhenCAAsks(crt, plan.timeout)
				mu.Lock()
				renewalTimes = append(renewalTimes, r)
				mu.Unlock()
			}
		})
	}
	waits.Wait()
	toAllReady := time.Since(start)
	close(allReady)
	chaos.Wait()
	proxy.SetRules(nil)
	c.gateway.SetLag(0)
	if t.Failed() {
		return
	}

	// Invariants.
	kills := len(killedAt)
	report := &chaosReport{plan: plan, kills: kills, apiDowntime: apiDowntime, toAllReady: toAllReady, each: each, renewalTimes: renewalTimes}
	report.ordersPerRequest(t, c, proxy, crts, seen, killedAt, apiDownAt)
	report.validations(t, c.pebble)
	report.retryAfter(t, proxy)
	report.requestsNotFailed(t, seen)
	report.nothingLeft(t, c)
	report.writesAndSelfChecks(t, c, crts)
	report.faults = faultCounts(proxy)
	report.refused = rs.lb.Refused()
	report.exits = rs.Exits()
	report.print(t)
	if plan.kills > 0 && kills < plan.kills {
		t.Errorf("only %d kills happened before every Certificate was Ready, want %d: make the burst bigger or killEvery shorter", kills, plan.kills)
	}
}

// renewWhenCAAsks moves the window of the Certificate's current
// certificate into the past at the CA, as before a revocation, and waits
// until the Certificate is Ready with a newer certificate. It returns how
// long that took; failures are test errors (it runs beside others).
func (c *cluster) renewWhenCAAsks(crt *cmapi.Certificate, timeout time.Duration) time.Duration {
	ctx := context.Background()
	leaf, err := c.secretLeaf(crt)
	if err != nil {
		c.t.Errorf("reading the certificate of %s: %v", crt.Name, err)
		return timeout
	}
	moved := time.Now()
	if err := c.pebble.SetRenewalWindow(leafPEM(leaf), moved.Add(-2*time.Hour), moved.Add(-time.Hour), "https://ca.example/chaos"); err != nil {
		c.t.Errorf("moving the window of %s: %v", crt.Name, err)
		return timeout
	}
	deadline := moved.Add(timeout)
	for time.Now().Before(deadline) {
		// Serials tell the certificates apart: two issued within one
		// second share notBefore.
		got := &cmapi.Certificate{}
		if err := c.cl.Get(ctx, client.ObjectKeyFromObject(crt), got); err == nil && isReady(got) {
			if now, err := c.secretLeaf(crt); err == nil && now.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
				return time.Since(moved)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Errorf("Certificate %s not renewed %s after the CA moved its window into the past: %s", crt.Name, timeout, c.requestState(crt))
	return timeout
}

// killReplicas SIGKILLs a random replica every killEvery on average (only
// while the other one is ready; its supervisor restarts it), until
// plan.kills or every Certificate is Ready. It returns when each kill was.
func killReplicas(c *cluster, rs *replicaSet, plan chaosPlan, rng *rand.Rand, stop <-chan struct{}) []time.Time {
	var killedAt []time.Time
	for len(killedAt) < plan.kills {
		wait := time.Duration(rng.Int64N(int64(2 * plan.killEvery)))
		select {
		case <-stop:
			return killedAt
		case <-time.After(wait):
		}
		victim := rs.replicas[rng.IntN(len(rs.replicas))]
		other := rs.replicas[0]
		if other == victim {
			other = rs.replicas[1]
		}
		if ok, _ := ready(other); !ok {
			continue
		}
		rs.kill(victim)
		killedAt = append(killedAt, time.Now())
		c.t.Logf("chaos: killed %s (kill %d)", victim.name, len(killedAt))
	}
	return killedAt
}

// chaosReport collects the campaign's figures and checks its invariants.
type chaosReport struct {
	plan        chaosPlan
	kills       int
	apiDowntime time.Duration
	toAllReady  time.Duration
	each        []time.Duration
	refused     int
	faults      map[string]int
	exits       []string
	// renewalTimes are, per renewal the CA asked for, the time from moving
	// its window into the past to the renewed certificate being Ready.
	renewalTimes []time.Duration

	requests, orders int
	lostOrders       []string
	// crashWindow are orders the CA created shortly before the replica
	// that asked was killed, so their URL was never recorded.
	crashWindow []string
	invalid     []string
	held        int
	writesPerChallenge,
	eventsPerChallenge,
	writesPerRequest,
	selfChecksPerHost []int
	istioWrites, challengedHosts int
}

// ordersPerRequest checks that the CA saw exactly one new order per
// CertificateRequest, except where the CA created an order whose answer
// never reached the controller, or created one less than a second before a
// kill and its URL was never recorded (each exception is printed).
func (r *chaosReport) ordersPerRequest(t *testing.T, c *cluster, proxy *testenv.FaultProxy, crts []*cmapi.Certificate, seen *requestLog, killedAt []time.Time, apiDownAt time.Time) {
	var orders v1alpha1.ACMEOrderList
	if err := c.cl.List(context.Background(), &orders, client.InNamespace(appNamespace)); err != nil {
		t.Fatal(err)
	}
	recorded := map[string]bool{}
	for _, o := range orders.Items {
		recorded[orderID(o.Status.URL)] = true
	}
	// An order the controller asked the CA about later was recorded, also
	// when its ACMEOrder went since with its request (cert-manager deletes
	// old requests of a renewed Certificate).
	for _, req := range proxy.Requests() {
		if req.Endpoint == testenv.EndpointOrder {
			recorded[orderID(req.URL)] = true
		}
	}
	// Every request cert-manager created, also those it deleted since.
	requests := map[string]int{}
	for _, crt := range crts {
		n := seen.of(crt.Name)
		requests[namesKey(crt.Spec.DNSNames)] += n
		r.requests += n
	}
	created := map[string]int{}
	excused := map[string]int{}
	for _, req := range proxy.Requests() {
		if req.Endpoint != testenv.EndpointNewOrder || req.Location == "" {
			continue
		}
		key := namesKey(req.Names)
		created[key]++
		r.orders++
		switch {
		case req.Fault != "":
			excused[key]++
			r.lostOrders = append(r.lostOrders, fmt.Sprintf("%s for %s (%s after the CA created it)", req.Location, key, req.Fault))
		case !recorded[orderID(req.Location)]:
			if k, ok := killSoonAfter(killedAt, req.At, time.Second); ok {
				excused[key]++
				r.crashWindow = append(r.crashWindow, fmt.Sprintf("%s for %s (created %s before a replica was killed)", req.Location, key, k.Round(time.Millisecond)))
			} else if d, ok := leaseLostSoonAfter(apiDownAt, r.apiDowntime, req.At); ok {
				excused[key]++
				r.crashWindow = append(r.crashWindow, fmt.Sprintf("%s for %s (created %s before the API server went away for %s: its replica could not record it and lost its leadership)", req.Location, key, d.Round(time.Millisecond), r.apiDowntime.Round(time.Millisecond)))
			}
		}
	}
	for key, n := range requests {
		if created[key]-excused[key] != n {
			t.Errorf("%s: the CA created %d orders (%d excused) for %d CertificateRequests", key, created[key], excused[key], n)
		}
	}
}

// orderID is the last path segment of an order URL, the same whether the
// URL names the CA or the proxy in front of it.
func orderID(u string) string {
	return u[strings.LastIndex(u, "/")+1:]
}

// leaderRenewDeadline is how long the leader keeps its leadership without
// the API server (controller-runtime's default): then it stops, and what
// it kept in memory goes with it.
const leaderRenewDeadline = 10 * time.Second

// leaseLostSoonAfter reports whether an order the CA created at at could
// not be recorded because the API server went away within a second after
// (or was away), for longer than the leader keeps its leadership: the
// replica that kept the order in memory to record it stopped first. It
// returns how long before the API server went away the order came.
func leaseLostSoonAfter(downAt time.Time, downtime time.Duration, at time.Time) (time.Duration, bool) {
	if downAt.IsZero() || downtime <= leaderRenewDeadline {
		return 0, false
	}
	d := downAt.Sub(at)
	return d, d < time.Second && at.Before(downAt.Add(downtime))
}

// killSoonAfter returns how long after at the first kill within d came.
func killSoonAfter(killedAt []time.Time, at time.Time, d time.Duration) (time.Duration, bool) {
	for _, k := range killedAt {
		if k.After(at) && k.Sub(at) < d {
			return k.Sub(at), true
		}
	}
	return 0, false
}

func namesKey(names []string) string {
	s := slices.Clone(names)
	for i := range s {
		s[i] = strings.ToLower(s[i])
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

// validations checks that the CA failed no validation: the self-check must
// have caught every route that was not ready.
func (r *chaosReport) validations(t *testing.T, pebble *testenv.Pebble) {
	r.invalid = pebble.FailedValidations()
	for _, inv := range r.invalid {
		t.Errorf("the CA failed a validation: %s", inv)
	}
}

// retryAfter checks that no account asked the CA anything before a
// Retry-After it was given had passed.
func (r *chaosReport) retryAfter(t *testing.T, proxy *testenv.FaultProxy) {
	v := proxy.HeldViolations()
	r.held = len(v)
	for _, h := range v {
		t.Errorf("account %s sent %s %s at %s, before its Retry-After ended at %s", h.Account, h.Request.Endpoint, h.Request.URL, h.Request.At.Format(time.RFC3339Nano), h.HeldUntil.Format(time.RFC3339Nano))
	}
}

// requestsNotFailed checks that no CertificateRequest failed at any time:
// every fault here is transient.
func (r *chaosReport) requestsNotFailed(t *testing.T, seen *requestLog) {
	for _, f := range seen.failures() {
		t.Errorf("%s", f)
	}
}

// requestLog records, from a watch, every CertificateRequest of a
// Certificate and every failure, also of requests deleted since.
type requestLog struct {
	mu       sync.Mutex
	byCert   map[string]map[string]bool // Certificate -> request names
	failed   map[string]string          // request -> what failed
	failList []string
}

// watchRequests starts recording CertificateRequests in the app namespace.
func (c *cluster) watchRequests() *requestLog {
	c.t.Helper()
	l := &requestLog{byCert: map[string]map[string]bool{}, failed: map[string]string{}}
	inf, err := c.informers.GetInformer(context.Background(), &cmapi.CertificateRequest{})
	if err != nil {
		c.t.Fatal(err)
	}
	record := func(obj any) {
		cr, ok := obj.(*cmapi.CertificateRequest)
		if !ok || cr.Namespace != appNamespace {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if owner := metav1.GetControllerOf(cr); owner != nil {
			if l.byCert[owner.Name] == nil {
				l.byCert[owner.Name] = map[string]bool{}
			}
			l.byCert[owner.Name][cr.Name] = true
		}
		for _, cond := range cr.Status.Conditions {
			failed := (cond.Type == cmapi.CertificateRequestConditionReady && cond.Reason == cmapi.CertificateRequestReasonFailed) ||
				(cond.Type == cmapi.CertificateRequestConditionInvalidRequest && cond.Status == cmmeta.ConditionTrue)
			if failed && l.failed[cr.Name] == "" {
				l.failed[cr.Name] = cond.Message
				l.failList = append(l.failList, fmt.Sprintf("CertificateRequest %s failed: %s", cr.Name, cond.Message))
			}
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    record,
		UpdateFunc: func(_, obj any) { record(obj) },
	}); err != nil {
		c.t.Fatal(err)
	}
	return l
}

func (l *requestLog) of(certificate string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.byCert[certificate])
}

func (l *requestLog) failures() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.failList)
}

// nothingLeft checks that no Gateway, VirtualService, challenge or Secret
// of ours remains.
func (r *chaosReport) nothingLeft(t *testing.T, c *cluster) {
	c.waitNothingLeft()
	var secrets corev1.SecretList
	if err := c.cl.List(context.Background(), &secrets, client.MatchingLabels{solver.LabelManagedBy: solver.ManagedByValue}); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		t.Errorf("Secret %s/%s of ours is left", s.Namespace, s.Name)
	}
}

// writesAndSelfChecks counts, per challenge, the controller's writes of
// it and Events about it (from the API server's audit log), and the
// self-check's requests per host (at the gateway).
func (r *chaosReport) writesAndSelfChecks(t *testing.T, c *cluster, crts []*cmapi.Certificate) {
	entries := readAudit(t, c.api.AuditLogPath)
	writes := map[string]int{}
	events := map[string]int{}
	requestWrites := map[string]int{}
	for _, e := range entries {
		if !e.byController() {
			continue
		}
		switch e.ObjectRef.Resource {
		case "certificaterequests":
			requestWrites[e.ObjectRef.Name]++
		case "acmechallenges":
			writes[e.ObjectRef.Name]++
		case "gateways", "virtualservices":
			if e.Verb == "create" || e.Verb == "delete" || e.Verb == "update" || e.Verb == "patch" {
				r.istioWrites++
			}
		}
	}
	for _, e := range entries {
		if !e.byController() || e.ObjectRef.Resource != "events" || e.Verb != "create" {
			continue
		}
		for ch := range writes {
			if strings.HasPrefix(e.ObjectRef.Name, ch+".") {
				events[ch]++
			}
		}
	}
	for ch, n := range writes {
		r.writesPerChallenge = append(r.writesPerChallenge, n)
		r.eventsPerChallenge = append(r.eventsPerChallenge, events[ch])
	}
	for _, n := range requestWrites {
		r.writesPerRequest = append(r.writesPerRequest, n)
	}
	for _, crt := range crts {
		for _, host := range crt.Spec.DNSNames {
			r.challengedHosts++
			r.selfChecksPerHost = append(r.selfChecksPerHost, c.gateway.Answered(solver.SelfCheckUserAgent, host, "/.well-known/acme-challenge/"))
		}
	}
	// A retry loop that ignores its backoff writes and checks many times a
	// second for as long as the fault lasts; with backoff, even a challenge
	// that lives through kills and a lagging gateway stays far below these.
	// A self-check costs 1 request when it fails and 3 when it passes;
	// retries come quickly while a push is likely in flight, so a lagging
	// gateway costs about a dozen, and every replica that takes the
	// challenge over after a kill, an API restart or a lost lease checks
	// again (a pass is remembered only in the process that made it).
	const maxWrites, maxRequestWrites = 15, 40
	maxSelfChecks := 20 + 3*(r.kills+1)
	if m := slices.Max(append(r.writesPerChallenge, 0)); m > maxWrites {
		t.Errorf("a challenge was written %d times, more than %d: a retry faster than its backoff?", m, maxWrites)
	}
	if m := slices.Max(append(r.selfChecksPerHost, 0)); m > maxSelfChecks {
		t.Errorf("a host was self-checked %d times, more than %d", m, maxSelfChecks)
	}
	if m := slices.Max(append(r.writesPerRequest, 0)); m > maxRequestWrites {
		t.Errorf("a CertificateRequest was written %d times by the controller, more than %d", m, maxRequestWrites)
	}
}

func faultCounts(proxy *testenv.FaultProxy) map[string]int {
	out := map[string]int{}
	for _, req := range proxy.Requests() {
		if req.Fault != "" {
			out[fmt.Sprintf("%s %s", req.Endpoint, req.Fault)]++
		}
	}
	return out
}

func (r *chaosReport) print(t *testing.T) {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos summary (seed %d):\n", r.plan.seed)
	fmt.Fprintf(&b, "  Certificates: %d, all Ready after %s (each: %s)\n", r.plan.certificates, r.toAllReady.Round(time.Millisecond), summary(r.each))
	if r.plan.renewals > 0 {
		fmt.Fprintf(&b, "  renewals the CA asked for (window moved into the past once Ready, checks every %s): %d, each Ready after the move in %s\n", chaosRenewalCheck, len(r.renewalTimes), summary(r.renewalTimes))
	}
	fmt.Fprintf(&b, "  replica kills: %d; kube-apiserver restarts: %d (%s without it); gateway lag %s for up to %s\n", r.kills, boolInt(r.apiDowntime > 0), r.apiDowntime.Round(time.Millisecond), r.plan.lag, r.plan.lagFor)
	for _, e := range r.exits {
		fmt.Fprintf(&b, "    a replica ended on its own and was restarted: %s\n", e)
	}
	total := 0
	kinds := slices.Sorted(func(yield func(string) bool) {
		for k := range r.faults {
			if !yield(k) {
				return
			}
		}
	})
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %d", k, r.faults[k]))
		total += r.faults[k]
	}
	fmt.Fprintf(&b, "  CA faults injected: %d (%s), plus Pebble's own badNonce at %d%%\n", total, strings.Join(parts, ", "), r.plan.pebbleNonceReject)
	fmt.Fprintf(&b, "  orders at the CA: %d for %d CertificateRequests; orders whose answer was lost: %d\n", r.orders, r.requests, len(r.lostOrders))
	for _, l := range r.lostOrders {
		fmt.Fprintf(&b, "    lost answer: %s\n", l)
	}
	fmt.Fprintf(&b, "  orders placed just before a kill or a long API server outage, never recorded (the crash window): %d\n", len(r.crashWindow))
	for _, l := range r.crashWindow {
		fmt.Fprintf(&b, "    crash window: %s\n", l)
	}
	fmt.Fprintf(&b, "  validations the CA failed: %d; requests sent before a Retry-After passed: %d\n", len(r.invalid), r.held)
	fmt.Fprintf(&b, "  token connections no replica took: %d\n", r.refused)
	fmt.Fprintf(&b, "  per challenge: controller writes %s; Events %s\n", intSummary(r.writesPerChallenge), intSummary(r.eventsPerChallenge))
	fmt.Fprintf(&b, "  per CertificateRequest: controller writes %s\n", intSummary(r.writesPerRequest))
	fmt.Fprintf(&b, "  per host: self-check requests %s; Istio writes per challenged host %.2f\n", intSummary(r.selfChecksPerHost), float64(r.istioWrites)/float64(max(r.challengedHosts, 1)))
	t.Log(b.String())
	fmt.Print(b.String())
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
