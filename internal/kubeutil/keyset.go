package kubeutil

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// KeySet is a set of objects to wake when something they wait for may have
// changed, such as the requests the tenancy rule refuses, which a new
// Gateway or grant may admit. Safe for concurrent use.
type KeySet struct {
	mu   sync.Mutex
	keys map[types.NamespacedName]struct{}
}

// Add puts key in the set.
func (s *KeySet) Add(key types.NamespacedName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		s.keys = map[types.NamespacedName]struct{}{}
	}
	s.keys[key] = struct{}{}
}

// Remove takes key out of the set.
func (s *KeySet) Remove(key types.NamespacedName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, key)
}

// Requests returns a reconcile request for every key in the set; it is a
// handler map function whatever the object that changed.
func (s *KeySet) Requests(context.Context, client.Object) []reconcile.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]reconcile.Request, 0, len(s.keys))
	for k := range s.keys {
		out = append(out, reconcile.Request{NamespacedName: k})
	}
	return out
}
