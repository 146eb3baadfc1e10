package solver

import (
	"context"
	"testing"
	"time"

	istioapi "istio.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// TestSharingWakesWaitingSiblings: a challenge that tells its part wakes
// the siblings of its order that wait, and nobody else.
func TestSharingWakesWaitingSiblings(t *testing.T) {
	var s sharing
	ch := func(name, order, authz string) *v1alpha1.ACMEChallenge {
		return &v1alpha1.ACMEChallenge{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: name},
			Spec: v1alpha1.ACMEChallengeSpec{Order: order, AuthorizationURL: authz}}
	}
	a, b, c, other := ch("a", "o", "authz-a"), ch("b", "o", "authz-b"), ch("c", "o", "authz-c"), ch("x", "p", "authz-x")
	s.tell(a, sharePart{waitingSince: time.Now()})
	s.tell(c, sharePart{alone: true})
	s.tell(other, sharePart{waitingSince: time.Now()})
	drain := func() []string {
		var names []string
		for {
			select {
			case e := <-s.wakeChannel():
				names = append(names, e.Object.GetName())
			default:
				return names
			}
		}
	}
	if got := drain(); len(got) != 1 || got[0] != "a" {
		t.Fatalf("after c stood aside, woken %v, want a (waiting, same order)", got)
	}
	s.tell(b, sharePart{})
	if got := drain(); len(got) != 1 || got[0] != "a" {
		t.Errorf("after b told its plan, woken %v, want only a", got)
	}
	if parts := s.parts(a); len(parts) != 3 || parts["authz-b"].name != "b" {
		t.Errorf("order o's parts %v, want a, b and c by authorization", parts)
	}
}

// TestSharedVirtualServiceWakesWaitingMembers: a shared VirtualService seen
// created wakes its members that wait for it, not the one that wrote it,
// nor a challenge of another namespace with the same name.
func TestSharedVirtualServiceWakesWaitingMembers(t *testing.T) {
	var s sharing
	ch := func(namespace, name, authz string) *v1alpha1.ACMEChallenge {
		return &v1alpha1.ACMEChallenge{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: types.UID(namespace + "/" + name)},
			Spec: v1alpha1.ACMEChallengeSpec{Order: "o", AuthorizationURL: authz}}
	}
	a, b, elsewhere := ch("apps", "a", "authz-a"), ch("apps", "b", "authz-b"), ch("shop", "a", "authz-x")
	s.tell(a, sharePart{waitingSince: time.Now()})
	s.tell(elsewhere, sharePart{waitingSince: time.Now()})
	member := func(c *v1alpha1.ACMEChallenge) SharedMember {
		return SharedMember{Name: c.Name, UID: c.UID, Hosts: []string{c.Name + ".example.com"}, Route: &istioapi.HTTPRoute{}, Gateways: []string{"istio-system/shop"}}
	}
	s.record(b, sharePart{member: member(b)}) // b writes it
	v := BuildSharedVirtualService("apps", "o", []SharedMember{member(a), member(b)})
	got := s.waitingMembers(context.Background(), v)
	if len(got) != 1 || got[0].Namespace != "apps" || got[0].Name != "a" {
		t.Errorf("woken %v, want apps/a alone", got)
	}
	s.record(a, sharePart{member: member(a)}) // a found it written
	if got := s.waitingMembers(context.Background(), v); len(got) != 0 {
		t.Errorf("woken %v once nobody waits, want none", got)
	}
}
