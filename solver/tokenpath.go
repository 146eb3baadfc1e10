package solver

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// TokenPathReader is what the token server reads through: the cache, for
// the kinds whose informers it registered before the cache started, and
// an error for any other. Every replica answers tokens, leader or not, and
// a standby starts no controller that would start those informers: without
// this, its first answer would start one and wait for a full list, or for
// as long as the API server is away, while the CA waits. The manager syncs
// every registered informer before it starts the token server, so an
// answer only ever reads memory.
type TokenPathReader struct {
	reader client.Reader
	scheme *runtime.Scheme
	kinds  map[schema.GroupVersionKind]bool
}

// NewTokenPathReader indexes the cache's challenges by token (TokenIndex)
// and registers with it (it must not have started) an informer for the
// challenges, for what proves them ours (ProvenanceReads) and for more
// (what a RequesterFunc reads); it returns a reader of only those kinds.
func NewTokenPathReader(ctx context.Context, c cache.Cache, scheme *runtime.Scheme, more ...client.Object) (*TokenPathReader, error) {
	if err := c.IndexField(ctx, &v1alpha1.ACMEChallenge{}, TokenIndex, IndexChallengeToken); err != nil {
		return nil, fmt.Errorf("indexing challenges by token: %w", err)
	}
	r := &TokenPathReader{reader: c, scheme: scheme, kinds: map[schema.GroupVersionKind]bool{}}
	reads := append(append([]client.Object{&v1alpha1.ACMEChallenge{}}, ProvenanceReads()...), more...)
	for _, obj := range reads {
		gvk, err := apiutil.GVKForObject(obj, scheme)
		if err != nil {
			return nil, err
		}
		if _, err := c.GetInformer(ctx, obj); err != nil {
			return nil, fmt.Errorf("watching %s, which the token server reads for its answers: %w", gvk.GroupKind().String(), err)
		}
		r.kinds[gvk] = true
	}
	return r, nil
}

// Get reads obj from the cache if its kind was registered.
func (r *TokenPathReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if err := r.registered(obj, ""); err != nil {
		return err
	}
	return r.reader.Get(ctx, key, obj, opts...)
}

// List lists from the cache if the items' kind was registered.
func (r *TokenPathReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := r.registered(list, "List"); err != nil {
		return err
	}
	return r.reader.List(ctx, list, opts...)
}

func (r *TokenPathReader) registered(obj runtime.Object, suffix string) error {
	gvk, err := apiutil.GVKForObject(obj, r.scheme)
	if err != nil {
		return err
	}
	gvk.Kind = strings.TrimSuffix(gvk.Kind, suffix)
	if !r.kinds[gvk] {
		return fmt.Errorf("the token server reads %s, whose informer was not registered before the cache started (a missing entry in what NewTokenPathReader was given)", gvk.GroupKind().String())
	}
	return nil
}
