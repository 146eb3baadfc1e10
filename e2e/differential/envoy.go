package differential

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/istio-acme/istio-acme-issuer/e2e/istiogw"
	"google.golang.org/protobuf/proto"
	"istio.io/istio/pilot/pkg/simulation"
	"istio.io/istio/pilot/test/xdstest"
)

// request is an HTTP request as the gateway sees it.
type request struct {
	host, path string
	tls        bool
	// scheme, when set, is the request's :scheme whatever the connection:
	// a plaintext HTTP/2 request, or an HTTP/1.1 one in absolute form
	// (GET https://host/path), may say https on port 80.
	scheme string
	// headers besides the pseudo-headers, lower case.
	headers map[string]string
	// ca: a client that presents no client certificate (the CA).
	ca bool
}

// decision is where the gateway sends a request: a cluster, a redirect, or
// why it answers an error.
type decision struct {
	kind   string // "cluster", "redirect", "tls-redirect", "direct", "tls-fail", "no-route", "no-vhost", "no-listener", "ambiguous" (what each of several chains matching alike would do), ...
	target string
	// credential is the Secret name the answering HTTPS server serves.
	credential string
}

func (d decision) String() string {
	if d.target == "" {
		return d.kind
	}
	return d.kind + " " + d.target
}

// secretExists tells whether a credential resource name (kubernetes://...)
// of a server on a workload in namespace has its Secret.
type secretExists func(resource, namespace string) bool

// decide runs the request through the translation: Istio's simulation picks
// the listener, filter chain, route configuration and virtual host (it
// matches paths only); the virtual host's routes are then matched here in
// full (path, headers including :authority, query), as Envoy does.
func decide(t *testing.T, sim *simulation.Simulation, port int, req request, secrets secretExists, namespace string) decision {
	call := simulation.Call{Port: port, Path: req.path, Protocol: simulation.HTTP, HostHeader: req.host, CallMode: simulation.CallModeGateway}
	if req.tls {
		call.TLS, call.Sni = simulation.TLS, req.host
	}
	res := sim.Run(call)
	if errors.Is(res.Error, simulation.ErrMultipleFilterChain) {
		return decideAmbiguous(t, sim, port, req, res.ListenerMatched, secrets, namespace)
	}
	if errors.Is(res.Error, simulation.ErrTLSRedirect) {
		return decision{kind: "tls-redirect"}
	}
	// A server that passes TLS through sends the connection to its
	// backend without a handshake of its own.
	if req.tls && res.Error == nil && res.RouteConfigMatched == "" && res.ClusterMatched != "" {
		return decision{kind: "passthrough", target: res.ClusterMatched}
	}
	// The TLS handshake comes before any routing: a server whose
	// certificate Secret is missing answers nothing.
	var cred string
	if req.tls && res.RouteConfigMatched != "" {
		c, mutual, err := istiogw.ChainCredential(t, sim, res)
		if err != nil {
			return decision{kind: "error", target: err.Error()}
		}
		cred = c
		if !secrets(c, namespace) || (mutual && req.ca) {
			return decision{kind: "tls-fail", credential: c}
		}
	}
	if res.VirtualHostMatched == "" && res.Error != nil {
		return decision{kind: "error", target: res.Error.Error()}
	}
	rc := xdstest.ExtractRouteConfigurations(sim.Routes)[res.RouteConfigMatched]
	var vh *route.VirtualHost
	for _, v := range rc.GetVirtualHosts() {
		if v.GetName() == res.VirtualHostMatched {
			vh = v
		}
	}
	if vh == nil {
		return decision{kind: "no-vhost", credential: cred}
	}
	for _, r := range vh.GetRoutes() {
		if !routeMatches(r.GetMatch(), req) {
			continue
		}
		switch a := r.GetAction().(type) {
		case *route.Route_Route:
			return decision{kind: "cluster", target: a.Route.GetCluster(), credential: cred}
		case *route.Route_Redirect:
			return decision{kind: "redirect", target: a.Redirect.String(), credential: cred}
		case *route.Route_DirectResponse:
			return decision{kind: "direct", target: fmt.Sprint(a.DirectResponse.GetStatus()), credential: cred}
		}
		return decision{kind: "other-action", credential: cred}
	}
	return decision{kind: "no-route", credential: cred}
}

// outcome is what a client sees of a decision: where it is served, or
// that it is not (no listener, virtual host or route all fail the request
// alike).
func outcome(d decision) decision {
	switch d.kind {
	case "error", "no-route", "no-vhost":
		return decision{kind: "not-served"}
	}
	return d
}

// decideAmbiguous decides a request that several filter chains of a
// listener match alike (two servers on a port taking the same names). Envoy
// rejects such a listener and keeps serving the one it accepted before,
// which may have had any of those chains alone: the request may go where
// any of them sends it. The decision lists what each would do, so that a
// change behind any of them shows.
func decideAmbiguous(t *testing.T, sim *simulation.Simulation, port int, req request, listenerName string, secrets secretExists, namespace string) decision {
	li := -1
	for i, l := range sim.Listeners {
		if l.GetName() == listenerName {
			li = i
		}
	}
	if li < 0 {
		return decision{kind: "error", target: simulation.ErrMultipleFilterChain.Error()}
	}
	l := sim.Listeners[li]
	chains := l.GetFilterChains()
	outcomes := map[string]bool{}
	for i, c := range chains {
		// Keep c and drop every other chain that matches exactly as c does.
		var kept []*listener.FilterChain
		for j, o := range chains {
			if j == i || !proto.Equal(o.GetFilterChainMatch(), c.GetFilterChainMatch()) {
				kept = append(kept, o)
			}
		}
		if len(kept) == len(chains) {
			continue // c ties with no other chain
		}
		one := proto.Clone(l).(*listener.Listener)
		one.FilterChains = kept
		listeners := slices.Clone(sim.Listeners)
		listeners[li] = one
		cp := *sim
		cp.Listeners = listeners
		d := decide(t, &cp, port, req, secrets, namespace)
		if d.kind == "ambiguous" {
			continue // a tie among other chains: the request meets that one instead
		}
		outcomes[outcome(d).String()] = true
	}
	if len(outcomes) == 0 {
		return decision{kind: "error", target: simulation.ErrMultipleFilterChain.Error()}
	}
	return decision{kind: "ambiguous", target: strings.Join(slices.Sorted(maps.Keys(outcomes)), " | ")}
}

// routeMatches evaluates an Envoy route match on the request.
func routeMatches(m *route.RouteMatch, req request) bool {
	caseSensitive := m.GetCaseSensitive() == nil || m.GetCaseSensitive().GetValue()
	// Envoy matches a prefix against the whole :path, and an exact path or
	// a regex against it without the query string.
	path, query, _ := strings.Cut(req.path, "?")
	switch p := m.GetPathSpecifier().(type) {
	case *route.RouteMatch_Prefix:
		if !hasPrefix(req.path, p.Prefix, caseSensitive) {
			return false
		}
	case *route.RouteMatch_Path:
		if !(path == p.Path || (!caseSensitive && strings.EqualFold(path, p.Path))) {
			return false
		}
	case *route.RouteMatch_SafeRegex:
		if !fullMatch(p.SafeRegex.GetRegex(), path, false) {
			return false
		}
	case *route.RouteMatch_PathSeparatedPrefix:
		pre := p.PathSeparatedPrefix
		if !(hasPrefix(path, pre, caseSensitive) && (len(path) == len(pre) || path[len(pre)] == '/' || path[len(pre)] == '?')) {
			return false
		}
	default:
		return false
	}
	for _, h := range m.GetHeaders() {
		if !headerMatches(h, req) {
			return false
		}
	}
	params, err := url.ParseQuery(query)
	if err != nil {
		return false
	}
	for _, q := range m.GetQueryParameters() {
		values, present := params[q.GetName()]
		switch {
		case q.GetPresentMatch():
			if !present {
				return false
			}
		case !present || !stringMatcher(q.GetStringMatch(), values[0]):
			return false
		}
	}
	return true
}

func headerMatches(h *route.HeaderMatcher, req request) bool {
	value, present := headerValue(h.GetName(), req)
	if !present && h.GetTreatMissingHeaderAsEmpty() {
		value, present = "", true
	}
	var ok bool
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *route.HeaderMatcher_PresentMatch:
		ok = present == s.PresentMatch
		if h.GetInvertMatch() {
			return !ok
		}
		return ok
	case *route.HeaderMatcher_StringMatch:
		ok = present && stringMatcher(s.StringMatch, value)
	// Envoy still honours the deprecated matchers below, so a route that
	// carries one is read as Envoy reads it.
	case *route.HeaderMatcher_ExactMatch:
		//lint:ignore SA1019 read as Envoy reads it
		ok = present && value == s.ExactMatch
	case *route.HeaderMatcher_PrefixMatch:
		//lint:ignore SA1019 read as Envoy reads it
		ok = present && strings.HasPrefix(value, s.PrefixMatch)
	case *route.HeaderMatcher_SafeRegexMatch:
		//lint:ignore SA1019 read as Envoy reads it
		ok = present && fullMatch(s.SafeRegexMatch.GetRegex(), value, false)
	default:
		ok = present
	}
	if h.GetInvertMatch() {
		return !ok
	}
	return ok
}

// schemeName is the request's :scheme.
func (req request) schemeName() string {
	v, _ := headerValue(":scheme", req)
	return v
}

func headerValue(name string, req request) (string, bool) {
	switch strings.ToLower(name) {
	case ":authority", "host":
		return req.host, true
	case ":method":
		return "GET", true
	case ":scheme":
		switch {
		case req.scheme != "":
			return req.scheme, true
		case req.tls:
			return "https", true
		}
		return "http", true
	case ":path":
		return req.path, true
	}
	v, ok := req.headers[strings.ToLower(name)]
	return v, ok
}

func stringMatcher(m *matcher.StringMatcher, v string) bool {
	ic := m.GetIgnoreCase()
	switch p := m.GetMatchPattern().(type) {
	case *matcher.StringMatcher_Exact:
		return v == p.Exact || (ic && strings.EqualFold(v, p.Exact))
	case *matcher.StringMatcher_Prefix:
		return hasPrefix(v, p.Prefix, !ic)
	case *matcher.StringMatcher_Suffix:
		return strings.HasSuffix(v, p.Suffix) || (ic && strings.HasSuffix(strings.ToLower(v), strings.ToLower(p.Suffix)))
	case *matcher.StringMatcher_Contains:
		return strings.Contains(v, p.Contains) || (ic && strings.Contains(strings.ToLower(v), strings.ToLower(p.Contains)))
	case *matcher.StringMatcher_SafeRegex:
		return fullMatch(p.SafeRegex.GetRegex(), v, ic)
	}
	return false
}

func hasPrefix(v, prefix string, caseSensitive bool) bool {
	if caseSensitive {
		return strings.HasPrefix(v, prefix)
	}
	return strings.HasPrefix(strings.ToLower(v), strings.ToLower(prefix))
}

func fullMatch(expr, v string, ignoreCase bool) bool {
	e := "^(?:" + expr + ")$"
	if ignoreCase {
		e = "(?i)" + e
	}
	re, err := regexp.Compile(e)
	return err == nil && re.MatchString(v)
}
