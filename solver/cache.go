package solver

import (
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// IstioCacheOptions caches every Gateway and VirtualService, since the
// route planner reads users' ones on each challenge, trimmed to what the
// planner and the controller read: no managedFields, no status, and no
// annotations on users' objects (ours keep theirs: they name the
// challenge).
func IstioCacheOptions() map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&istionet.Gateway{}:        {Transform: trimIstioObject},
		&istionet.VirtualService{}: {Transform: trimIstioObject},
	}
}

func trimIstioObject(obj any) (any, error) {
	o, ok := obj.(client.Object)
	if !ok {
		return obj, nil // a deletion tombstone
	}
	o.SetManagedFields(nil)
	if o.GetLabels()[LabelManagedBy] != ManagedByValue {
		o.SetAnnotations(nil)
	}
	switch t := o.(type) {
	case *istionet.Gateway:
		t.Status.Reset()
	case *istionet.VirtualService:
		t.Status.Reset()
	}
	return o, nil
}
