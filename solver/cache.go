package solver

import (
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
)

// IstioCacheOptions caches every object of the route kinds (Gateways and
// VirtualServices), since the route planner reads users' ones on each
// challenge, trimmed to what the
// planner and the controller read: no managedFields, no status, and on
// users' objects no annotations but cert-manager's (the Gateway shim reads
// them; kubectl's last-applied-configuration alone would double the cache).
// Ours keep theirs: they name the challenge.
func IstioCacheOptions() map[client.Object]cache.ByObject {
	out := map[client.Object]cache.ByObject{}
	for _, k := range routeKinds {
		out[k.newObject()] = cache.ByObject{Transform: kubeutil.CacheTransform(k.trimForCache)}
	}
	return out
}

func (k *routeKind) trimForCache(o client.Object) {
	if o.GetLabels()[LabelManagedBy] != ManagedByValue {
		o.SetAnnotations(certManagerAnnotations(o.GetAnnotations()))
	}
	k.trimStatus(o)
}

// certManagerAnnotations keeps the annotations under cert-manager.io/, or
// returns nil when there are none.
func certManagerAnnotations(in map[string]string) map[string]string {
	var out map[string]string
	for k, v := range in {
		if strings.HasPrefix(k, "cert-manager.io/") {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}
