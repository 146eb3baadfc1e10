package istiomodel

import istionet "istio.io/client-go/pkg/apis/networking/v1"

// Mesh is what istiod's own settings, not the objects, change in which
// Gateways and VirtualServices a gateway workload gets. The zero value is
// istiod's default.
type Mesh struct {
	// DefaultVirtualServiceExportTo is the mesh configuration's
	// defaultVirtualServiceExportTo: the exportTo of a VirtualService (or
	// delegate) that sets none. Empty is istiod's default, ["*"].
	DefaultVirtualServiceExportTo []string
	// ScopeGatewayToNamespace is istiod's PILOT_SCOPE_GATEWAY_TO_NAMESPACE:
	// gateway pods get only the Gateways of their own namespace.
	ScopeGatewayToNamespace bool
}

// Binds reports whether istiod applies the Gateway to the workload's pods:
// its selector matches one of them and, with gateways scoped to their
// namespace, it is in the pods' namespace.
func (w *Workload) Binds(gw *istionet.Gateway) bool {
	if w.Mesh.ScopeGatewayToNamespace && gw.Namespace != w.Namespace {
		return false
	}
	return SelectsWorkload(gw.Spec.Selector, w.PodLabels)
}

// exportSet is a VirtualService's exportTo, or the mesh's default when it
// sets none, with "." resolved to the VirtualService's namespace.
func exportSet(exportTo []string, namespace string, mesh Mesh) map[string]bool {
	if len(exportTo) == 0 {
		exportTo = mesh.DefaultVirtualServiceExportTo
	}
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
