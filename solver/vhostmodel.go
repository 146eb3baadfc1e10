package solver

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
)

// This file models what istiod (checked against Istio 1.31's own
// translation, pilot/pkg/networking/core/gateway.go and pilot/pkg/model) builds
// for one ingress gateway workload from Gateways and VirtualServices: the
// listeners the CA's requests reach, and on them the virtual hosts and the
// order of their routes. It is pure: objects in, model out. The rules it
// follows:
//
//   - Gateways apply to the workload when their selector is a subset of a pod's
//     labels (an empty selector applies everywhere); they are merged in order
//     of creation time, then name, then namespace.
//   - A server binds to the pod port behind a gateway Service port of the same
//     number, or to its own number (ListenPorts). All plain HTTP servers on
//     one pod port share one route configuration; a server whose protocol
//     cannot merge with the first server on its port is dropped, and so is a
//     server with TLS settings (HTTPS, or HTTP with httpsRedirect) whose host
//     strings repeat one already bound on that port. Each HTTPS server has a
//     route configuration of its own.
//   - Server hosts: "./h" is the Gateway's namespace, "*/h" is "h", "ns/h"
//     admits only VirtualServices from ns.
//   - VirtualServices: a VirtualService without hosts is a delegate and is
//     never bound itself; short host names become name.ns.svc.cluster.local;
//     gateway references are "ns/name", "name" (own namespace) or the legacy
//     "name.ns.svc.cluster.local"; exportTo decides which gateway pods see it
//     (listed in this order: exported only to its own namespace, exported to
//     the pods' namespace, exported everywhere; each by creation time).
//   - For each server in merge order and each VirtualService bound to its
//     Gateway, every host in the intersection of server hosts and
//     VirtualService hosts (the narrower of each pair) names a virtual host;
//     the VirtualService's routes are appended to it. Routes are translated
//     per match; a match that names other gateways, another port, other source
//     labels or namespace is dropped; a VirtualService stops at its first
//     catch-all route and is skipped entirely when no route is left. Delegates
//     are expanded into their root as istiod merges them.
//   - A server with httpsRedirect marks every virtual host reached through it,
//     and the virtual host of each of its own host strings, as TLS-only.
//   - In each virtual host, catch-all routes (prefix "/" or regex ".*" without
//     header or query conditions) are moved last, keeping their order.
//   - Envoy picks the virtual host by the request's host: an exact domain,
//     then the longest "*.suffix", then "*". An HTTPS listener picks the
//     server by SNI: exact host, then the longest wildcard, then a server
//     for "*".
//   - A TLS server that does not end in HTTP routes exists only through
//     VirtualService routes: a PASSTHROUGH server has a filter chain for the
//     sniHosts of each matching tls route, a TLS-protocol server that
//     terminates TLS one for its hosts when a tcp route matches, and without
//     such routes nothing; its server names then fall to the other servers.

// istioDomain is the cluster's DNS domain Istio completes short names with.
const istioDomain = "cluster.local"

// proxyModel is the translation of one gateway workload.
type proxyModel struct {
	// http is the shared route configuration of plain HTTP servers, by pod
	// port.
	http map[uint32]*routeConfig
	// tls lists the TLS filter chains (HTTPS and other TLS servers) of each
	// pod port, in merge order.
	tls map[uint32][]*tlsChain
}

// routeConfig is one route configuration: its virtual hosts by name.
type routeConfig struct {
	name    string
	servers []boundServer
	vhosts  map[string]*vhost
	// oddWildcard is set when a virtual host's wildcard name does not
	// start with "*.": selectVhost then looks up "*" plus every suffix of
	// the host, not only the suffixes that start at a dot.
	oddWildcard bool
}

// vhost is a virtual host with its routes in Envoy's order.
type vhost struct {
	name       string
	requireTLS bool
	routes     []*modelRoute
}

// modelRoute is one translated route: one match of one HTTP route of a
// VirtualService (after delegate expansion).
type modelRoute struct {
	vs       *istionet.VirtualService
	http     *istioapi.HTTPRoute
	index    int // of the HTTP route in the (merged) VirtualService
	match    *istioapi.HTTPMatchRequest
	catchAll bool
	// key identifies the route across models built from the same objects
	// (routeKey); models are compared many times.
	key string
}

// routeKey identifies match m (-1: none) of HTTP route i of a
// VirtualService across models built from the same objects.
func routeKey(vs *istionet.VirtualService, i, m int) string {
	return vs.Namespace + "/" + vs.Name + "#" + strconv.Itoa(i) + "." + strconv.Itoa(m)
}

// name describes the route for messages.
func (r *modelRoute) name() string {
	if r.http.Name != "" {
		return r.http.Name
	}
	return "#" + strconv.Itoa(r.index+1)
}

// tlsChain is one TLS server on a pod port.
type tlsChain struct {
	gateway *istionet.Gateway
	server  *istioapi.Server
	// sni are the server names it answers; empty for a server of "*".
	sni []string
	// terminates is true for HTTPS servers that terminate TLS; they have a
	// route configuration.
	terminates bool
	routes     *routeConfig
}

// boundServer is a server of an applied Gateway, with its hosts sanitized
// as istiod does.
type boundServer struct {
	gateway *istionet.Gateway
	server  *istioapi.Server
	hosts   []string
}

// modelInput is what the model reads.
type modelInput struct {
	gateways []*istionet.Gateway
	// virtualServices are indexed for the workload's namespace.
	virtualServices *virtualServiceIndex
	workload        *GatewayWorkload
}

// buildProxyModel translates the objects for the workload.
func buildProxyModel(in modelInput) *proxyModel {
	w := in.workload
	podLabels := w.proxyLabels()
	gws := slices.Clone(in.gateways)
	slices.SortStableFunc(gws, func(a, b *istionet.Gateway) int {
		return compareCreation(a.CreationTimestamp.Time, b.CreationTimestamp.Time, a.Name, b.Name, a.Namespace, b.Namespace)
	})

	type portState struct {
		plainProtocol string // protocol of the plain-text servers on the port
		seen          bool
	}
	ports := map[uint32]*portState{}
	tlsHosts := map[uint32]map[string]bool{}
	httpServers := map[uint32][]boundServer{}
	tlsChains := map[uint32][]*tlsChain{}
	httpsRouteNames := map[string]bool{}

	for _, gw := range gws {
		if !selectsAny(gw.Spec.Selector, w.PodLabels) {
			continue
		}
		for _, srv := range gw.Spec.Servers {
			if srv.GetPort() == nil || srv.GetBind() != "" {
				// Servers bound to an address get listeners of their own,
				// which the CA's requests to the Service do not reach.
				continue
			}
			bs := boundServer{gateway: gw, server: srv, hosts: sanitizeServerHosts(srv.Hosts, gw.Namespace)}
			proto := strings.ToUpper(srv.GetPort().GetProtocol())
			isHTTP := isHTTPProtocol(proto)
			isTLS := srv.GetTls() != nil && !isHTTP
			for _, port := range w.ListenPorts(srv.GetPort().GetNumber()) {
				if srv.GetTls() != nil {
					if tlsHosts[port] == nil {
						tlsHosts[port] = map[string]bool{}
					}
					if slices.ContainsFunc(bs.hosts, func(h string) bool { return tlsHosts[port][h] }) {
						continue // istiod skips a server whose hosts repeat on the port
					}
					for _, h := range bs.hosts {
						tlsHosts[port][h] = true
					}
				}
				st := ports[port]
				if st == nil {
					st = &portState{}
					ports[port] = st
				}
				switch {
				case !st.seen:
					st.seen = true
					if !isTLS {
						st.plainProtocol = proto
					}
				case st.plainProtocol != "":
					if !isHTTPProtocol(st.plainProtocol) || !isHTTP {
						continue // cannot merge with the plain-text servers there
					}
				default:
					if !isTLS {
						st.plainProtocol = proto
						httpServers[port] = nil // the first plain server starts the route configuration
					}
				}
				switch {
				case isHTTP:
					httpServers[port] = append(httpServers[port], bs)
				case isTLS:
					terminates := proto == "HTTPS" && !isPassthrough(srv)
					if terminates {
						rn := httpsRouteName(gw, srv)
						if httpsRouteNames[rn] {
							continue // a second HTTPS server with the same port name
						}
						httpsRouteNames[rn] = true
					}
					tlsChains[port] = append(tlsChains[port], &tlsChain{gateway: gw, server: srv, sni: sniHosts(srv.Hosts), terminates: terminates})
				}
			}
		}
	}

	vsIndex := in.virtualServices
	out := &proxyModel{http: map[uint32]*routeConfig{}, tls: map[uint32][]*tlsChain{}}
	for port, servers := range httpServers {
		out.http[port] = buildRouteConfig("http."+strconv.FormatUint(uint64(port), 10), servers, vsIndex, podLabels, w.Namespace)
	}
	for port, chains := range tlsChains {
		var kept []*tlsChain
		for _, c := range chains {
			bs := boundServer{gateway: c.gateway, server: c.server, hosts: sanitizeServerHosts(c.server.Hosts, c.gateway.Namespace)}
			if c.terminates {
				c.routes = buildRouteConfig(httpsRouteName(c.gateway, c.server), []boundServer{bs}, vsIndex, podLabels, w.Namespace)
				kept = append(kept, c)
				continue
			}
			// A TLS server that does not end in HTTP routes has filter
			// chains only for the VirtualServices' tls or tcp routes that
			// match it; with none, istiod builds nothing for it and its
			// server names fall to the other servers of the port.
			if sni, ok := l4ServerNames(bs, vsIndex); ok {
				c.sni = sni
				kept = append(kept, c)
			}
		}
		if len(kept) > 0 {
			out.tls[port] = kept
		}
	}
	return out
}

// buildRouteConfig builds the virtual hosts of the servers that share one
// route configuration, as istiod's buildGatewayHTTPRouteConfig does.
func buildRouteConfig(name string, servers []boundServer, idx *virtualServiceIndex, podLabels map[string]string, podNamespace string) *routeConfig {
	rc := &routeConfig{name: name, vhosts: map[string]*vhost{}}
	type vsKey struct{ gateway, vs string }
	built := map[vsKey][]*modelRoute{}
	rc.servers = servers
	for _, s := range servers {
		gwName := gatewayKey(s.gateway)
		redirect := s.server.GetTls().GetHttpsRedirect()
		for _, vs := range idx.forGateway(gwName) {
			serverHosts := hostsForNamespace(s.hosts, vs.Namespace)
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
				routes = translateRoutes(vs, gwName, s.server.GetPort().GetNumber(), podLabels, podNamespace)
				if len(routes) == 0 {
					continue
				}
				built[key] = routes
			}
			for _, n := range names {
				n = strings.ToLower(n)
				vh := rc.vhosts[n]
				if vh == nil {
					vh = &vhost{name: n}
					rc.vhosts[n] = vh
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
				if vh := rc.vhosts[h]; vh != nil {
					vh.requireTLS = true
				} else {
					rc.vhosts[h] = &vhost{name: h, requireTLS: true}
				}
			}
		}
	}
	for name, vh := range rc.vhosts {
		rc.oddWildcard = rc.oddWildcard || isOddWildcard(name)
		var first, last []*modelRoute
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

// translateRoutes turns a VirtualService's HTTP routes into routes for a
// server of gateway on port, as istiod's BuildHTTPRoutesForVirtualService.
func translateRoutes(vs *istionet.VirtualService, gateway string, port uint32, podLabels map[string]string, podNamespace string) []*modelRoute {
	var out []*modelRoute
	for i, h := range vs.Spec.Http {
		if len(h.Match) == 0 {
			out = append(out, &modelRoute{vs: vs, http: h, index: i, catchAll: true, key: routeKey(vs, i, -1)})
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
			r := &modelRoute{vs: vs, http: h, index: i, match: m, catchAll: isCatchAllMatch(m), key: routeKey(vs, i, j)}
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

// virtualServiceIndex lists the VirtualServices bound to each Gateway that
// the workload's pods see, in istiod's order, with delegates merged.
type virtualServiceIndex struct {
	byGateway map[string][]*istionet.VirtualService
	// parts are byGateway's lists before they are joined: the pods' own
	// namespace's private ones, those exported to it, the public ones.
	parts        map[string]*[3][]*istionet.VirtualService
	delegates    map[string]*istionet.VirtualService
	podNamespace string
}

const (
	vsPrivate = iota
	vsExported
	vsPublic
)

func newVirtualServiceIndex(vss []*istionet.VirtualService, podNamespace string) *virtualServiceIndex {
	sorted := slices.Clone(vss)
	slices.SortStableFunc(sorted, compareVirtualServices)
	idx := &virtualServiceIndex{
		byGateway:    map[string][]*istionet.VirtualService{},
		parts:        map[string]*[3][]*istionet.VirtualService{},
		delegates:    map[string]*istionet.VirtualService{},
		podNamespace: podNamespace,
	}
	for _, vs := range sorted {
		if len(vs.Spec.Hosts) == 0 {
			idx.delegates[vs.Namespace+"/"+vs.Name] = vs
		}
	}
	for _, vs := range sorted {
		idx.place(vs, func(gw string, part int, merged *istionet.VirtualService) {
			p := idx.parts[gw]
			if p == nil {
				p = &[3][]*istionet.VirtualService{}
				idx.parts[gw] = p
			}
			p[part] = append(p[part], merged)
		})
	}
	for gw := range idx.parts {
		idx.join(gw)
	}
	return idx
}

func compareVirtualServices(a, b *istionet.VirtualService) int {
	return compareCreation(a.CreationTimestamp.Time, b.CreationTimestamp.Time, a.Name, b.Name, a.Namespace, b.Namespace)
}

// place calls add with a VirtualService that has hosts, its delegates
// merged, for each Gateway it binds where the pods see it, with the part
// of that Gateway's list it goes in.
func (idx *virtualServiceIndex) place(vs *istionet.VirtualService, add func(gateway string, part int, merged *istionet.VirtualService)) {
	if len(vs.Spec.Hosts) == 0 {
		return
	}
	merged := mergeDelegates(vs, idx.delegates)
	exportTo := exportSet(vs.Spec.ExportTo, vs.Namespace)
	for _, ref := range vs.Spec.Gateways {
		if ref == "mesh" {
			continue
		}
		gw := resolveGatewayRef(ref, vs.Namespace)
		switch {
		case exportTo["*"]:
			add(gw, vsPublic, merged)
		case exportTo["~"]:
		default:
			if exportTo[vs.Namespace] && vs.Namespace == idx.podNamespace {
				add(gw, vsPrivate, merged)
			}
			if vs.Namespace != idx.podNamespace && exportTo[idx.podNamespace] {
				add(gw, vsExported, merged)
			}
		}
	}
}

// join sets the Gateway's list from its parts.
func (idx *virtualServiceIndex) join(gateway string) {
	p := idx.parts[gateway]
	idx.byGateway[gateway] = slices.Concat(p[vsPrivate], p[vsExported], p[vsPublic])
}

// with returns the index with more VirtualServices, all with hosts, in
// their places: the same lists as an index built from all of them, without
// sorting and merging the others again. The receiver is not changed: a
// Gateway's parts are copied before the first insert.
func (idx *virtualServiceIndex) with(more []*istionet.VirtualService) *virtualServiceIndex {
	out := &virtualServiceIndex{
		byGateway:    maps.Clone(idx.byGateway),
		parts:        maps.Clone(idx.parts),
		delegates:    idx.delegates,
		podNamespace: idx.podNamespace,
	}
	copied := map[string]bool{}
	for _, vs := range slices.SortedStableFunc(slices.Values(more), compareVirtualServices) {
		out.place(vs, func(gw string, part int, merged *istionet.VirtualService) {
			if !copied[gw] {
				var p [3][]*istionet.VirtualService
				if shared := idx.parts[gw]; shared != nil {
					p = *shared
				}
				out.parts[gw], copied[gw] = &p, true
			}
			p := out.parts[gw]
			at := len(p[part])
			for at > 0 && compareVirtualServices(p[part][at-1], merged) > 0 {
				at--
			}
			p[part] = slices.Insert(slices.Clip(p[part]), at, merged)
		})
	}
	for gw := range copied {
		out.join(gw)
	}
	return out
}

func (idx *virtualServiceIndex) forGateway(gateway string) []*istionet.VirtualService {
	return idx.byGateway[gateway]
}

// exportSet is a VirtualService's exportTo with "." resolved; empty means
// everywhere (the mesh default).
func exportSet(exportTo []string, namespace string) map[string]bool {
	out := map[string]bool{}
	for _, e := range exportTo {
		if e == "." {
			e = namespace
		}
		out[e] = true
	}
	if len(out) == 0 {
		out["*"] = true
	}
	return out
}

// resolveGatewayRef turns a VirtualService's gateway reference into
// "namespace/name", as istiod's resolveGatewayName.
func resolveGatewayRef(ref, vsNamespace string) string {
	if ns, name, ok := strings.Cut(ref, "/"); ok {
		if ns == "." {
			return vsNamespace + "/" + name
		}
		return ns + "/" + name
	}
	name, rest, ok := strings.Cut(ref, ".")
	if !ok {
		return vsNamespace + "/" + ref
	}
	ns, _, _ := strings.Cut(rest, ".")
	return ns + "/" + name
}

// resolvedVSHosts completes short host names as istiod does.
func resolvedVSHosts(vs *istionet.VirtualService) []string {
	out := make([]string, 0, len(vs.Spec.Hosts))
	for _, h := range vs.Spec.Hosts {
		if h != "*" && !strings.Contains(h, ".") && !strings.Contains(h, ":") {
			h = h + "." + vs.Namespace + ".svc." + istioDomain
		}
		out = append(out, h)
	}
	return out
}

// sanitizeServerHosts rewrites "./h" to "gatewayNamespace/h", "*/h" to "h",
// and "*/*" to "*", as istiod does when it merges gateways.
func sanitizeServerHosts(hosts []string, gatewayNamespace string) []string {
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		ns, name, ok := strings.Cut(h, "/")
		switch {
		case !ok:
			out = append(out, h)
		case ns == ".":
			out = append(out, gatewayNamespace+"/"+name)
		case ns == "*" && name == "*":
			return []string{"*"}
		case ns == "*":
			out = append(out, name)
		default:
			out = append(out, h)
		}
	}
	return out
}

// hostsForNamespace keeps the (sanitized) server hosts a VirtualService in
// namespace may bind to, without their namespace part.
func hostsForNamespace(hosts []string, namespace string) []string {
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		if ns, name, ok := strings.Cut(h, "/"); ok {
			if ns != namespace && ns != "*" {
				continue
			}
			h = name
		}
		out = append(out, h)
	}
	return out
}

// intersectHosts keeps, for every pair of a server host and a VirtualService
// host where one covers the other, the narrower one (istiod's
// host.Names.Intersection).
func intersectHosts(serverHosts, vsHosts []string) []string {
	var out []string
	for _, s := range serverHosts {
		for _, v := range vsHosts {
			var pick string
			switch {
			case hostSubsetOf(s, v):
				pick = s
			case hostSubsetOf(v, s):
				pick = v
			default:
				continue
			}
			if !slices.Contains(out, pick) {
				out = append(out, pick)
			}
		}
	}
	return out
}

// isOddWildcard reports a wildcard name other than "*" and "*.suffix",
// which Istio's validation refuses but the model still handles.
func isOddWildcard(name string) bool {
	return len(name) > 1 && name[0] == '*' && name[1] != '.'
}

// hostSubsetOf reports whether every name matched by n is matched by o,
// with Istio's wildcard rules ("*" and "*.suffix").
// serverHostName is a Gateway server's host without its namespace part
// ("ns/host", "./host", "*/host" become "host").
func serverHostName(h string) string {
	if _, name, ok := strings.Cut(h, "/"); ok {
		return name
	}
	return h
}

// gatewayKey names a Gateway as VirtualServices' gateways do: namespace/name.
func gatewayKey(gw *istionet.Gateway) string {
	return gw.Namespace + "/" + gw.Name
}

func hostSubsetOf(n, o string) bool {
	nw, ow := strings.HasPrefix(n, "*"), strings.HasPrefix(o, "*")
	switch {
	case nw && ow:
		return len(n) >= len(o) && strings.HasSuffix(n[1:], o[1:])
	case nw:
		return false
	case ow:
		return strings.HasSuffix(n, o[1:])
	}
	return n == o
}

// selectVhost returns the virtual host Envoy picks for host, or nil.
func (rc *routeConfig) selectVhost(host string) *vhost {
	if rc == nil {
		return nil
	}
	if vh := rc.vhosts[host]; vh != nil {
		return vh
	}
	// The longest wildcard covering host is "*" and its longest suffix
	// that names a virtual host: one from a dot, or from anywhere when a
	// name is not "*.suffix". A wildcard is never longer than the host.
	for i := 1; i < len(host); i++ {
		if host[i] == '.' || rc.oddWildcard {
			if vh := rc.vhosts["*"+host[i:]]; vh != nil {
				return vh
			}
		}
	}
	return rc.vhosts["*"]
}

// selectChain returns the TLS filter chain Envoy picks for sni, or nil;
// ambiguous is true when two chains match equally well (Envoy would reject
// the listener).
func selectChain(chains []*tlsChain, sni string) (chain *tlsChain, ambiguous bool) {
	return newChainIndex(chains).selectChain(sni)
}

// chainIndex answers selectChain for many server names in one pass over
// the chains: an exact name beats every wildcard, the longest wildcard
// that covers the name beats the shorter ones, and chains for every name
// ("*") catch the rest. Ties keep the chains' order.
type chainIndex struct {
	exact    map[string][]*tlsChain // by each name, wildcards included
	catchAll []*tlsChain
	// oddWildcard is set when a wildcard does not start with "*.": then
	// suffixes from every position are looked up, not only from dots.
	oddWildcard bool
}

func newChainIndex(chains []*tlsChain) *chainIndex {
	ci := &chainIndex{exact: map[string][]*tlsChain{}}
	for _, c := range chains {
		if len(c.sni) == 0 {
			ci.catchAll = append(ci.catchAll, c)
			continue
		}
		for _, s := range c.sni {
			if l := ci.exact[s]; len(l) == 0 || l[len(l)-1] != c { // a name listed twice
				ci.exact[s] = append(l, c)
			}
			ci.oddWildcard = ci.oddWildcard || isOddWildcard(s)
		}
	}
	return ci
}

func (ci *chainIndex) selectChain(sni string) (chain *tlsChain, ambiguous bool) {
	best := ci.exact[sni]
	// Else the longest wildcard covering sni: its longest suffix that
	// names one, from a dot (or from anywhere, see oddWildcard).
	for i := 0; len(best) == 0 && i < len(sni); i++ {
		if sni[i] == '.' || ci.oddWildcard {
			best = ci.exact["*"+sni[i:]]
		}
	}
	if len(best) == 0 {
		best = ci.catchAll
	}
	if len(best) == 0 {
		return nil, false
	}
	return best[0], len(best) > 1
}

// l4ServerNames reports whether istiod builds a filter chain for a TLS
// server that passes TLS through (mode PASSTHROUGH: one per matching tls
// route of a bound VirtualService, for the route's sniHosts) or terminates
// it for TCP (protocol TLS: one for the server's hosts when a bound
// VirtualService has a matching tcp route), and for which server names.
// AUTO_PASSTHROUGH servers route by SNI to the mesh's services: kept with
// their hosts.
func l4ServerNames(bs boundServer, idx *virtualServiceIndex) ([]string, bool) {
	gwName := gatewayKey(bs.gateway)
	mode := bs.server.GetTls().GetMode()
	if mode == istioapi.ServerTLSSettings_AUTO_PASSTHROUGH {
		return sniHosts(bs.server.Hosts), true
	}
	port := bs.server.GetPort().GetNumber()
	var names []string
	found := false
	for _, vs := range idx.forGateway(gwName) {
		if len(intersectHosts(hostsForNamespace(bs.hosts, vs.Namespace), resolvedVSHosts(vs))) == 0 {
			continue
		}
		if mode == istioapi.ServerTLSSettings_PASSTHROUGH {
			for _, r := range vs.Spec.Tls {
				if len(r.GetRoute()) == 0 {
					continue
				}
				for _, m := range r.GetMatch() {
					if !l4SourceMatches(m, port, gwName, vs.Namespace) {
						continue
					}
					sni := sniHosts(m.GetSniHosts())
					if len(sni) == 0 {
						return nil, true // a route for every server name
					}
					found = true
					names = append(names, sni...)
				}
			}
			continue
		}
		for _, r := range vs.Spec.Tcp {
			if len(r.GetMatch()) == 0 {
				return sniHosts(bs.server.Hosts), true
			}
			for _, m := range r.GetMatch() {
				if l4SourceMatches(m, port, gwName, vs.Namespace) {
					return sniHosts(bs.server.Hosts), true
				}
			}
		}
	}
	return names, found
}

// l4Match is what istiod reads of a tls or tcp route's match to decide
// whether it applies to a gateway's server.
type l4Match interface {
	GetPort() uint32
	GetGateways() []string
}

// l4SourceMatches mirrors istiod's l4SingleMatch for a gateway's server:
// only the port and the gateways count. Source labels and namespace are
// not looked at on gateways (istiod reads them only for sidecars and
// waypoints), unlike an HTTP match's.
func l4SourceMatches(m l4Match, port uint32, gateway, vsNamespace string) bool {
	if gws := m.GetGateways(); len(gws) > 0 && !slices.ContainsFunc(gws, func(g string) bool { return resolveGatewayRef(g, vsNamespace) == gateway }) {
		return false
	}
	return m.GetPort() == 0 || m.GetPort() == port
}

// sniHosts are the server names a TLS server matches; none for "*".
func sniHosts(hosts []string) []string {
	var out []string
	for _, h := range hosts {
		h = serverHostName(h)
		if h == "*" {
			return nil
		}
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return out
}

func httpsRouteName(gw *istionet.Gateway, srv *istioapi.Server) string {
	return "https." + strconv.FormatUint(uint64(srv.GetPort().GetNumber()), 10) + "." + srv.GetPort().GetName() + "." + gw.Name + "." + gw.Namespace
}

func isHTTPProtocol(p string) bool {
	switch strings.ToUpper(p) {
	case "HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB":
		return true
	}
	return false
}

func isPassthrough(srv *istioapi.Server) bool {
	m := srv.GetTls().GetMode()
	return m == istioapi.ServerTLSSettings_PASSTHROUGH || m == istioapi.ServerTLSSettings_AUTO_PASSTHROUGH
}

// compareCreation orders objects as istiod does: creation time (seconds, as
// the API server stores it), then name, then namespace.
func compareCreation(a, b time.Time, aName, bName, aNS, bNS string) int {
	if c := a.Truncate(time.Second).Compare(b.Truncate(time.Second)); c != 0 {
		return c
	}
	return cmp.Or(strings.Compare(aName, bName), strings.Compare(aNS, bNS))
}
