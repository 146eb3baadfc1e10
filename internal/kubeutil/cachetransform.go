package kubeutil

import (
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CacheTransform is an informer transform that drops an object's
// managedFields, which nothing in this controller reads, and then applies
// trim, if any. A type's own transform replaces the cache's default one
// instead of following it, so every transform of the controller's cache is
// made here and none forgets the managedFields.
func CacheTransform(trim func(client.Object)) toolscache.TransformFunc {
	return func(in any) (any, error) {
		o, ok := in.(client.Object)
		if !ok {
			return in, nil // a deletion tombstone
		}
		o.SetManagedFields(nil)
		if trim != nil {
			trim(o)
		}
		return o, nil
	}
}
