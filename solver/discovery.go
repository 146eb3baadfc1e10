package solver

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// notOurs selects objects that this controller did not create.
func notOurs() (client.MatchingLabelsSelector, error) {
	req, err := labels.NewRequirement(LabelManagedBy, selection.NotEquals, []string{ManagedByValue})
	if err != nil {
		return client.MatchingLabelsSelector{}, err
	}
	return client.MatchingLabelsSelector{Selector: labels.NewSelector().Add(*req)}, nil
}

// Shadows returns the users' routes that would shadow the challenge path on
// the attach servers.
func (g *IngressGateways) Shadows(ctx context.Context, attach []ServingServer, path string) ([]Shadow, error) {
	if len(attach) == 0 {
		return nil, nil // our own Gateway: no user route binds to it
	}
	sel, err := notOurs()
	if err != nil {
		return nil, err
	}
	var list istionet.VirtualServiceList
	if err := g.Reader.List(ctx, &list, sel); err != nil {
		return nil, fmt.Errorf("listing VirtualServices: %w", err)
	}
	return ShadowingRoutes(list.Items, attach, path), nil
}

// UserGateways lists the Gateways this controller did not create.
func (g *IngressGateways) UserGateways(ctx context.Context) ([]*istionet.Gateway, error) {
	sel, err := notOurs()
	if err != nil {
		return nil, err
	}
	var list istionet.GatewayList
	if err := g.Reader.List(ctx, &list, sel); err != nil {
		return nil, fmt.Errorf("listing Gateways: %w", err)
	}
	return list.Items, nil
}

// ServingServer is a server of an existing Gateway that serves a challenged
// host on the gateway workload: the place a challenge route can attach to
// without creating a Gateway of its own.
type ServingServer struct {
	Gateway *istionet.Gateway
	Server  *istioapi.Server
	// Host is the host part of the server's matching host entry, as
	// written ("shop.example.com", "*.example.com" or "*"): a VirtualService
	// merges with the user's routes only under this exact string.
	Host string
}

// HTTPSRedirect reports whether the server redirects plain HTTP to HTTPS,
// before any route runs.
func (s ServingServer) HTTPSRedirect() bool {
	return s.Server.GetTls().GetHttpsRedirect()
}

// ServersForHost returns the servers of gateways that serve host to a
// VirtualService in vsNamespace where the CA's requests arrive on the
// workload: HTTP servers bound to the pod port behind the gateway Services'
// port 80, HTTPS servers to the one behind port 443 (Istio binds a server
// whose port number is a Service port to that Service's target port, any
// other number as is). It honours Istio's host syntax: "ns/host" (namespace
// "*", "." for the Gateway's own, or a name), exact hosts, "*.suffix"
// wildcards and "*".
func ServersForHost(gateways []*istionet.Gateway, w *GatewayWorkload, host, vsNamespace string) []ServingServer {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	var out []ServingServer
	for _, gw := range gateways {
		if !selectsAny(gw.Spec.Selector, w.PodLabels) {
			continue
		}
		for _, srv := range gw.Spec.Servers {
			var reached []uint32
			switch strings.ToUpper(srv.GetPort().GetProtocol()) {
			case "HTTP", "HTTP2":
				reached = w.HTTPPorts
			case "HTTPS":
				reached = w.HTTPSPorts
			default:
				continue
			}
			if !slices.ContainsFunc(w.ListenPorts(srv.GetPort().GetNumber()), func(p uint32) bool { return slices.Contains(reached, p) }) {
				continue // a port the CA's requests do not arrive on
			}
			for _, entry := range srv.Hosts {
				ns, h := splitHostEntry(entry)
				if !namespaceAllows(ns, gw.Namespace, vsNamespace) || !hostCovers(strings.ToLower(h), host) {
					continue
				}
				out = append(out, ServingServer{Gateway: gw, Server: srv, Host: h})
				break
			}
		}
	}
	return out
}

// selectsAny reports whether a Gateway selector matches one of the pods; an
// empty selector matches every gateway workload.
func selectsAny(selector map[string]string, podLabels []map[string]string) bool {
	if len(selector) == 0 {
		return true
	}
	sel := labels.SelectorFromSet(selector)
	for _, l := range podLabels {
		if sel.Matches(labels.Set(l)) {
			return true
		}
	}
	return false
}

// splitHostEntry splits "ns/host" into its parts; a bare host is "*/host".
func splitHostEntry(entry string) (namespace, host string) {
	if ns, h, ok := strings.Cut(entry, "/"); ok {
		return ns, h
	}
	return "*", entry
}

func namespaceAllows(ns, gatewayNamespace, vsNamespace string) bool {
	switch ns {
	case "*":
		return true
	case ".":
		return vsNamespace == gatewayNamespace
	default:
		return vsNamespace == ns
	}
}

// hostCovers reports whether a server host ("*", "*.example.com" or an
// exact name) serves the exact host name, as Istio matches them: a wildcard
// covers every name that ends with its suffix.
func hostCovers(serverHost, host string) bool {
	if rest, ok := strings.CutPrefix(serverHost, "*"); ok {
		return strings.HasSuffix(host, rest) && len(host) > len(rest)
	}
	return serverHost == host
}

// RedirectWithoutHTTPS explains why the CA could not reach the token when a
// server redirects the host to HTTPS (which Istio does before any route) and
// no server serves the host over HTTPS; it is empty otherwise.
func RedirectWithoutHTTPS(servers []ServingServer, host string) string {
	var redirecting *ServingServer
	for i, s := range servers {
		if strings.EqualFold(s.Server.GetPort().GetProtocol(), "HTTPS") {
			return ""
		}
		if s.HTTPSRedirect() && redirecting == nil {
			redirecting = &servers[i]
		}
	}
	if redirecting == nil {
		return ""
	}
	return fmt.Sprintf("Gateway %s/%s redirects http://%s to HTTPS (tls.httpsRedirect on its port %d server) before any route runs, and no Gateway on the ingress gateway serves https://%s, so the CA would follow the redirect and fail; add an HTTPS server for %s (any certificate: the CA does not verify it) or turn httpsRedirect off",
		redirecting.Gateway.Namespace, redirecting.Gateway.Name, host, redirecting.Server.GetPort().GetNumber(), host, host)
}

// Shadow is a user's route that Istio tries before the challenge route and
// that matches the challenge path, so the CA would never reach the token.
type Shadow struct {
	VirtualService *istionet.VirtualService
	Route          string // the route's name, or its position
	Match          string // what matches, for the message
}

func (s Shadow) String() string {
	return fmt.Sprintf("route %s of VirtualService %s/%s (%s)", s.Route, s.VirtualService.Namespace, s.VirtualService.Name, s.Match)
}

// ShadowingRoutes returns the routes of users' VirtualServices that merge
// with the challenge route (bound to a Gateway it attaches to, under the
// same host string) and match path before it. Istio puts the routes of older
// VirtualServices first (every existing one is older than the challenge
// route, which is created after this check) and moves pure catch-alls
// (prefix "/", regex ".*", no match) last, behind the challenge's exact
// path; anything else that matches the path wins.
func ShadowingRoutes(vss []*istionet.VirtualService, attach []ServingServer, path string) []Shadow {
	var out []Shadow
	for _, vs := range vss {
		if !mergesWith(vs, attach) {
			continue
		}
		for i, route := range vs.Spec.Http {
			name := route.Name
			if name == "" {
				name = fmt.Sprintf("#%d", i+1)
			}
			if m, ok := shadows(route, path); ok {
				out = append(out, Shadow{VirtualService: vs, Route: name, Match: m})
			}
		}
	}
	return out
}

// mergesWith reports whether vs is bound to one of the attach Gateways
// under the host string used there.
func mergesWith(vs *istionet.VirtualService, attach []ServingServer) bool {
	for _, s := range attach {
		bound := false
		for _, ref := range vs.Spec.Gateways {
			ns, name, ok := strings.Cut(ref, "/")
			if !ok {
				ns, name = vs.Namespace, ref
			}
			if ns == s.Gateway.Namespace && name == s.Gateway.Name {
				bound = true
			}
		}
		if bound && slices.Contains(vs.Spec.Hosts, s.Host) {
			return true
		}
	}
	return false
}

// shadows reports whether a route matches path without being a pure
// catch-all, and how.
func shadows(route *istioapi.HTTPRoute, path string) (string, bool) {
	if len(route.Match) == 0 {
		return "", false // no match: a catch-all, moved last
	}
	for _, m := range route.Match {
		uri := m.GetUri()
		p := path
		if m.GetIgnoreUriCase() {
			p = strings.ToLower(p)
		}
		switch {
		case uri == nil:
			if len(m.GetHeaders()) == 0 && m.GetAuthority() == nil && m.GetMethod() == nil && len(m.GetQueryParams()) == 0 && m.GetScheme() == nil && m.GetPort() == 0 {
				return "", false // an empty match: a catch-all
			}
			return "a match without a path condition", true
		case uri.GetExact() != "":
			if uri.GetExact() == p {
				return "exact " + uri.GetExact(), true
			}
		case uri.GetPrefix() != "":
			if uri.GetPrefix() != "/" && strings.HasPrefix(p, uri.GetPrefix()) {
				return "prefix " + uri.GetPrefix(), true
			}
		case uri.GetRegex() != "":
			if uri.GetRegex() == ".*" {
				continue
			}
			if re, err := regexp.Compile("^(?:" + uri.GetRegex() + ")$"); err == nil && re.MatchString(p) {
				return "regex " + uri.GetRegex(), true
			}
		}
	}
	return "", false
}
