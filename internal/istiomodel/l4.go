package istiomodel

import (
	"slices"

	istioapi "istio.io/api/networking/v1"
)

// l4ServerNames reports whether istiod builds a filter chain for a TLS
// server that passes TLS through (mode PASSTHROUGH: one per matching tls
// route of a bound VirtualService, for the route's sniHosts) or terminates
// it for TCP (protocol TLS: one for the server's hosts when a bound
// VirtualService has a matching tcp route), and for which server names.
// AUTO_PASSTHROUGH servers route by SNI to the mesh's services: kept with
// their hosts.
func l4ServerNames(bs Server, idx *Index) ([]string, bool) {
	gwName := GatewayKey(bs.gateway)
	mode := bs.spec.GetTls().GetMode()
	if mode == istioapi.ServerTLSSettings_AUTO_PASSTHROUGH {
		return sniHosts(bs.spec.Hosts), true
	}
	port := bs.spec.GetPort().GetNumber()
	var names []string
	found := false
	for _, vs := range idx.forGateway(gwName) {
		if len(intersectHosts(HostsForNamespace(bs.hosts, vs.Namespace), resolvedVSHosts(vs))) == 0 {
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
				return sniHosts(bs.spec.Hosts), true
			}
			for _, m := range r.GetMatch() {
				if l4SourceMatches(m, port, gwName, vs.Namespace) {
					return sniHosts(bs.spec.Hosts), true
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
