package istiomodel

import (
	"slices"
	"strings"

	istionet "istio.io/client-go/pkg/apis/networking/v1"
)

// istioDomain is the cluster's DNS domain Istio completes short names with.
const istioDomain = "cluster.local"

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

// SanitizeServerHosts rewrites "./h" to "gatewayNamespace/h", "*/h" to "h",
// and "*/*" to "*", as istiod does when it merges gateways.
func SanitizeServerHosts(hosts []string, gatewayNamespace string) []string {
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

// HostsForNamespace keeps the (sanitized) server hosts a VirtualService in
// namespace may bind to, without their namespace part.
func HostsForNamespace(hosts []string, namespace string) []string {
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
			case HostWithin(s, v):
				pick = s
			case HostWithin(v, s):
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

// ServerHostName is a Gateway server's host without its namespace part
// ("ns/host", "./host", "*/host" become "host").
func ServerHostName(h string) string {
	if _, name, ok := strings.Cut(h, "/"); ok {
		return name
	}
	return h
}

// GatewayKey names a Gateway as VirtualServices' gateways do: namespace/name.
func GatewayKey(gw *istionet.Gateway) string {
	return gw.Namespace + "/" + gw.Name
}

// HostWithin reports whether every name matched by n is matched by o, with
// Istio's wildcard rules ("*" and "*.suffix").
func HostWithin(n, o string) bool {
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
