package solver

import (
	"strings"

	istionet "istio.io/client-go/pkg/apis/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
)

// IstioCacheOptions caches every Gateway and VirtualService, since the
// route planner reads users' ones on each challenge, trimmed to what the
// planner and the controller read: no managedFields, no status, and on
// users' objects no annotations but cert-manager's (the Gateway shim reads
// them; kubectl's last-applied-configuration alone would double the cache).
// Ours keep theirs: they name the challenge.
func IstioCacheOptions() map[client.Object]cache.ByObject {
	trimmed := cache.ByObject{Transform: kubeutil.CacheTransform(trimIstioObject)}
	return map[client.Object]cache.ByObject{&istionet.Gateway{}: trimmed, &istionet.VirtualService{}: trimmed}
}

func trimIstioObject(o client.Object) {
	if o.GetLabels()[LabelManagedBy] != ManagedByValue {
		o.SetAnnotations(certManagerAnnotations(o.GetAnnotations()))
	}
	switch t := o.(type) {
	case *istionet.Gateway:
		t.Status.Reset()
	case *istionet.VirtualService:
		t.Status.Reset()
	}
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
