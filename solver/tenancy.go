package solver

import (
	"fmt"
	"strings"

	istionet "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/istiomodel"
)

// The tenancy rule. HTTP-01 proves that the requester can serve content on
// a name, so the controller never gives a namespace more than Istio's own
// configuration already gives it: a request from namespace N gets a name
// only where every Gateway server on the gateway workloads the CA reaches
// that lists the name (on any port) admits VirtualServices of N for it, and
// at least one does; or where the platform granted N the name
// (HostnameGrant, grants.go). Everything else is refused before any ACME
// order and before any Istio object is written.

// RequesterNamespace is the namespace a challenge is judged for and its
// VirtualServices are written in: the namespace of the request (our
// issuers' requests and cert-manager's Challenges alike), or the Gateway's
// for a Certificate of the Gateway shim (spec.requesterNamespace, which
// Provenance checks before anything is published).
func RequesterNamespace(ch *v1alpha1.ACMEChallenge) string {
	if ch.Spec.RequesterNamespace != "" {
		return ch.Spec.RequesterNamespace
	}
	return ch.Namespace
}

// serverAdmits reads one Gateway server's hosts for a name: whether an
// entry lists the name (its host part covers it, whatever namespace it
// names) and whether one of those entries admits VirtualServices of
// namespace: "namespace/host", "./host" in a Gateway of that namespace,
// "*/host" or a host without a namespace. gatewayNamespace is the Gateway's
// own namespace, which "./" stands for.
func serverAdmits(hosts []string, gatewayNamespace, namespace, name string) (lists, admits bool) {
	return ServerAdmits(hosts, gatewayNamespace, namespace, name)
}

// ServerAdmits is serverAdmits, for the differential check against Istio's
// own translation.
func ServerAdmits(hosts []string, gatewayNamespace, namespace, name string) (lists, admits bool) {
	for _, h := range hosts {
		ns, host, ok := strings.Cut(h, "/")
		if !ok {
			ns, host = "*", h
		}
		if ns == "." {
			ns = gatewayNamespace
		}
		if !istiomodel.HostWithin(name, strings.ToLower(host)) {
			continue
		}
		lists = true
		if ns == "*" || ns == namespace {
			admits = true
		}
	}
	return lists, admits
}

// listingServer is a Gateway server on the issuer's gateway workloads whose
// hosts list a name.
type listingServer struct {
	gateway *istionet.Gateway
	index   int
	admits  bool
}

func (s listingServer) describe() string {
	srv := s.gateway.Spec.Servers[s.index]
	port := "no port"
	if p := srv.GetPort(); p != nil {
		port = fmt.Sprintf("port %d", p.GetNumber())
	}
	return fmt.Sprintf("the server of Gateway %s/%s on %s (hosts %s)", s.gateway.Namespace, s.gateway.Name, port, strings.Join(srv.Hosts, ", "))
}

// serversListing returns every server of the Gateways that select pods of
// the workloads and list the name, each with whether it admits namespace.
// Every server counts, whatever its port, protocol or bind address: a
// platform that restricts a name on one port restricts it.
func serversListing(gateways []*istionet.Gateway, workloads []*GatewayWorkload, namespace, name string) []listingServer {
	var out []listingServer
	for _, gw := range gateways {
		selected := false
		for _, w := range workloads {
			if w != nil && w.Binds(gw) {
				selected = true
				break
			}
		}
		if !selected {
			continue
		}
		for i, srv := range gw.Spec.Servers {
			if lists, admits := serverAdmits(srv.GetHosts(), gw.Namespace, namespace, name); lists {
				out = append(out, listingServer{gateway: gw, index: i, admits: admits})
			}
		}
	}
	return out
}

// istioAdmits applies the rule's Istio half: the name is listed by at
// least one server and every listing server admits the namespace. It
// returns the servers that refuse (empty with listed true: admitted).
func istioAdmits(gateways []*istionet.Gateway, workloads []*GatewayWorkload, namespace, name string) (listed bool, refusing []listingServer) {
	servers := serversListing(gateways, workloads, namespace, name)
	for _, s := range servers {
		if !s.admits {
			refusing = append(refusing, s)
		}
	}
	return len(servers) > 0, refusing
}
