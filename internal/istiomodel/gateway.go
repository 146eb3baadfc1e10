package istiomodel

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
)

// Workload is what the model reads of a gateway workload.
type Workload struct {
	// Namespace of the gateway pods.
	Namespace string
	// PodLabels are the labels of each pod, which Gateways' selectors are
	// matched against.
	PodLabels []map[string]string
	// ServicePorts maps each Service port number to the pod ports behind
	// it: Istio binds a Gateway server whose port number is a Service port
	// to that Service's target port, and any other number as is.
	ServicePorts map[uint32][]uint32
	// Mesh is istiod's settings that change what the pods get.
	Mesh Mesh
}

// ListenPorts returns the pod ports on which Istio binds a Gateway server
// with this port number on the workload.
func (w *Workload) ListenPorts(number uint32) []uint32 {
	if ports, ok := w.ServicePorts[number]; ok {
		return ports
	}
	return []uint32{number}
}

// proxyLabels are the labels of the workload's first pod, which istiod
// matches route conditions on source labels against.
func (w *Workload) proxyLabels() map[string]string {
	if len(w.PodLabels) == 0 {
		return nil
	}
	return w.PodLabels[0]
}

// Input is what the model reads.
type Input struct {
	Gateways []*istionet.Gateway
	// VirtualServices are indexed for the workload's namespace.
	VirtualServices *Index
	Workload        *Workload
}

// Proxy is the translation of one gateway workload.
type Proxy struct {
	// http is the shared route configuration of plain HTTP servers, by pod
	// port.
	http map[uint32]*RouteConfig
	// tls lists the TLS filter chains (HTTPS and other TLS servers) of each
	// pod port, in merge order.
	tls map[uint32][]*Chain
}

// HTTP returns the route configuration of the plain HTTP servers on a pod
// port, or nil.
func (p *Proxy) HTTP(port uint32) *RouteConfig {
	return p.http[port]
}

// Chains returns the TLS filter chains of a pod port, in merge order.
func (p *Proxy) Chains(port uint32) []*Chain {
	return p.tls[port]
}

// Server is a server of an applied Gateway.
type Server struct {
	gateway *istionet.Gateway
	spec    *istioapi.Server
	hosts   []string
}

// Gateway is the Gateway the server belongs to.
func (s Server) Gateway() *istionet.Gateway { return s.gateway }

// Spec is the server as the Gateway writes it.
func (s Server) Spec() *istioapi.Server { return s.spec }

// Hosts are the server's hosts sanitized as istiod does
// (SanitizeServerHosts).
func (s Server) Hosts() []string { return s.hosts }

func newServer(gw *istionet.Gateway, srv *istioapi.Server) Server {
	return Server{gateway: gw, spec: srv, hosts: SanitizeServerHosts(srv.Hosts, gw.Namespace)}
}

// Chain is one TLS server on a pod port.
type Chain struct {
	Server
	// sni are the server names it answers; empty for a server of "*".
	sni []string
	// terminates is true for HTTPS servers that terminate TLS; they have a
	// route configuration.
	terminates bool
	routes     *RouteConfig
}

// Terminates reports an HTTPS server that terminates TLS and routes HTTP.
func (c *Chain) Terminates() bool { return c.terminates }

// Routes is the route configuration of a terminating server, else nil.
func (c *Chain) Routes() *RouteConfig { return c.routes }

// Build translates the objects for the workload.
func Build(in Input) *Proxy {
	w := in.Workload
	podLabels := w.proxyLabels()
	gws := slices.Clone(in.Gateways)
	slices.SortStableFunc(gws, func(a, b *istionet.Gateway) int {
		return compareCreation(a.CreationTimestamp.Time, b.CreationTimestamp.Time, a.Name, b.Name, a.Namespace, b.Namespace)
	})

	type portState struct {
		plainProtocol string // protocol of the plain-text servers on the port
		seen          bool
	}
	ports := map[uint32]*portState{}
	tlsHosts := map[uint32]map[string]bool{}
	httpServers := map[uint32][]Server{}
	tlsChains := map[uint32][]*Chain{}
	httpsRouteNames := map[string]bool{}

	for _, gw := range gws {
		if !w.Binds(gw) {
			continue
		}
		for _, srv := range gw.Spec.Servers {
			if srv.GetPort() == nil || srv.GetBind() != "" {
				// Servers bound to an address get listeners of their own,
				// which the CA's requests to the Service do not reach.
				continue
			}
			bs := newServer(gw, srv)
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
					tlsChains[port] = append(tlsChains[port], &Chain{Server: bs, sni: sniHosts(srv.Hosts), terminates: terminates})
				}
			}
		}
	}

	vsIndex := in.VirtualServices
	out := &Proxy{http: map[uint32]*RouteConfig{}, tls: map[uint32][]*Chain{}}
	for port, servers := range httpServers {
		out.http[port] = buildRouteConfig("http."+strconv.FormatUint(uint64(port), 10), servers, vsIndex, podLabels, w.Namespace)
	}
	for port, chains := range tlsChains {
		var kept []*Chain
		for _, c := range chains {
			if c.terminates {
				c.routes = buildRouteConfig(httpsRouteName(c.gateway, c.spec), []Server{c.Server}, vsIndex, podLabels, w.Namespace)
				kept = append(kept, c)
				continue
			}
			// A TLS server that does not end in HTTP routes has filter
			// chains only for the VirtualServices' tls or tcp routes that
			// match it; with none, istiod builds nothing for it and its
			// server names fall to the other servers of the port.
			if sni, ok := l4ServerNames(c.Server, vsIndex); ok {
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

// SelectsWorkload reports whether a Gateway selector matches one of the
// pods; an empty selector matches every gateway workload.
func SelectsWorkload(selector map[string]string, podLabels []map[string]string) bool {
	if len(selector) == 0 {
		return true
	}
	for _, l := range podLabels {
		if hasLabels(l, selector) {
			return true
		}
	}
	return false
}

// hasLabels reports whether labels carry every key of selector with its
// value, as a label selector built from the set matches: without building
// one for each of the cluster's Gateways on every plan.
func hasLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// sniHosts are the server names a TLS server matches; none for "*".
func sniHosts(hosts []string) []string {
	var out []string
	for _, h := range hosts {
		h = ServerHostName(h)
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
