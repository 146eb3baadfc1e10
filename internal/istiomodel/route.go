package istiomodel

import (
	"strconv"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
)

// Route is one translated route: one match of one HTTP route of a
// VirtualService (after delegate expansion).
type Route struct {
	vs       *istionet.VirtualService
	http     *istioapi.HTTPRoute
	index    int // of the HTTP route in the (merged) VirtualService
	match    *istioapi.HTTPMatchRequest
	catchAll bool
	// key identifies the route across models built from the same objects
	// (routeKey); models are compared many times.
	key string
}

// VirtualService is the VirtualService the route comes from (its root,
// for a delegate's route).
func (r *Route) VirtualService() *istionet.VirtualService { return r.vs }

// Match is the route's match condition; nil matches every request.
func (r *Route) Match() *istioapi.HTTPMatchRequest { return r.match }

// Name describes the route for messages: its name, else its position.
func (r *Route) Name() string {
	if r.http.Name != "" {
		return r.http.Name
	}
	return "#" + strconv.Itoa(r.index+1)
}

// routeKey identifies match m (-1: none) of HTTP route i of a
// VirtualService across models built from the same objects.
func routeKey(vs *istionet.VirtualService, i, m int) string {
	return vs.Namespace + "/" + vs.Name + "#" + strconv.Itoa(i) + "." + strconv.Itoa(m)
}

// translateRoutes turns a VirtualService's HTTP routes into routes for a
// server of gateway on port, as istiod's BuildHTTPRoutesForVirtualService.
func translateRoutes(vs *istionet.VirtualService, gateway string, port uint32, podLabels map[string]string, podNamespace string) []*Route {
	var out []*Route
	for i, h := range vs.Spec.Http {
		if len(h.Match) == 0 {
			out = append(out, &Route{vs: vs, http: h, index: i, catchAll: true, key: routeKey(vs, i, -1)})
			break
		}
		stop := false
		for j, m := range h.Match {
			if m.GetPort() != 0 && m.GetPort() != port {
				continue
			}
			if !sourceMatches(m, gateway, vs.Namespace, podLabels, podNamespace) {
				continue
			}
			r := &Route{vs: vs, http: h, index: i, match: m, catchAll: isCatchAllMatch(m), key: routeKey(vs, i, j)}
			out = append(out, r)
			if r.catchAll {
				stop = true
				break
			}
		}
		if stop {
			break
		}
	}
	return out
}

// sourceMatches mirrors istiod's sourceMatchHTTP for a gateway proxy.
func sourceMatches(m *istioapi.HTTPMatchRequest, gateway, vsNamespace string, podLabels map[string]string, podNamespace string) bool {
	if len(m.GetGateways()) > 0 {
		for _, g := range m.GetGateways() {
			if g != "mesh" && resolveGatewayRef(g, vsNamespace) == gateway {
				return true
			}
		}
		return false
	}
	if !hasLabels(podLabels, m.GetSourceLabels()) {
		return false
	}
	return m.GetSourceNamespace() == "" || m.GetSourceNamespace() == podNamespace
}

// isCatchAllMatch mirrors istiod's IsCatchAllRoute on the translated match:
// a path of any value ("/" prefix or ".*" regex, or no path condition) and
// no header (method, authority and scheme are headers) or query condition.
func isCatchAllMatch(m *istioapi.HTTPMatchRequest) bool {
	if m == nil {
		return true
	}
	if len(m.GetHeaders()) > 0 || len(m.GetWithoutHeaders()) > 0 || len(m.GetQueryParams()) > 0 ||
		m.GetMethod() != nil || m.GetAuthority() != nil || m.GetScheme() != nil {
		return false
	}
	uri := m.GetUri()
	switch {
	case uri == nil || uri.GetMatchType() == nil:
		return true
	case uri.GetPrefix() != "":
		return uri.GetPrefix() == "/"
	case uri.GetRegex() != "":
		return uri.GetRegex() == ".*"
	}
	return false
}
