package solver

import (
	"context"
	"fmt"
	"reflect"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// routeKind is one kind of object a challenge's routes are made of, and
// everything the controller needs to know of it: the challenge controller
// creates, compares, watches, lists by label and deletes its objects, the
// orphan sweep lists them, and the cache keeps the kind trimmed. Each
// kind's file holds its RBAC markers. A new route backend is a file with
// its routeKind, an entry in routeKinds, and its builder in BuildRoutes.
type routeKind struct {
	// kind and apiVersion name it in the challenge's status.routes.
	kind, apiVersion string
	newObject        func() client.Object
	newList          func() client.ObjectList
	// namespace is where a challenge's objects of this kind live.
	namespace func(ch *v1alpha1.ACMEChallenge) string
	// sameSpec tells whether an existing object routes like the wanted one.
	sameSpec func(want, existing client.Object) bool
	// trimStatus drops the status the cache need not keep.
	trimStatus func(client.Object)
	// built picks the kind's objects out of the challenge's routes.
	built func(Routes) []client.Object
	// forbiddenHint says which chart value grants the right when a write is
	// forbidden.
	forbiddenHint string
}

// routeKinds in the order a challenge's objects are created (a Gateway
// before the VirtualServices that bind to it); they are deleted in
// reverse.
var routeKinds = []*routeKind{gatewayRoutes, virtualServiceRoutes}

// routeKindOf returns the kind of obj, or nil for an object that is not
// one of a challenge's routes.
func routeKindOf(obj client.Object) *routeKind {
	t := reflect.TypeOf(obj)
	for _, k := range routeKinds {
		if reflect.TypeOf(k.newObject()) == t {
			return k
		}
	}
	return nil
}

// routeKindNamed returns the kind a status.routes entry names, or nil.
func routeKindNamed(kind string) *routeKind {
	for _, k := range routeKinds {
		if k.kind == kind {
			return k
		}
	}
	return nil
}

// list lists the kind's objects with opts.
func (k *routeKind) list(ctx context.Context, r client.Reader, opts ...client.ListOption) ([]client.Object, error) {
	list := k.newList()
	if err := r.List(ctx, list, opts...); err != nil {
		return nil, err
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil, fmt.Errorf("reading the %s list: %w", k.kind, err)
	}
	out := make([]client.Object, 0, len(items))
	for _, it := range items {
		out = append(out, it.(client.Object))
	}
	return out, nil
}

// reference is the status.routes entry of one of the kind's objects.
func (k *routeKind) reference(obj client.Object) v1alpha1.ObjectReference {
	return v1alpha1.ObjectReference{APIVersion: k.apiVersion, Kind: k.kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// asObjects lists a builder's typed objects as client.Objects.
func asObjects[T client.Object](list []T) []client.Object {
	out := make([]client.Object, 0, len(list))
	for _, o := range list {
		out = append(out, o)
	}
	return out
}
