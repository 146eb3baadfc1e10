package solver

import (
	"context"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// TestPresentedInMemoryFirst: a challenge of an order is handed to the
// signer in memory as soon as its self-check passes (the wake carries it,
// Presented says so) while its status is written only once the
// presentation lasted its quiet time; a challenge deleted before then never
// gets a status write, and its presentation leaves nothing behind, nor does
// one the signer took up (its own write says it, if the CA's validation
// lasts).
func TestPresentedInMemoryFirst(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	api, gatewayAddr := startIngress(ctx, t)
	cl := api.Client
	presentations := NewPresentations()
	presentations.quiet = 5 * time.Second // presentedQuiet, shortened
	startChallengeControllerPresenting(ctx, t, api, gatewayAddr, true, false, presentations)

	lasting, brief, taken := testChallenge(), testChallenge(), testChallenge()
	brief.Name, brief.Spec.DNSName, brief.Spec.Token, brief.Spec.Key = "shop-1-brief", "brief.example.com", "tok-brief", "tok-brief.thumbprint"
	taken.Name, taken.Spec.DNSName, taken.Spec.Token, taken.Spec.Key = "shop-1-taken", "taken.example.com", "tok-taken", "tok-taken.thumbprint"
	for _, ch := range []*v1alpha1.ACMEChallenge{lasting, brief, taken} {
		if err := cl.Create(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	woken := map[string]time.Time{}
	for len(woken) < 3 {
		select {
		case e := <-presentations.Wake():
			woken[e.Object.GetName()] = time.Now()
			ch := &v1alpha1.ACMEChallenge{}
			if err := cl.Get(ctx, client.ObjectKeyFromObject(e.Object), ch); err != nil {
				t.Fatal(err)
			}
			if ch.Status.Presented {
				t.Errorf("challenge %s: status written presented when the signer was told, want it held back %s", ch.Name, presentations.quiet)
			}
			if !presentations.Presented(ch) {
				t.Errorf("challenge %s: the signer is woken but Presented says no", ch.Name)
			}
			if ch.Name == taken.Name {
				presentations.Accepted(ch) // as the signer does
			}
			if ch.Name == brief.Name {
				// Validated and deleted before the presentation lasted;
				// a finalizer of the test's keeps it to be looked at.
				ch.Finalizers = append(ch.Finalizers, "test.istio-acme.io/hold")
				if err := cl.Update(ctx, ch); err != nil {
					t.Fatal(err)
				}
				if err := cl.Delete(ctx, ch); err != nil {
					t.Fatal(err)
				}
			}
		case <-time.After(time.Minute):
			t.Fatalf("woken for %v only, want all three challenges", woken)
		}
	}
	waitChallenge(t, cl, lasting, "the lasting challenge's status to say presented", func(got *v1alpha1.ACMEChallenge) bool { return got.Status.Presented })
	got := &v1alpha1.ACMEChallenge{}
	if err := cl.Get(ctx, client.ObjectKeyFromObject(lasting), got); err != nil {
		t.Fatal(err)
	}
	var at time.Time
	for _, c := range got.Status.Conditions {
		if c.Type == "Ready" {
			at = c.LastTransitionTime.Time
		}
	}
	if early := woken[lasting.Name].Add(presentations.quiet - time.Second); at.Before(early) {
		t.Errorf("status written presented at %s, %s after the signer was told; want about %s", at, at.Sub(woken[lasting.Name]), presentations.quiet)
	}
	if len(got.Status.Routes) == 0 || got.Status.Message == "" {
		t.Errorf("presented status without routes or message: %+v", got.Status)
	}
	// By now the deleted challenge's presentation lasted too: nothing
	// was written for it.
	held := &v1alpha1.ACMEChallenge{}
	if err := cl.Get(ctx, client.ObjectKeyFromObject(brief), held); err != nil {
		t.Fatal(err)
	}
	if held.Status.Presented || len(held.Status.Routes) > 0 {
		t.Errorf("the challenge deleted before its presentation lasted got a status write: %+v", held.Status)
	}
	held.Finalizers = nil
	if err := cl.Update(ctx, held); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(woken[taken.Name].Add(presentations.quiet + time.Second)))
	if err := cl.Get(ctx, client.ObjectKeyFromObject(taken), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Presented || len(got.Status.Routes) > 0 {
		t.Errorf("the challenge the signer took up got the challenge controller's status write: %+v", got.Status)
	}
}

// TestAnsweredWakesTheSignerOnce: the token server's answer to an accepted
// challenge wakes its request once, a moment later; an answer before the
// signer asked the CA (the self-check's) wakes nothing.
func TestAnsweredWakesTheSignerOnce(t *testing.T) {
	p := NewPresentations()
	ch := testChallenge()
	ch.UID, ch.Generation = "uid-1", 1
	p.Present(ch, "routed", nil)
	<-p.Wake() // the presentation's own wake
	woken := func() bool {
		select {
		case e := <-p.Wake():
			if e.Object.(*v1alpha1.ACMEChallenge).Spec.Order != ch.Spec.Order || e.Object.GetName() != ch.Name {
				t.Errorf("woken for %+v, want challenge %s of order %s", e.Object, ch.Name, ch.Spec.Order)
			}
			return true
		case <-time.After(answeredSettle + 500*time.Millisecond):
			return false
		}
	}
	p.Answered(ch)
	if woken() {
		t.Error("an answer before the CA was asked woke the signer")
	}
	p.Accepted(ch)
	start := time.Now()
	p.Answered(ch)
	if !woken() {
		t.Fatal("the answer after the CA was asked did not wake the signer")
	}
	if d := time.Since(start); d < answeredSettle {
		t.Errorf("woken %s after the answer, want after %s", d, answeredSettle)
	}
	p.Answered(ch) // another of the CA's requests
	if woken() {
		t.Error("a second answer woke the signer again")
	}
}
