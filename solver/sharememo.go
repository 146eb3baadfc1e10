package solver

import (
	"context"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// sharing is what the challenges of each order tell each other of their
// plans (see sharedroutes.go), by the order's authorizations: the order
// lists them, so a challenge knows which siblings to wait for without
// listing challenges. A sibling that tells its part wakes the ones that
// wait, on the channel the challenge controller watches.
type sharing struct {
	mu sync.Mutex
	// orders are keyed by the order's shared VirtualService's label
	// (sharedOrderKey), so that the VirtualService finds its order.
	orders map[string]*orderParts
	pruned time.Time
	wake   chan event.GenericEvent
}

type orderParts struct {
	parts   map[string]sharePart // by authorization URL
	touched time.Time
}

// sharePart is what a challenge tells its siblings of its plan.
type sharePart struct {
	name   string
	member SharedMember
	// alone: the challenge does not share (its plan does not fit, it
	// stopped waiting, or it was not planned at all); the siblings
	// neither wait for it nor include it.
	alone bool
	// waitingSince is when it began to wait for its siblings (zero once
	// it stopped, and for a part alone).
	waitingSince time.Time
}

// waits reports whether the part's challenge waits for its siblings.
func (p sharePart) waits() bool { return !p.waitingSince.IsZero() }

// wakeChannel returns the channel waiting challenges are sent on.
func (s *sharing) wakeChannel() chan event.GenericEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wake == nil {
		s.wake = make(chan event.GenericEvent, 1024)
	}
	return s.wake
}

func orderOf(ch *v1alpha1.ACMEChallenge) types.NamespacedName {
	return types.NamespacedName{Namespace: ch.Namespace, Name: ch.Spec.Order}
}

// sharedOrderKey is the label value of the challenge's order's shared
// VirtualService (LabelSharedByOrder).
func sharedOrderKey(ch *v1alpha1.ACMEChallenge) string {
	return ChallengeKey(ch.Namespace, ch.Spec.Order)
}

// tell records the challenge's part and wakes the siblings that wait.
func (s *sharing) tell(ch *v1alpha1.ACMEChallenge, p sharePart) {
	s.record(ch, p)
	s.wakeSiblings(ch)
}

// record records the challenge's part without waking anyone: the
// siblings of a challenge that will write the shared VirtualService are
// woken as the cache sees it (waitingMembers), so that they find it rather
// than race to create it.
func (s *sharing) record(ch *v1alpha1.ACMEChallenge, p sharePart) {
	now := time.Now()
	p.name = ch.Name
	key := sharedOrderKey(ch)
	s.mu.Lock()
	if s.orders == nil {
		s.orders = map[string]*orderParts{}
	}
	if now.Sub(s.pruned) > sharePartTTL {
		s.pruned = now
		for k, o := range s.orders {
			if now.Sub(o.touched) > sharePartTTL {
				delete(s.orders, k)
			}
		}
	}
	o := s.orders[key]
	if o == nil {
		o = &orderParts{parts: map[string]sharePart{}}
		s.orders[key] = o
	}
	o.parts[ch.Spec.AuthorizationURL] = p
	o.touched = now
	s.mu.Unlock()
}

// wakeSiblings wakes the siblings of the challenge that wait.
func (s *sharing) wakeSiblings(ch *v1alpha1.ACMEChallenge) {
	wake := s.wakeChannel()
	key := sharedOrderKey(ch)
	var waiting []string
	s.mu.Lock()
	if o := s.orders[key]; o != nil {
		for authz, q := range o.parts {
			if authz != ch.Spec.AuthorizationURL && q.waits() {
				waiting = append(waiting, q.name)
			}
		}
	}
	s.mu.Unlock()
	for _, name := range waiting {
		select {
		case wake <- event.GenericEvent{Object: &v1alpha1.ACMEChallenge{ObjectMeta: metav1.ObjectMeta{Namespace: ch.Namespace, Name: name}}}:
		default: // it looks again when its wait ends
		}
	}
}

// parts returns the parts told for the challenge's order, by
// authorization URL.
func (s *sharing) parts(ch *v1alpha1.ACMEChallenge) map[string]sharePart {
	key := sharedOrderKey(ch)
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orders[key]
	if o == nil {
		return nil
	}
	out := make(map[string]sharePart, len(o.parts))
	for k, v := range o.parts {
		out[k] = v
	}
	return out
}

// waitingMembers maps a shared VirtualService to its members that wait for
// their siblings' plans.
func (s *sharing) waitingMembers(ctx context.Context, obj client.Object) []reconcile.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orders[obj.GetLabels()[LabelSharedByOrder]]
	if o == nil {
		return nil
	}
	var out []reconcile.Request
	for _, req := range challengesOfRoute(ctx, obj) {
		for _, p := range o.parts {
			if p.name == req.Name && p.waits() {
				out = append(out, req)
				break
			}
		}
	}
	return out
}
