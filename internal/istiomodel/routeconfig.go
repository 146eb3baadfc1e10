package istiomodel

import (
	"strings"
)

// RouteConfig is one route configuration: the servers that share it and
// their virtual hosts by name.
type RouteConfig struct {
	name    string
	servers []Server
	vhosts  map[string]*VirtualHost
	// oddWildcard is set when a virtual host's wildcard name does not
	// start with "*.": SelectVirtualHost then looks up "*" plus every
	// suffix of the host, not only the suffixes that start at a dot.
	oddWildcard bool
}

// Servers are the servers that build the route configuration, in merge
// order; none for nil.
func (rc *RouteConfig) Servers() []Server {
	if rc == nil {
		return nil
	}
	return rc.servers
}

// VirtualHost is a virtual host with its routes in Envoy's order.
type VirtualHost struct {
	name       string
	requireTLS bool
	routes     []*Route
}

// Name is the virtual host's domain.
func (v *VirtualHost) Name() string { return v.name }

// RedirectsToHTTPS reports a virtual host that redirects every request to
// HTTPS before any route (a server's tls.httpsRedirect).
func (v *VirtualHost) RedirectsToHTTPS() bool { return v.requireTLS }

// Routes are the virtual host's routes in the order Envoy tries them.
func (v *VirtualHost) Routes() []*Route { return v.routes }

// buildRouteConfig builds the virtual hosts of the servers that share one
// route configuration, as istiod's buildGatewayHTTPRouteConfig does.
func buildRouteConfig(name string, servers []Server, idx *Index, podLabels map[string]string, podNamespace string) *RouteConfig {
	vhosts := map[string]*VirtualHost{}
	type vsKey struct{ gateway, vs string }
	built := map[vsKey][]*Route{}
	for _, s := range servers {
		gwName := GatewayKey(s.gateway)
		redirect := s.spec.GetTls().GetHttpsRedirect()
		for _, vs := range idx.forGateway(gwName) {
			serverHosts := HostsForNamespace(s.hosts, vs.Namespace)
			names := intersectHosts(serverHosts, resolvedVSHosts(vs))
			if len(names) == 0 {
				continue
			}
			// Routes are translated once per Gateway, for the port of the
			// first server that needs them; a VirtualService with no route
			// left adds no virtual host (and is tried again for the next
			// server).
			key := vsKey{gwName, vs.Namespace + "/" + vs.Name}
			routes, ok := built[key]
			if !ok {
				routes = translateRoutes(vs, gwName, s.spec.GetPort().GetNumber(), podLabels, podNamespace)
				if len(routes) == 0 {
					continue
				}
				built[key] = routes
			}
			for _, n := range names {
				n = strings.ToLower(n)
				vh := vhosts[n]
				if vh == nil {
					vh = &VirtualHost{name: n}
					vhosts[n] = vh
				}
				vh.routes = append(vh.routes, routes...)
				if redirect {
					vh.requireTLS = true
				}
			}
		}
		if redirect {
			for _, h := range s.hosts {
				h = strings.ToLower(h)
				if vh := vhosts[h]; vh != nil {
					vh.requireTLS = true
				} else {
					vhosts[h] = &VirtualHost{name: h, requireTLS: true}
				}
			}
		}
	}
	return newRouteConfig(name, servers, vhosts)
}

// newRouteConfig finishes a route configuration as Envoy receives it: in
// each virtual host the catch-all routes last, keeping their order, and
// the lookup told whether a wildcard name is not "*.suffix".
func newRouteConfig(name string, servers []Server, vhosts map[string]*VirtualHost) *RouteConfig {
	rc := &RouteConfig{name: name, servers: servers, vhosts: vhosts}
	for name, vh := range vhosts {
		rc.oddWildcard = rc.oddWildcard || isOddWildcard(name)
		var first, last []*Route
		for _, r := range vh.routes {
			if r.catchAll {
				last = append(last, r)
			} else {
				first = append(first, r)
			}
		}
		vh.routes = append(first, last...)
	}
	return rc
}
