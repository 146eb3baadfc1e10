package differential

import (
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	istionet "istio.io/client-go/pkg/apis/networking/v1"
	"istio.io/istio/pilot/pkg/model/credentials"
	"istio.io/istio/pilot/test/xdstest"
	"istio.io/istio/pkg/config/schema/kind"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/e2e/istiogw"
	"github.com/istio-acme/istio-acme-issuer/solver"
)

var (
	layouts = flag.Int("layouts", 500, "how many layouts to generate")
	from    = flag.Int("from", 0, "the index of the first layout (to rerun one: -from N -layouts 1)")
	seed    = flag.Uint64("seed", 1, "the generator's seed; 0 draws one (printed)")
	workers = flag.Int("workers", runtime.GOMAXPROCS(0), "how many layouts to check at once")
)

// TestDifferential generates layouts, plans each challenge and checks the
// plan with Istio's own translation and simulation:
//   - published: the CA's request (plain HTTP on the port behind the gateway
//     Service's port 80, then HTTPS behind 443 if redirected, where a server
//     whose credential Secret is missing fails the handshake) reaches the
//     token Service on every workload the plan routes; and for every probe
//     host, path and workload, plain and TLS, the gateway's decision is the
//     same with and without the challenge objects;
//   - refused: the attempt the refusal judged is not a working plan: with
//     its objects the CA does not reach the token, or a user's request
//     moves.
func TestDifferential(t *testing.T) {
	s := *seed
	if s == 0 {
		s = rand.Uint64()
	}
	t.Logf("seed %d, %d layouts", s, *layouts)
	start := time.Now()
	var published, failures, refusedNoAttempt int
	refused := map[string]int{}
	// Layouts are independent: each gets its own translations. Results
	// are collected by index so that the summary and the failures shown
	// do not depend on the schedule.
	type result struct {
		outcome string
		err     error
		dims    map[string]bool
	}
	results := make([]result, *layouts)
	var tenancyChecked atomic.Int64
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(*workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				l := generate(s, *from+i)
				outcome, err := check(t, l)
				if err == nil && outcome == "published" {
					var shared bool
					if shared, err = checkShared(t, l); shared {
						l.Dims[dimShared] = true
					}
				}
				if err == nil {
					var checked bool
					if checked, err = checkTenancy(t, l); checked && err == nil {
						tenancyChecked.Add(1)
					}
				}
				results[i] = result{outcome, err, l.Dims}
			}
		}()
	}
	for i := range *layouts {
		next <- i
	}
	close(next)
	wg.Wait()
	shown := 0
	// Per generator dimension: layouts, published, failures.
	type dimCount struct{ layouts, published, failures int }
	dims := map[string]*dimCount{}
	for _, d := range generatorDims {
		dims[d] = &dimCount{}
	}
	for _, r := range results {
		for d := range r.dims {
			c := dims[d]
			if c == nil {
				c = &dimCount{}
				dims[d] = c
			}
			c.layouts++
			if r.err != nil {
				c.failures++
			} else if r.outcome == "published" {
				c.published++
			}
		}
	}
	for i, r := range results {
		switch {
		case r.err != nil:
			failures++
			if shown < 5 {
				shown++
				t.Errorf("layout %d (seed %d): %v\nreproduction (make differential SEED=%d FROM=%d LAYOUTS=1):\n%s", *from+i, s, r.err, s, *from+i, generate(s, *from+i).yaml())
			}
		case r.outcome == "published":
			published++
		case r.outcome == "refused-without-attempt":
			refusedNoAttempt++
		default:
			refused[r.outcome]++
		}
	}
	reasons := slices.Sorted(maps.Keys(refused))
	var parts []string
	for _, r := range reasons {
		parts = append(parts, fmt.Sprintf("%s %d", r, refused[r]))
	}
	t.Logf("differential summary: seed %d, %d layouts in %s (%d workers): %d published, refused %d (%s), %d refused without an attempt to check, %d failures; the tenancy rule's reading of a server's hosts agreed with Istio on %d layouts",
		s, *layouts, time.Since(start).Round(time.Second), max(*workers, 1), published, *layouts-published-failures-refusedNoAttempt, strings.Join(parts, ", "), refusedNoAttempt, failures, tenancyChecked.Load())
	var dimParts []string
	for _, d := range slices.Sorted(maps.Keys(dims)) {
		c := dims[d]
		dimParts = append(dimParts, fmt.Sprintf("%s %d (%d published, %d failures)", d, c.layouts, c.published, c.failures))
		if *layouts >= 500 && c.layouts == 0 {
			t.Errorf("no layout had %s: the generator is broken", d)
		}
	}
	t.Logf("differential dimensions: %s", strings.Join(dimParts, ", "))
	if published == 0 {
		t.Error("no layout was published: the generator or the planner is broken")
	}
	if *layouts >= 100 && tenancyChecked.Load() == 0 {
		t.Error("the tenancy rule was checked on no layout: the generator or the check is broken")
	}
}

// check plans one layout and checks the outcome against Istio.
func check(t *testing.T, l *layout) (string, error) {
	now := epoch.Add(time.Minute)
	plan, refusal := planFor(l, l.Challenge)
	attempt := plan
	if refusal != nil {
		if refusal.Attempt == nil {
			return "refused-without-attempt", nil
		}
		attempt = refusal.Attempt
	}
	temp := map[int]*solver.TemporaryHTTPS{}
	for i, w := range l.Workloads {
		temp[i] = &solver.TemporaryHTTPS{Namespace: w.Namespace}
	}
	routes := solver.BuildRoutes(l.Challenge, attempt.Workloads, attempt.Split, temp)
	for _, g := range routes.Gateways {
		g.CreationTimestamp = metav1.NewTime(now)
	}
	for _, v := range routes.VirtualServices {
		v.CreationTimestamp = metav1.NewTime(now)
	}
	ours := map[string]bool{}
	for _, sec := range routes.Secrets {
		ours[sec.Namespace+"/"+sec.Name] = true
	}
	exists := func(resource, namespace string) bool {
		return secretExistsIn(l.Secrets, resource, namespace) || secretExistsIn(ours, resource, namespace)
	}

	routed := map[int]bool{}
	for _, w := range attempt.Workloads {
		routed[w.Index] = true
	}
	var caFailure, moved error
	for i, w := range l.Workloads {
		before, err := translate(t, l, w, nil)
		if err != nil {
			return "", fmt.Errorf("translating the users' objects: %w", err)
		}
		after, err := translate(t, l, w, &routes)
		if err != nil {
			before.Close()
			return "", fmt.Errorf("translating with the challenge objects: %w", err)
		}
		httpPort, httpsPort := w.httpPorts()
		if routed[i] && caFailure == nil {
			if err := caReaches(t, after, httpPort, httpsPort, l.Host, l.Challenge.Spec.Token, w.Namespace, exists); err != nil {
				caFailure = fmt.Errorf("workload %d: %w", i, err)
			}
		}
		if moved == nil {
			moved = usersUnchanged(t, before, after, l, []caRequest{{l.Host, l.Challenge.Spec.Token}}, w.Namespace, exists)
			if moved != nil {
				moved = fmt.Errorf("workload %d: %w", i, moved)
			}
		}
		before.Close()
		after.Close()
	}
	if refusal == nil {
		if caFailure != nil {
			return "", fmt.Errorf("published %s, but Istio does not route the CA's request to the token: %v", describe(plan), caFailure)
		}
		if moved != nil {
			return "", fmt.Errorf("published %s, and a user's request moves: %v", describe(plan), moved)
		}
		return "published", nil
	}
	if caFailure == nil && moved == nil {
		return "", fmt.Errorf("refused (%s: %s), but Istio routes the attempt %s correctly and moves nothing", refusal.Reason, refusal.Message, describe(attempt))
	}
	return refusal.Reason, nil
}

// planFor plans a challenge of the layout as the controller would.
func planFor(l *layout, ch *v1alpha1.ACMEChallenge) (*solver.Plan, *solver.Refusal) {
	return solver.PlanRoutes(solver.PlanInput{
		Challenge: ch, Gateways: l.Gateways, VirtualServices: l.VirtualServices, Workloads: l.workloads(),
		Credential: func(ns, name string) solver.CredentialState {
			if l.Secrets[ns+"/"+name] {
				return solver.CredentialState{Usable: true}
			}
			return solver.CredentialState{Problem: "Secret " + ns + "/" + name + " does not exist"}
		},
		Now: epoch.Add(time.Minute),
	})
}

// secretExistsIn tells whether the credential resource of a server on a
// workload in namespace names one of secrets ("namespace/name"). Istio's
// SDS resolves the credential's Secret; resources that are not Secrets
// (builtin://, invalid://) never occur in the layouts.
func secretExistsIn(secrets map[string]bool, resource, namespace string) bool {
	sr, err := credentials.ParseResourceName(resource, namespace, "", "")
	if err != nil || sr.ResourceKind != kind.Secret {
		return false
	}
	return secrets[sr.Namespace+"/"+sr.Name]
}

func translate(t *testing.T, l *layout, w workloadSpec, ours *solver.Routes) (*istiogw.Translation, error) {
	gws, vss := slices.Clone(l.Gateways), slices.Clone(l.VirtualServices)
	if ours != nil {
		gws = append(gws, ours.Gateways...)
		vss = append(vss, ours.VirtualServices...)
	}
	var svcs []*corev1.Service
	for _, x := range l.Workloads {
		svcs = append(svcs, x.services()...)
	}
	return istiogw.TranslateMesh(t, l.Mesh, w.Labels, w.Namespace, gws, vss, svcs, w.Pod.Spec.Containers[0].Ports...)
}

// caRequest is a challenge's host and token: the CA's request for them is
// the one the challenge objects may move.
type caRequest struct{ host, token string }

// caHeaders are what a CA's validation request carries.
var caHeaders = map[string]string{"user-agent": "Mozilla/5.0 (compatible; Let's Encrypt validation server; +https://www.letsencrypt.org)", "accept": "*/*", "accept-encoding": "gzip"}

// caReaches follows the CA: plain HTTP first, then HTTPS after Istio's
// redirect (the only redirect the generator's routes make).
func caReaches(t *testing.T, tr *istiogw.Translation, httpPort, httpsPort int, host, token, ns string, exists secretExists) error {
	path := solver.ChallengePathPrefix + token
	req := request{host: host, path: path, headers: caHeaders, ca: true}
	d := decide(t, tr.Sim, httpPort, req, exists, ns)
	if d.kind == "tls-redirect" {
		req.tls = true
		d = decide(t, tr.Sim, httpsPort, req, exists, ns)
	}
	if d.kind != "cluster" || d.target != tokenServiceCluster {
		return fmt.Errorf("GET %s%s (tls %v) goes to %s", host, path, req.tls, d)
	}
	return nil
}

// usersUnchanged compares every probe's decision with and without the
// challenge objects, on every port the gateway pods listen on in either
// translation (not only those behind the gateway's Service: another
// Service, or a client of the pods, may reach the others), plain and TLS.
func usersUnchanged(t *testing.T, before, after *istiogw.Translation, l *layout, cas []caRequest, ns string, exists secretExists) error {
	isCA := func(host, path string) bool {
		return slices.Contains(cas, caRequest{host, strings.TrimPrefix(path, solver.ChallengePathPrefix)}) && strings.HasPrefix(path, solver.ChallengePathPrefix)
	}
	// Every path the generator's routes match, also with the query its
	// queryParams conditions ask for: a route matching a path and a query
	// is probed only by a request with both.
	paths := []string{"/", "/?debug=1", "/app", "/app?debug=1", "/api/x", "/api/x?debug=1", "/d/x", "/d/x?debug=1", "/d/.well-known/acme-challenge/x", solver.ChallengePathPrefix + "other", solver.ChallengePathPrefix + "other?debug=1", "/.WELL-KNOWN/acme-challenge/x"}
	for _, ca := range cas {
		paths = append(paths, solver.ChallengePathPrefix+ca.token)
	}
	ports := listenerPorts(before, after)
	for _, host := range probeHosts(l.Probes, before, after) {
		for _, path := range paths {
			for _, headers := range []map[string]string{nil, {headerName: "true"}} {
				for _, port := range ports {
					for _, conn := range probeConnections {
						tls := conn.tls
						if isCA(host, path) {
							continue // the CA's request: it is meant to move
						}
						req := request{host: host, path: path, tls: tls, scheme: conn.scheme, headers: headers}
						b, a := outcome(decide(t, before.Sim, port, req, exists, ns)), outcome(decide(t, after.Sim, port, req, exists, ns))
						if b == a {
							continue
						}
						// The challenged host's HTTPS failed its handshake
						// before (no usable credential) and now meets the
						// temporary server, which answers nothing but the token.
						if tls && slices.ContainsFunc(cas, func(c caRequest) bool { return c.host == host }) && b.kind == "tls-fail" && a.kind == "not-served" {
							continue
						}
						return fmt.Errorf("GET %s://%s%s on pod port %d (%s, headers %v): %s before, %s with the challenge objects", req.schemeName(), host, path, port, conn.what, headers, b, a)
					}
				}
			}
		}
	}
	return nil
}

// probeConnections are how each probe request is sent: plain, plain but
// saying https (HTTP/2 without TLS, or HTTP/1.1 in absolute form, which a
// route's scheme condition sees), and over TLS.
var probeConnections = []struct {
	what   string
	tls    bool
	scheme string
}{
	{"plaintext", false, ""},
	{"plaintext, :scheme https", false, "https"},
	{"TLS", true, ""},
}

// probeHosts adds to the layout's probe hosts a host for every virtual
// host domain of either translation (a name under a wildcard domain), so
// that a virtual host the challenge objects add or change is probed.
func probeHosts(probes []string, trs ...*istiogw.Translation) []string {
	set := map[string]bool{}
	for _, p := range probes {
		set[p] = true
	}
	for _, tr := range trs {
		for _, rc := range xdstest.ExtractRouteConfigurations(tr.Sim.Routes) {
			for _, vh := range rc.GetVirtualHosts() {
				for _, d := range vh.GetDomains() {
					switch {
					case d == "*":
						set["probe.invalid"] = true
					case strings.HasPrefix(d, "*."):
						set["probe"+d[1:]] = true
					case !strings.Contains(d, "/") && !strings.Contains(d, "*"):
						set[d] = true
					}
				}
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// listenerPorts are the ports of the gateway's listeners in either
// translation.
func listenerPorts(trs ...*istiogw.Translation) []int {
	set := map[int]bool{}
	for _, tr := range trs {
		for _, l := range tr.Sim.Listeners {
			if p := int(l.GetAddress().GetSocketAddress().GetPortValue()); p != 0 {
				set[p] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

func describe(p *solver.Plan) string {
	var parts []string
	for _, w := range p.Workloads {
		parts = append(parts, fmt.Sprintf("workload %d: bindings %v own HTTP %v own HTTPS %v", w.Index, w.Bindings, w.OwnHTTP, w.OwnHTTPS))
	}
	if p.Split {
		parts = append(parts, "split")
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// yaml prints the layout as the objects a user would apply.
func (l *layout) yaml() string {
	var b strings.Builder
	emit := func(kind, apiVersion string, obj any) {
		out, err := yaml.Marshal(obj)
		if err != nil {
			fmt.Fprintf(&b, "# %s: %v\n", kind, err)
			return
		}
		fmt.Fprintf(&b, "---\napiVersion: %s\nkind: %s\n%s", apiVersion, kind, out)
	}
	for _, w := range l.Workloads {
		for _, svc := range w.services() {
			emit("Service", "v1", struct {
				Metadata metav1.ObjectMeta  `json:"metadata"`
				Spec     corev1.ServiceSpec `json:"spec"`
			}{svc.ObjectMeta, svc.Spec})
		}
		fmt.Fprintf(&b, "# gateway pods in %s with labels %v and container ports %v\n", w.Namespace, w.Labels, w.Pod.Spec.Containers[0].Ports)
	}
	for _, g := range l.Gateways {
		emit("Gateway", istionet.SchemeGroupVersion.String(), struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
			Spec     any               `json:"spec"`
		}{g.ObjectMeta, &g.Spec})
	}
	for _, v := range l.VirtualServices {
		emit("VirtualService", istionet.SchemeGroupVersion.String(), struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
			Spec     any               `json:"spec"`
		}{v.ObjectMeta, &v.Spec})
	}
	secrets := slices.Collect(maps.Keys(l.Secrets))
	sort.Strings(secrets)
	fmt.Fprintf(&b, "# credential Secrets that exist: %v\n# challenged host: %s (workloads: %v, our Gateways in %s)\n", secrets, l.Host, l.Challenge.Spec.Solver.Gateways, l.Challenge.Spec.Solver.GatewayNamespace)
	fmt.Fprintf(&b, "# istiod: meshConfig.defaultVirtualServiceExportTo %v, PILOT_SCOPE_GATEWAY_TO_NAMESPACE %v\n", l.Mesh.DefaultVirtualServiceExportTo, l.Mesh.ScopeGatewayToNamespace)
	return b.String()
}
