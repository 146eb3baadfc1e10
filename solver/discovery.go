package solver

import (
	"context"
	"fmt"
	"strings"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ServingServers returns the servers of the users' Gateways (ours are left
// out) that serve host on the workload, to a VirtualService in vsNamespace.
func (g *IngressGateways) ServingServers(ctx context.Context, w *GatewayWorkload, host, vsNamespace string) ([]ServingServer, error) {
	notOurs, err := labels.NewRequirement(LabelManagedBy, selection.NotEquals, []string{ManagedByValue})
	if err != nil {
		return nil, err
	}
	var list istionet.GatewayList
	if err := g.Reader.List(ctx, &list, client.MatchingLabelsSelector{Selector: labels.NewSelector().Add(*notOurs)}); err != nil {
		return nil, fmt.Errorf("listing Gateways: %w", err)
	}
	return ServersForHost(list.Items, w.PodLabels, host, vsNamespace), nil
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
// VirtualService in vsNamespace, on a gateway workload whose pods have one of
// podLabels. It honours Istio's host syntax: "ns/host" (namespace "*", "."
// for the Gateway's own, or a name), exact hosts, "*.suffix" wildcards and
// "*". Servers on ports other than HTTP(S) protocols are ignored.
func ServersForHost(gateways []*istionet.Gateway, podLabels []map[string]string, host, vsNamespace string) []ServingServer {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	var out []ServingServer
	for _, gw := range gateways {
		if !selectsAny(gw.Spec.Selector, podLabels) {
			continue
		}
		for _, srv := range gw.Spec.Servers {
			switch strings.ToUpper(srv.GetPort().GetProtocol()) {
			case "HTTP", "HTTP2", "HTTPS":
			default:
				continue
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
