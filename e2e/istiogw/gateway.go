// Package istiogw is an Istio ingress gateway for tests: an HTTP server on
// loopback that decides the route of every request with Istio's own
// config-to-Envoy translation and request simulation, fed the Gateways,
// VirtualServices and Services in the API server at that moment, and then
// forwards the request to the chosen destination as Envoy would.
package istiogw

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	istionet "istio.io/client-go/pkg/apis/networking/v1"
	"istio.io/istio/pilot/pkg/simulation"
	istiolog "istio.io/istio/pkg/log"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Gateway simulates one ingress gateway workload.
type Gateway struct {
	// Labels are the gateway pods' labels that Gateway selectors match.
	Labels map[string]string
	// Namespace is the gateway pods' namespace.
	Namespace string
	// Reader lists Gateways, VirtualServices and Services; normally an
	// informer cache, so that routing a request costs no API call.
	Reader client.Reader
	// APIReader reads them from the API server itself. When the cache's
	// view routes nowhere, the request is routed again from the API
	// server's view, so the gateway never answers from a stale config: it
	// stands for a gateway whose configuration is always up to date.
	APIReader client.Reader
	// Debounce, when set, lets a request that the current translation
	// routes somewhere use it for this long after it was built, instead of
	// translating the configuration again; istiod debounces its pushes to
	// gateways (100 ms by default) in the same way. Requests that would not
	// be routed are always routed again from the newest configuration.
	Debounce time.Duration
	// PodPort is the gateway pod's port behind the Service's port 80: Istio
	// binds the listener of a Gateway's port 80 server there (8080 in
	// Istio's default install). 80 when zero.
	PodPort int
	// TLSPodPort is the pod's port behind the Service's port 443 (8443 in
	// Istio's default install). 443 when zero.
	TLSPodPort int
	// Backends maps a destination "host:port" (as in a route's cluster) to
	// the loopback address that serves it.
	Backends map[string]string

	t           *testing.T
	mu          sync.Mutex
	snapshot    string
	builtAt     time.Time
	sim         *simulation.Simulation
	translation *Translation
	srv         *http.Server
	// Addr is where the gateway's port 80 listens.
	Addr string
	// TLSAddr is where its port 443 listens.
	TLSAddr string

	served map[servedKey]int // 2xx answers from a backend
	// failedHandshakes counts failed TLS handshakes by SNI.
	failedHandshakes map[string]int
	builtin          tls.Certificate // served for builtin:// credentials
	// answered counts every answer, whatever its status.
	answered map[servedKey]int
	// lag and history: see SetLag.
	lag     time.Duration
	history *configHistory
}

// Start listens on addr (the gateway's port 80) until the test ends.
func (g *Gateway) Start(t *testing.T, addr string) {
	t.Helper()
	g.t = t
	// Istio's packages log to stdout at info level; the gateway's decisions
	// are logged per request instead.
	for _, scope := range istiolog.Scopes() {
		scope.SetOutputLevel(istiolog.NoneLevel)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("istio gateway: %v", err)
	}
	g.Addr = ln.Addr().String()
	g.srv = &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := g.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Logf("istio gateway stopped: %v", err)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.srv.Shutdown(ctx) // best effort at test end
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.translation != nil {
			g.translation.Close()
		}
	})
}

// call is one request as the gateway sees it.
type call struct {
	host, path string
	tls        bool // arrived on the HTTPS port
}

// Route decides, as the gateway would, where GET http://host/path on port 80
// goes right now.
func (g *Gateway) Route(ctx context.Context, host, path string) (simulation.Result, error) {
	return g.route(ctx, call{host: host, path: path})
}

func (g *Gateway) route(ctx context.Context, c call) (simulation.Result, error) {
	arrived := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lag > 0 {
		// A lagging gateway has only its old configuration: no fallback
		// to the API server's view.
		return g.routeFrom(ctx, g.history.asOf(arrived.Add(-g.lag)), c)
	}
	// A translation made after the request arrived (by a request that held
	// the lock meanwhile) already holds every route the request may need;
	// with Debounce, like istiod, a recent one does too for the requests it
	// routes somewhere.
	if g.sim != nil && (g.builtAt.After(arrived) || time.Since(g.builtAt) < g.Debounce) {
		if res, err := g.run(g.sim, c); err == nil && res.ClusterMatched != "" {
			return res, nil
		}
	}
	res, err := g.routeFrom(ctx, g.Reader, c)
	if err == nil && res.ClusterMatched == "" && g.APIReader != nil {
		return g.routeFrom(ctx, g.APIReader, c)
	}
	return res, err
}

func (g *Gateway) routeFrom(ctx context.Context, r client.Reader, c call) (simulation.Result, error) {
	sim, err := g.simulation(ctx, r)
	if err != nil {
		return simulation.Result{}, err
	}
	return g.run(sim, c)
}

func (g *Gateway) run(sim *simulation.Simulation, c call) (res simulation.Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("istio simulation failed: %v", r)
		}
	}()
	in := simulation.Call{
		Port:       cmp.Or(g.PodPort, 80),
		Path:       c.path,
		Protocol:   simulation.HTTP,
		HostHeader: c.host,
		CallMode:   simulation.CallModeGateway,
	}
	if c.tls {
		in.Port, in.TLS, in.Sni = cmp.Or(g.TLSPodPort, 443), simulation.TLS, c.host
	}
	return sim.Run(in), nil
}

// ServeHTTP routes a request with the simulation and proxies it.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h // the test listener stands for port 80
	}
	res, err := g.route(r.Context(), call{host: host, path: r.URL.Path, tls: r.TLS != nil})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	status := g.respond(w, r, host, res)
	key := servedKey{agent: r.UserAgent(), host: host, path: r.URL.Path, tls: r.TLS != nil}
	g.mu.Lock()
	if g.served == nil {
		g.served, g.answered = map[servedKey]int{}, map[servedKey]int{}
	}
	if status/100 == 2 {
		g.served[key]++
	}
	g.answered[key]++
	g.mu.Unlock()
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	g.t.Logf("istio gateway: GET %s://%s%s -> route %q cluster %q error %v: %d", scheme, host, r.URL.Path, res.RouteMatched, res.ClusterMatched, res.Error, status)
}

func (g *Gateway) respond(w http.ResponseWriter, r *http.Request, host string, res simulation.Result) int {
	switch {
	case errors.Is(res.Error, simulation.ErrTLSRedirect):
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusMovedPermanently)
		return http.StatusMovedPermanently
	case res.Error != nil, res.ClusterMatched == "":
		// Envoy answers 404 when no virtual host or route matches.
		http.NotFound(w, r)
		return http.StatusNotFound
	}
	backend, ok := g.backend(res.ClusterMatched)
	if !ok {
		http.Error(w, "no healthy upstream", http.StatusServiceUnavailable)
		return http.StatusServiceUnavailable
	}
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(&url.URL{Scheme: "http", Host: backend})
		pr.Out.Host = r.Host // Envoy keeps the authority
	}}
	proxy.ServeHTTP(rec, r)
	return rec.status
}

// backend maps "outbound|8089||svc.ns.svc.cluster.local" to an address.
func (g *Gateway) backend(cluster string) (string, bool) {
	parts := strings.Split(cluster, "|")
	if len(parts) != 4 {
		return "", false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	addr, ok := g.Backends[parts[3]+":"+parts[1]]
	return addr, ok
}

// SetBackend makes destination "host:port" reach addr.
func (g *Gateway) SetBackend(destination, addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.Backends == nil {
		g.Backends = map[string]string{}
	}
	g.Backends[destination] = addr
}

// simulation returns a simulation of the current config, rebuilt when any
// Gateway, VirtualService or Service changed.
func (g *Gateway) simulation(ctx context.Context, r client.Reader) (*simulation.Simulation, error) {
	var gws istionet.GatewayList
	var vss istionet.VirtualServiceList
	var svcs corev1.ServiceList
	for _, l := range []client.ObjectList{&gws, &vss, &svcs} {
		if err := r.List(ctx, l); err != nil {
			return nil, fmt.Errorf("istio gateway: listing %T: %w", l, err)
		}
	}
	var keys []string
	for _, gw := range gws.Items {
		keys = append(keys, "gw/"+gw.Namespace+"/"+gw.Name+"/"+gw.ResourceVersion)
	}
	for _, vs := range vss.Items {
		keys = append(keys, "vs/"+vs.Namespace+"/"+vs.Name+"/"+vs.ResourceVersion)
	}
	services := make([]*corev1.Service, len(svcs.Items))
	for i := range svcs.Items {
		services[i] = &svcs.Items[i]
		keys = append(keys, "svc/"+svcs.Items[i].Namespace+"/"+svcs.Items[i].Name+"/"+svcs.Items[i].ResourceVersion)
	}
	slices.Sort(keys)
	snapshot := strings.Join(keys, ",")
	if g.sim != nil && snapshot == g.snapshot {
		return g.sim, nil
	}

	buildStart := time.Now()
	tr, err := Translate(g.t, g.Labels, g.Namespace, gws.Items, vss.Items, services)
	if err != nil {
		return nil, err
	}
	if g.translation != nil {
		g.translation.Close()
	}
	g.sim, g.snapshot, g.translation, g.builtAt = tr.Sim, snapshot, tr, time.Now()
	g.t.Logf("istio gateway: translated %d Gateways, %d VirtualServices and %d Services in %s", len(gws.Items), len(vss.Items), len(svcs.Items), time.Since(buildStart).Round(time.Millisecond))
	return tr.Sim, nil
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

type servedKey struct {
	agent, host, path string
	tls               bool
}

// Served counts the successful answers the gateway proxied for host, on
// paths with the given prefix, to clients whose User-Agent starts with
// agentPrefix, on either port.
func (g *Gateway) Served(agentPrefix, host, pathPrefix string) int {
	return g.servedWhere(agentPrefix, host, pathPrefix, func(bool) bool { return true })
}

// ServedTLS is Served for the HTTPS port only.
func (g *Gateway) ServedTLS(agentPrefix, host, pathPrefix string) int {
	return g.servedWhere(agentPrefix, host, pathPrefix, func(tls bool) bool { return tls })
}

// Answered counts every answer to host on paths with the prefix to clients
// whose User-Agent starts with agentPrefix, whatever its status.
func (g *Gateway) Answered(agentPrefix, host, pathPrefix string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return count(g.answered, agentPrefix, host, pathPrefix, func(bool) bool { return true })
}

func (g *Gateway) servedWhere(agentPrefix, host, pathPrefix string, port func(tls bool) bool) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return count(g.served, agentPrefix, host, pathPrefix, port)
}

func count(m map[servedKey]int, agentPrefix, host, pathPrefix string, port func(tls bool) bool) int {
	n := 0
	for k, c := range m {
		if strings.HasPrefix(k.agent, agentPrefix) && k.host == host && strings.HasPrefix(k.path, pathPrefix) && port(k.tls) {
			n += c
		}
	}
	return n
}

// Get fetches http://host/path through the gateway, as a client would.
func (g *Gateway) Get(host, path string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+g.Addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	cl := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := cl.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 4096))
	return res.StatusCode, string(body), err
}
