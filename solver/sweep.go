package solver

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// OrphanSweeper deletes route objects (routeKinds) that carry our labels
// but whose challenge no longer exists: left behind when a challenge's
// finalizer was removed by hand, an object was restored from a backup, or a
// route was written while its challenge was being deleted. Temporary HTTPS
// Secrets are removed by the challenge's finalizer only. It runs on the
// leader, at start and then periodically.
type OrphanSweeper struct {
	// Client reads (from the cache, which holds every object of the route
	// kinds, users' too; the sweep selects ours by label) and deletes.
	Client client.Client
	// Interval between sweeps.
	Interval time.Duration
	// MinAge spares objects younger than this, whatever their state.
	MinAge time.Duration
	Log    logr.Logger
}

// NeedLeaderElection is true: one replica sweeps.
func (s *OrphanSweeper) NeedLeaderElection() bool { return true }

// Start sweeps now and every Interval until ctx is done.
func (s *OrphanSweeper) Start(ctx context.Context) error {
	ticker := time.NewTicker(s.Interval)
	defer ticker.Stop()
	for {
		if n, err := s.Sweep(ctx); err != nil {
			s.Log.Error(err, "sweeping orphaned challenge routes")
		} else if n > 0 {
			s.Log.Info("deleted orphaned challenge routes", "count", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// Sweep deletes our Istio objects whose challenge is gone and returns how
// many it deleted.
func (s *OrphanSweeper) Sweep(ctx context.Context) (int, error) {
	var challenges v1alpha1.ACMEChallengeList
	if err := s.Client.List(ctx, &challenges); err != nil {
		return 0, fmt.Errorf("listing challenges: %w", err)
	}
	live := map[string]bool{}
	// An order's shared VirtualService lives while one of its challenges
	// does.
	liveOrders := map[string]bool{}
	for _, ch := range challenges.Items {
		live[ChallengeKey(ch.Namespace, ch.Name)] = true
		if ch.Spec.Order != "" {
			liveOrders[ChallengeKey(ch.Namespace, ch.Spec.Order)] = true
		}
	}

	ours := client.MatchingLabels{LabelManagedBy: ManagedByValue}
	var objs []client.Object
	for _, k := range routeKinds {
		list, err := k.list(ctx, s.Client, ours)
		if err != nil {
			return 0, fmt.Errorf("listing our %ss: %w", k.kind, err)
		}
		objs = append(objs, list...)
	}

	deleted := 0
	for _, obj := range objs {
		key, ok := obj.GetLabels()[LabelChallenge]
		order, shared := obj.GetLabels()[LabelSharedByOrder]
		switch {
		case time.Since(obj.GetCreationTimestamp().Time) < s.MinAge:
			continue
		case ok && live[key], shared && liveOrders[order], !ok && !shared:
			continue
		}
		if err := s.Client.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
			return deleted, fmt.Errorf("deleting %s %s/%s: %w", routeKindOf(obj).kind, obj.GetNamespace(), obj.GetName(), err)
		}
		s.Log.Info("deleted orphaned challenge route", "kind", routeKindOf(obj).kind, "namespace", obj.GetNamespace(), "name", obj.GetName(), "challenge", obj.GetAnnotations()[AnnotationChallenge], "sharedBy", obj.GetAnnotations()[AnnotationSharedMembers])
		deleted++
	}
	return deleted, nil
}
