package issuer

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
	"github.com/istio-acme/istio-acme-issuer/solver"
)

// The order state machine, one named case per order and authorization
// state and per class of CA error, against a real API server and a real
// Pebble behind the fault-injecting proxy. The challenge controller does not
// run: a case marks challenges presented, as it would.

// orderBench is what every case shares.
type orderBench struct {
	t      *testing.T
	api    *testenv.APIServer
	proxy  *testenv.FaultProxy // in front of a Pebble that validates everything
	strict *testenv.Pebble     // a Pebble whose validations fail (no gateway answers)
	cl     *flakyClient
	events *events.FakeRecorder
	signer *Signer
	// valid and failing are Ready issuers for proxy and strict.
	valid, failing *v1alpha1.ACMEClusterIssuer
}

const orderNamespace = "apps"

func TestOrderStates(t *testing.T) {
	b := &orderBench{t: t, api: testenv.StartAPIServer(t)}
	lenient := testenv.StartPebble(t, testenv.PebbleOptions{Env: []string{"PEBBLE_VA_ALWAYS_VALID=1"}})
	b.proxy = testenv.StartFaultProxy(t, lenient, 1)
	b.strict = testenv.StartPebble(t, testenv.PebbleOptions{DomainBlocklist: []string{"blocked.example.com"}})
	b.api.CreateNamespaces(t, "istio-acme-issuer", orderNamespace)
	b.cl = &flakyClient{Client: b.api.Client}
	b.events = events.NewFakeRecorder(100)
	b.signer = b.newSigner(nil)
	b.valid = b.readyIssuer("lenient", b.proxy.DirectoryURL, lenient.ServerCAPEM)
	b.failing = b.readyIssuer("strict", b.strict.DirectoryURL, b.strict.ServerCAPEM)

	b.run(t, "a new order publishes one challenge per name", func(t *testing.T) {
		cr := b.request(t, b.valid, "new", "a.new.example.com", "b.new.example.com")
		_, err := b.sign(cr)
		wantPending(t, err, "a.new.example.com: publishing routes", "b.new.example.com: publishing routes")
		order := b.order(t, cr)
		if order.Status.URL == "" || order.Status.State != "pending" || order.Status.RequestedAt != nil {
			t.Errorf("ACMEOrder status %+v, want the order's URL, state pending and no open request", order.Status)
		}
		if n := len(b.challenges(t, cr)); n != 2 {
			t.Errorf("%d ACMEChallenges, want 2", n)
		}
		// Its creation in the same pass is the claim: one status write,
		// the order's URL.
		if n := b.cl.statusWritesOf(order); n != 1 {
			t.Errorf("%d status writes of the ACMEOrder, want 1", n)
		}
		b.wantNewOrders(t, "a.new.example.com,b.new.example.com", 1)
	})

	b.run(t, "an order past the CA's order lifetime is replaced, not resumed", func(t *testing.T) {
		cr := b.placed(t, "expired", "expired.example.com")
		// The same controller a day later (Pebble's orders live a day).
		late := b.newSigner(func(o *Options) { o.Clock = clocktesting.NewFakeClock(time.Now().Add(25 * time.Hour)) })
		_, err := b.signWith(late, cr)
		wantPending(t, err, "past the CA's order lifetime; placing a new order")
		b.wantEvent(t, "OrderExpired", "past the CA's order lifetime")
		if order := b.order(t, cr); order.Status.URL != "" {
			t.Errorf("ACMEOrder still records %s", order.Status.URL)
		}
		b.release(t, cr)
		_, err = b.sign(cr)
		wantPending(t, err, "publishing routes")
		b.wantNewOrders(t, "expired.example.com", 2)
	})

	b.run(t, "presented challenges are accepted, the order finalized and the certificate returned", func(t *testing.T) {
		cr := b.placed(t, "issue", "issue.example.com")
		b.present(t, cr)
		bundle := b.signUntilDone(t, cr)
		if !strings.Contains(string(bundle.ChainPEM), "BEGIN CERTIFICATE") {
			t.Fatalf("no certificate returned: %q", bundle.ChainPEM)
		}
		if order := b.order(t, cr); order.Status.State != "valid" {
			t.Errorf("order state %q, want valid", order.Status.State)
		}
		b.wantNewOrders(t, "issue.example.com", 1)
		if n := b.accepts("issue.example.com"); n != 1 {
			t.Errorf("the CA was asked %d times to validate issue.example.com, want once", n)
		}
		if n := len(b.challenges(t, cr)); n != 0 {
			t.Errorf("%d ACMEChallenges left after issuance", n)
		}
	})

	b.run(t, "a challenge presented in memory is accepted at once, and the signer's next write says it is presented", func(t *testing.T) {
		// Two names, one presented: the order stays open, and so does
		// the challenge whose status is looked at.
		cr := b.placed(t, "memory", "memory.example.com", "later.memory.example.com")
		chs := b.challenges(t, cr)
		if len(chs) != 2 {
			t.Fatalf("%d challenges, want 2", len(chs))
		}
		if chs[0].Spec.DNSName != "memory.example.com" {
			chs[0], chs[1] = chs[1], chs[0]
		}
		presentations := solver.NewPresentations()
		clock := clocktesting.NewFakeClock(time.Now())
		s := b.newSigner(func(o *Options) { o.Clock, o.Presentations = clock, presentations })
		sign := func() error {
			_, err := b.signWith(s, cr)
			return err
		}
		route := v1alpha1.ObjectReference{APIVersion: "networking.istio.io/v1", Kind: "VirtualService", Namespace: orderNamespace, Name: "acme-order-x"}
		presentations.Present(&chs[0], "routing through the test", []v1alpha1.ObjectReference{route})
		wantPending(t, sign(), "memory.example.com: the CA is validating", "later.memory.example.com: publishing routes")
		if n := b.accepts("memory.example.com"); n != 1 {
			t.Errorf("the CA was asked %d times to validate, want once", n)
		}
		// Once the validation lasted, the pass reads the authorization
		// (valid: Pebble validates everything here) and its write of the
		// challenge's state records the presentation with it.
		clock.Step(quietValidation)
		wantPending(t, sign(), "memory.example.com: validated", "later.memory.example.com: publishing routes")
		got := &v1alpha1.ACMEChallenge{}
		if err := b.api.Client.Get(context.Background(), client.ObjectKeyFromObject(&chs[0]), got); err != nil {
			t.Fatal(err)
		}
		if !got.Status.Presented || !slices.Contains(got.Status.Routes, route) || got.Status.State != v1alpha1.ChallengeValid {
			t.Errorf("challenge status %+v after the signer's write, want presented with the route, and valid", got.Status)
		}
	})

	b.run(t, "a validation that lasts is read at the CA after 10 s and shown on the challenge after 30 s, not before", func(t *testing.T) {
		cr := b.placed(t, "slow", "slow.example.com")
		b.present(t, cr)
		clock := clocktesting.NewFakeClock(time.Now())
		s := b.newSigner(func(o *Options) { o.Clock = clock })
		// The CA keeps the order and the authorization pending.
		b.setRules(t,
			testenv.FaultRule{Endpoint: testenv.EndpointOrder, Kind: testenv.FaultStatus, Status: "pending", Fraction: 1, PostAsGet: true},
			testenv.FaultRule{Endpoint: testenv.EndpointAuthorization, Kind: testenv.FaultStatus, Status: "pending", Fraction: 1, PostAsGet: true})
		_, err := b.signWith(s, cr)
		wantPending(t, err, "slow.example.com: the CA is validating")
		ch := b.challenges(t, cr)[0]
		writes := b.cl.statusWritesOf(&ch)
		reads := b.count(testenv.EndpointAuthorization, "")
		clock.Step(quietValidation)
		_, err = b.signWith(s, cr)
		wantPending(t, err, "slow.example.com: the CA is validating")
		if n := b.count(testenv.EndpointAuthorization, "") - reads; n != 1 {
			t.Errorf("%d reads of the authorization once the validation lasted %s, want 1", n, quietValidation)
		}
		if n := b.cl.statusWritesOf(&ch) - writes; n != 0 {
			t.Errorf("%d status writes of the challenge before the validation lasted %s, want none", n, validatingShown)
		}
		clock.Step(validatingShown - quietValidation)
		_, err = b.signWith(s, cr)
		wantPending(t, err, "slow.example.com: the CA is validating")
		got := b.challenges(t, cr)[0]
		if got.Status.State != v1alpha1.ChallengeProcessing || got.Status.AcceptedAt == nil {
			t.Errorf("challenge status %+v once the validation lasted %s, want processing since its acceptance", got.Status, validatingShown)
		}
		b.proxy.SetRules(nil)
		b.signUntilDone(t, cr)
	})

	b.run(t, "a pass reads the order's challenges by name; one named otherwise is still found", func(t *testing.T) {
		cr := b.placed(t, "byname", "byname.example.com")
		b.present(t, cr)
		lists := b.cl.challengeLists.Load()
		_, err := b.sign(cr)
		wantPending(t, err, "byname.example.com: the CA is validating")
		if n := b.cl.challengeLists.Load() - lists; n != 0 {
			t.Errorf("the pass listed the namespace's challenges %d times, want none: each is read by its name", n)
		}

		// A challenge under another name, as when the CA spells the
		// name differently from the request.
		cr = b.placed(t, "renamed", "renamed.example.com")
		chs := b.challenges(t, cr)
		if len(chs) != 1 {
			t.Fatalf("%d challenges, want 1", len(chs))
		}
		moved := chs[0].DeepCopy()
		moved.Name, moved.ResourceVersion, moved.UID = moved.Name+"-moved", "", ""
		if err := b.api.Client.Create(context.Background(), moved); err != nil {
			t.Fatal(err)
		}
		chs[0].Finalizers = nil
		if err := b.api.Client.Update(context.Background(), &chs[0]); err != nil {
			t.Fatal(err)
		}
		if err := b.api.Client.Delete(context.Background(), &chs[0]); err != nil {
			t.Fatal(err)
		}
		b.present(t, cr)
		_, err = b.sign(cr)
		wantPending(t, err, "renamed.example.com: the CA is validating")
		if n := b.accepts("renamed.example.com"); n != 1 {
			t.Errorf("the CA was asked %d times to validate renamed.example.com, want once", n)
		}
	})

	b.run(t, "a finalization is sent on its own: the order is read on a later pass, not in the same breath", func(t *testing.T) {
		// The ACME client reads the order at once after finalizing, which
		// races the CA's issuance (Pebble deadlocks such orders).
		cr := b.placed(t, "finalize", "finalize.example.com")
		b.present(t, cr)
		var err error
		var pass []testenv.CARequest
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			before := len(b.proxy.Requests())
			_, err = b.sign(cr)
			pass = b.proxy.Requests()[before:]
			if slices.ContainsFunc(pass, func(r testenv.CARequest) bool { return r.Endpoint == testenv.EndpointFinalize }) || time.Now().After(deadline) {
				break
			}
		}
		wantPending(t, err, "the CA is issuing the certificate")
		finalized := false
		for _, r := range pass {
			finalized = finalized || r.Endpoint == testenv.EndpointFinalize
			if finalized && r.Endpoint == testenv.EndpointOrder {
				t.Errorf("the order was read in the pass that finalized it: %+v", pass)
			}
		}
		bundle := b.signUntilDone(t, cr)
		if !strings.Contains(string(bundle.ChainPEM), "BEGIN CERTIFICATE") {
			t.Fatalf("no certificate returned: %q", bundle.ChainPEM)
		}
	})

	b.run(t, "a finalization answered too late is not sent again: the certificate is fetched", func(t *testing.T) {
		cr := b.placed(t, "late", "late.example.com")
		b.present(t, cr)
		b.proxy.SetRules([]testenv.FaultRule{{Endpoint: testenv.EndpointFinalize, Kind: testenv.FaultTimeout, Fraction: 1, AfterCA: true, Delay: finalizeTimeout + time.Second}})
		var err error
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			_, err = b.sign(cr)
			if !strings.Contains(fmt.Sprint(err), "the CA is validating") || time.Now().After(deadline) {
				break
			}
		}
		wantPending(t, err, "the CA is still issuing the certificate")
		b.proxy.SetRules(nil)
		bundle := b.signUntilDone(t, cr)
		if !strings.Contains(string(bundle.ChainPEM), "BEGIN CERTIFICATE") {
			t.Fatalf("no certificate returned: %q", bundle.ChainPEM)
		}
		finalizes := 0
		finalizeURL := b.order(t, cr).Status.FinalizeURL
		for _, r := range b.proxy.Requests() {
			if r.Endpoint == testenv.EndpointFinalize && r.URL == finalizeURL {
				finalizes++
			}
		}
		if finalizes != 1 {
			t.Errorf("the CA was sent %d finalizations for the order, want 1", finalizes)
		}
	})

	b.run(t, "an order the CA is still processing is read again after the poll interval and never finalized twice", func(t *testing.T) {
		cr := b.placed(t, "processing", "processing.example.com")
		b.present(t, cr)
		b.signUntilFinalized(t, cr)
		b.setRules(t, testenv.FaultRule{Endpoint: testenv.EndpointOrder, Kind: testenv.FaultStatus, Status: "processing", Fraction: 1, PostAsGet: true})
		for range 3 {
			_, err := b.sign(cr)
			wantPending(t, err, "the CA is issuing the certificate")
			var pending signer.PendingError
			errors.As(err, &pending)
			if pending.RequeueAfter < minPoll {
				t.Errorf("read again after %s, want at least the poll interval %s", pending.RequeueAfter, minPoll)
			}
		}
		if st := b.order(t, cr).Status.State; st != "processing" {
			t.Errorf("ACMEOrder state %q, want processing", st)
		}
		b.proxy.SetRules(nil)
		if bundle := b.signUntilDone(t, cr); !strings.Contains(string(bundle.ChainPEM), "BEGIN CERTIFICATE") {
			t.Fatalf("no certificate returned: %q", bundle.ChainPEM)
		}
		if n := b.finalizes(t, cr); n != 1 {
			t.Errorf("the CA was sent %d finalizations for the order, want 1", n)
		}
		b.wantNewOrders(t, "processing.example.com", 1)
	})

	b.run(t, "a finalization the CA refuses for the CSR fails the request for good, naming the CA's reason", func(t *testing.T) {
		cr := b.placed(t, "badcsr", "badcsr.example.com")
		b.present(t, cr)
		b.setRules(t, testenv.FaultRule{Endpoint: testenv.EndpointFinalize, Kind: testenv.FaultProblem, Problem: "badCSR", Code: 400, Fraction: 1})
		_, err := b.signUntilSettled(t, cr)
		if !errors.As(err, &signer.PermanentError{}) {
			t.Fatalf("got %v, want a permanent error", err)
		}
		wantMessage(t, err, "finalizing order", "badCSR (HTTP 400): injected badCSR")
		b.wantEvent(t, "OrderFailed", "badCSR")
		if n := len(b.challenges(t, cr)); n != 0 {
			t.Errorf("%d ACMEChallenges left after the order failed", n)
		}
		if n := b.finalizes(t, cr); n != 1 {
			t.Errorf("the CA was sent %d finalizations, want 1: a refused CSR is not sent again", n)
		}
	})

	b.run(t, "a finalization the CA answers orderNotReady is retried with backoff on the same order", func(t *testing.T) {
		cr := b.placed(t, "notready", "notready.example.com")
		b.present(t, cr)
		b.setRules(t, testenv.FaultRule{Endpoint: testenv.EndpointFinalize, Kind: testenv.FaultProblem, Problem: "orderNotReady", Code: 403, Fraction: 1})
		var err error
		for deadline := time.Now().Add(30 * time.Second); b.finalizes(t, cr) == 0 && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			_, err = b.sign(cr)
		}
		wantRetryable(t, err, "finalizing order", "orderNotReady")
		b.proxy.SetRules(nil)
		if bundle := b.signUntilDone(t, cr); !strings.Contains(string(bundle.ChainPEM), "BEGIN CERTIFICATE") {
			t.Fatalf("no certificate returned: %q", bundle.ChainPEM)
		}
		b.wantNewOrders(t, "notready.example.com", 1)
	})

	b.run(t, "an authorization deactivated before validation fails the request for good, naming it and the way to retry", func(t *testing.T) {
		cr := b.placed(t, "deactivated", "deactivated.example.com")
		// A deactivated authorization makes its order invalid (RFC 8555
		// section 7.1.6); the CA here never deactivates one itself.
		b.setRules(t,
			testenv.FaultRule{Endpoint: testenv.EndpointOrder, Kind: testenv.FaultStatus, Status: "invalid", Fraction: 1, PostAsGet: true},
			testenv.FaultRule{Endpoint: testenv.EndpointAuthorization, Kind: testenv.FaultStatus, Status: "deactivated", Fraction: 1, PostAsGet: true})
		_, err := b.sign(cr)
		if !errors.As(err, &signer.PermanentError{}) {
			t.Fatalf("got %v, want a permanent error", err)
		}
		wantMessage(t, err, "the CA marked order "+b.order(t, cr).Status.URL+" invalid", "deactivated.example.com: the authorization was deactivated before it was validated", "cmctl renew")
		b.wantEvent(t, "OrderFailed", "deactivated")
		if n := len(b.challenges(t, cr)); n != 0 {
			t.Errorf("%d ACMEChallenges left after the order failed", n)
		}
		b.wantNewOrders(t, "deactivated.example.com", 1)
	})

	b.run(t, "an authorization that expired while pending is replaced with a new order, not failed", func(t *testing.T) {
		cr := b.placed(t, "authzexpired", "authzexpired.example.com")
		url := b.order(t, cr).Status.URL
		b.setRules(t,
			testenv.FaultRule{Endpoint: testenv.EndpointOrder, Kind: testenv.FaultStatus, Status: "invalid", Fraction: 1, PostAsGet: true},
			testenv.FaultRule{Endpoint: testenv.EndpointAuthorization, Kind: testenv.FaultStatus, Status: "expired", Fraction: 1, PostAsGet: true})
		_, err := b.sign(cr)
		wantPending(t, err, "order "+url+" is invalid: the authorizations for authzexpired.example.com expired before they were validated", "placing a new order")
		b.wantEvent(t, "OrderExpired", "past the CA's pending lifetime")
		b.wantNoEvent(t, "OrderFailed")
		b.proxy.SetRules(nil)
		b.release(t, cr)
		_, err = b.sign(cr)
		wantPending(t, err, "publishing routes")
		b.wantNewOrders(t, "authzexpired.example.com", 2)
	})

	b.run(t, "a validation the CA fails fails the request for good, naming the host", func(t *testing.T) {
		cr := b.request(t, b.failing, "invalid", "invalid.example.com")
		_, err := b.sign(cr)
		wantPending(t, err, "publishing routes")
		b.present(t, cr)
		_, err = b.signUntilSettled(t, cr)
		if !errors.As(err, &signer.PermanentError{}) {
			t.Fatalf("got %v, want a permanent error", err)
		}
		wantMessage(t, err, "invalid.example.com")
		if n := len(b.challenges(t, cr)); n != 0 {
			t.Errorf("%d ACMEChallenges left after the order failed", n)
		}
		// The CA's own record of it, which the chaos runs count.
		if n := len(b.strict.FailedValidations()); n != 1 {
			t.Errorf("Pebble's log records %d failed validations, want 1", n)
		}
	})

	b.run(t, "an order gone at the CA is replaced", func(t *testing.T) {
		cr := b.placed(t, "gone", "gone.example.com")
		order := b.order(t, cr)
		order.Status.URL = strings.TrimSuffix(b.proxy.DirectoryURL, "/dir") + "/my-order/no-such-order"
		if err := b.api.Client.Status().Update(context.Background(), order); err != nil {
			t.Fatal(err)
		}
		gone := order.Status.URL
		_, err := b.sign(cr)
		wantPending(t, err, "order "+gone+" is gone at the CA")
		b.wantEvent(t, "OrderReset", "is gone at the CA")
		b.release(t, cr)
		_, err = b.sign(cr)
		wantPending(t, err, "publishing routes")
		b.wantNewOrders(t, "gone.example.com", 2)
	})

	b.run(t, "an order of another account is replaced", func(t *testing.T) {
		cr := b.placed(t, "account", "account.example.com")
		order := b.order(t, cr)
		order.Status.AccountURI = "https://ca.example/acct/other"
		if err := b.api.Client.Status().Update(context.Background(), order); err != nil {
			t.Fatal(err)
		}
		_, err := b.sign(cr)
		b.wantEvent(t, "OrderReset", "belongs to account https://ca.example/acct/other")
		// The old order's challenge, whose routes the challenge owns, went
		// at once (no finalizer): the new order's is created in the same pass.
		wantPending(t, err, "publishing routes")
		b.wantNewOrders(t, "account.example.com", 2)
	})

	b.run(t, "a rejected identifier fails the request for good", func(t *testing.T) {
		cr := b.request(t, b.failing, "blocked", "blocked.example.com")
		_, err := b.sign(cr)
		if !errors.As(err, &signer.PermanentError{}) {
			t.Fatalf("got %v, want a permanent error", err)
		}
		wantMessage(t, err, "rejectedIdentifier", "blocked.example.com")
	})

	b.run(t, "rate limited: the request waits, and the account asks nothing before Retry-After", func(t *testing.T) {
		b.proxy.SetRules([]testenv.FaultRule{{Endpoint: testenv.EndpointNewOrder, Kind: testenv.FaultRateLimited, Fraction: 1, RetryAfter: 2 * time.Second}})
		cr := b.request(t, b.valid, "limited", "limited.example.com")
		other := b.request(t, b.valid, "limited-other", "other.limited.example.com")
		_, err := b.sign(cr)
		var pending signer.PendingError
		if !errors.As(err, &pending) || pending.RequeueAfter < time.Second || pending.RequeueAfter > 3*time.Second {
			t.Fatalf("got %v (requeue after %s), want a pending error retrying after about 2 s", err, pending.RequeueAfter)
		}
		before := len(b.proxy.Requests())
		_, err = b.sign(other)
		wantPending(t, err, "the CA asked this account to wait until")
		if sent := len(b.proxy.Requests()) - before; sent != 0 {
			t.Errorf("%d requests sent to the CA while the account was told to wait", sent)
		}
		b.proxy.SetRules(nil)
		time.Sleep(2 * time.Second)
		_, err = b.sign(other)
		wantPending(t, err, "publishing routes")
		if v := b.proxy.HeldViolations(); len(v) > 0 {
			t.Errorf("requests before Retry-After passed: %+v", v)
		}
	})

	b.run(t, "a CA error answering a new order is retried, with no order in doubt", func(t *testing.T) {
		b.proxy.SetRules([]testenv.FaultRule{{Endpoint: testenv.EndpointNewOrder, Kind: testenv.Fault503, Fraction: 1}})
		cr := b.request(t, b.valid, "unavailable", "unavailable.example.com")
		_, err := b.sign(cr)
		wantRetryable(t, err, "serverInternal")
		if order := b.order(t, cr); order.Status.RequestedAt != nil {
			t.Errorf("the CA refused, yet the order's request is still open: %+v", order.Status)
		}
		b.proxy.SetRules(nil)
		_, err = b.sign(cr)
		wantPending(t, err, "publishing routes")
		b.wantNoEvent(t, "OrderUnknown")
		b.wantNewOrders(t, "unavailable.example.com", 1)
	})

	b.run(t, "a lost answer to a new order is reported, and a new order placed", func(t *testing.T) {
		b.proxy.SetRules([]testenv.FaultRule{{Endpoint: testenv.EndpointNewOrder, Kind: testenv.FaultReset, Fraction: 1, AfterCA: true}})
		cr := b.request(t, b.valid, "lost", "lost.example.com")
		_, err := b.sign(cr)
		wantRetryable(t, err, "creating an order for lost.example.com")
		if order := b.order(t, cr); order.Status.RequestedAt == nil {
			t.Errorf("the answer was lost, yet the ACMEOrder does not say an order may exist: %+v", order.Status)
		}
		b.proxy.SetRules(nil)
		_, err = b.sign(cr)
		wantPending(t, err, "publishing routes")
		b.wantEvent(t, "OrderUnknown", "got no recorded answer")
		b.wantNewOrders(t, "lost.example.com", 2)
	})

	b.run(t, "a lost answer to a challenge's acceptance does not fail the request", func(t *testing.T) {
		// Two names: the pass that loses the first acceptance's answer
		// stops there, so the order is still pending on the next pass.
		cr := b.placed(t, "accepted", "a.accepted.example.com", "b.accepted.example.com")
		b.present(t, cr)
		b.proxy.SetRules([]testenv.FaultRule{{Endpoint: testenv.EndpointChallenge, Kind: testenv.FaultReset, Fraction: 1, AfterCA: true}})
		_, err := b.sign(cr)
		wantRetryable(t, err, "asking the CA to validate ", ".accepted.example.com")
		// Asked again, the CA refuses; reading the challenge's state fails
		// too: the request is retried, not failed.
		b.proxy.SetRules([]testenv.FaultRule{{Endpoint: testenv.EndpointChallenge, Kind: testenv.Fault500, Fraction: 1, PostAsGet: true}})
		_, err = b.sign(cr)
		wantRetryable(t, err, "Cannot update challenge", "reading the challenge's state failed")
		b.proxy.SetRules(nil)
		// The CA validated meanwhile and refuses a second acceptance.
		b.signUntilDone(t, cr)
		b.wantNewOrders(t, "a.accepted.example.com,b.accepted.example.com", 1)
	})

	b.run(t, "a server error accepting a challenge is retried, without reading the challenge", func(t *testing.T) {
		cr := b.placed(t, "accept500", "accept500.example.com")
		b.present(t, cr)
		b.proxy.SetRules([]testenv.FaultRule{{Endpoint: testenv.EndpointChallenge, Kind: testenv.Fault500, Fraction: 1}})
		before := b.count(testenv.EndpointChallenge, "accept500.example.com")
		_, err := b.sign(cr)
		b.proxy.SetRules(nil)
		wantRetryable(t, err, "asking the CA to validate accept500.example.com", "serverInternal")
		if n := b.count(testenv.EndpointChallenge, "accept500.example.com") - before; n != 1 {
			t.Errorf("%d requests to the challenge, want only the acceptance", n)
		}
		b.signUntilDone(t, cr)
	})

	b.run(t, "an order whose URL could not be recorded is recorded on the next pass, not placed again", func(t *testing.T) {
		cr := b.placedUnrecorded(t, "unrecorded", "unrecorded.example.com")
		if order := b.order(t, cr); order.Status.URL != "" {
			t.Fatalf("the failed write still recorded %s", order.Status.URL)
		}
		_, err := b.sign(cr)
		wantPending(t, err, "publishing routes")
		if order := b.order(t, cr); order.Status.URL == "" || order.Status.RequestedAt != nil {
			t.Errorf("ACMEOrder status %+v, want the kept order recorded", order.Status)
		}
		b.wantNewOrders(t, "unrecorded.example.com", 1)
	})

	b.run(t, "an order asked for as its ACMEOrder was created and never recorded is reported by the next replica, and a new order placed", func(t *testing.T) {
		cr := b.placedUnrecorded(t, "crashed", "crashed.example.com")
		// The replica stops; the one taking over remembers nothing.
		stopped := b.signer
		b.signer = b.newSigner(nil)
		t.Cleanup(func() { b.signer = stopped })
		_, err := b.sign(cr)
		wantPending(t, err, "publishing routes")
		b.wantEvent(t, "OrderUnknown", "got no recorded answer")
		b.wantNewOrders(t, "crashed.example.com", 2)
	})

	b.run(t, "an ACMEOrder read from a cache that is behind places no second order", func(t *testing.T) {
		cr := b.request(t, b.valid, "stale", "stale.example.com")
		_, err := b.sign(cr) // creates the ACMEOrder and places the order
		wantPending(t, err, "publishing routes")
		stale := b.order(t, cr)
		stale.Status = v1alpha1.ACMEOrderStatus{} // as read before the order was recorded
		stale.ResourceVersion = b.olderVersion(t, cr)
		b.cl.serveStale(stale)
		_, err = b.sign(cr)
		wantPending(t, err, "changed meanwhile")
		b.cl.serveStale(nil)
		b.wantNoEvent(t, "OrderUnknown")
		b.wantNewOrders(t, "stale.example.com", 1)
	})

	b.run(t, "badNonce answers are retried at once, three times", func(t *testing.T) {
		b.proxy.SetRules([]testenv.FaultRule{{Endpoint: testenv.EndpointNewOrder, Kind: testenv.FaultBadNonce, Fraction: 1}})
		cr := b.request(t, b.valid, "nonce", "nonce.example.com")
		before := b.count(testenv.EndpointNewOrder, "nonce.example.com")
		_, err := b.sign(cr)
		wantRetryable(t, err, "badNonce")
		if n := b.count(testenv.EndpointNewOrder, "nonce.example.com") - before; n != 4 {
			t.Errorf("%d new-order requests, want the first and 3 retries", n)
		}
		b.proxy.SetRules(nil)
		_, err = b.sign(cr)
		wantPending(t, err, "publishing routes")
	})

	b.run(t, "a CA error reading the order keeps the order", func(t *testing.T) {
		cr := b.placed(t, "reading", "reading.example.com")
		url := b.order(t, cr).Status.URL
		b.proxy.SetRules([]testenv.FaultRule{{Endpoint: testenv.EndpointOrder, Kind: testenv.Fault500, Fraction: 1}})
		_, err := b.sign(cr)
		wantRetryable(t, err, "reading order "+url)
		b.proxy.SetRules(nil)
		if got := b.order(t, cr).Status.URL; got != url {
			t.Errorf("order URL %q, want %q kept", got, url)
		}
		_, err = b.sign(cr)
		wantPending(t, err, "publishing routes")
		b.wantNewOrders(t, "reading.example.com", 1)
	})
}

// placed creates a CertificateRequest for names from the lenient issuer and
// signs it once: the order is placed and its challenges published.
func (b *orderBench) placed(t *testing.T, name string, names ...string) *cmapi.CertificateRequest {
	t.Helper()
	cr := b.request(t, b.valid, name, names...)
	_, err := b.sign(cr)
	wantPending(t, err, "publishing routes")
	return cr
}

// setRules injects faults until the case ends, also when it fails.
func (b *orderBench) setRules(t *testing.T, rules ...testenv.FaultRule) {
	b.proxy.SetRules(rules)
	t.Cleanup(func() { b.proxy.SetRules(nil) })
}

// signUntilFinalized signs the request, whose challenges are presented,
// until a pass has sent the order's finalization.
func (b *orderBench) signUntilFinalized(t *testing.T, cr *cmapi.CertificateRequest) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); b.finalizes(t, cr) == 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no finalization sent after 30 s")
		}
		if _, err := b.sign(cr); !errors.As(err, &signer.PendingError{}) {
			t.Fatalf("got %v, want pending until finalized", err)
		}
	}
}

// finalizes counts the finalizations sent for the request's order, whatever
// their outcome.
func (b *orderBench) finalizes(t *testing.T, cr *cmapi.CertificateRequest) int {
	t.Helper()
	url := b.order(t, cr).Status.FinalizeURL
	n := 0
	for _, r := range b.proxy.Requests() {
		if r.Endpoint == testenv.EndpointFinalize && url != "" && r.URL == url {
			n++
		}
	}
	return n
}

// readyIssuer creates an ACMEClusterIssuer and checks it, as issuer-lib
// does before any request is signed.
func (b *orderBench) readyIssuer(name, server string, caBundle []byte) *v1alpha1.ACMEClusterIssuer {
	b.t.Helper()
	iss := clusterIssuer(b.t, b.api.Client, name, v1alpha1.ACMEIssuerSpec{Server: server, CABundle: caBundle})
	if err := b.signer.Check(context.Background(), iss); err != nil {
		b.t.Fatalf("checking issuer %s: %v", name, err)
	}
	got := &v1alpha1.ACMEClusterIssuer{}
	if err := b.api.Client.Get(context.Background(), client.ObjectKeyFromObject(iss), got); err != nil {
		b.t.Fatal(err)
	}
	return got
}

// request creates a CertificateRequest for names from iss.
func (b *orderBench) request(t *testing.T, iss *v1alpha1.ACMEClusterIssuer, name string, names ...string) *cmapi.CertificateRequest {
	t.Helper()
	cr := &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: orderNamespace, Name: name},
		Spec: cmapi.CertificateRequestSpec{
			Request:   csrPEM(t, &x509.CertificateRequest{DNSNames: names}),
			IssuerRef: cmmeta.IssuerReference{Group: v1alpha1.GroupVersion.Group, Kind: "ACMEClusterIssuer", Name: iss.Name},
		},
	}
	mustCreate(t, b.api.Client, cr)
	return cr
}

func (b *orderBench) sign(cr *cmapi.CertificateRequest) (signer.PEMBundle, error) {
	return b.signWith(b.signer, cr)
}

// signWith signs the request with a signer of the case's own.
func (b *orderBench) signWith(s *Signer, cr *cmapi.CertificateRequest) (signer.PEMBundle, error) {
	iss := &v1alpha1.ACMEClusterIssuer{}
	if err := b.api.Client.Get(context.Background(), client.ObjectKey{Name: cr.Spec.IssuerRef.Name}, iss); err != nil {
		return signer.PEMBundle{}, err
	}
	return s.Sign(context.Background(), signer.CertificateRequestObjectFromCertificateRequest(cr), iss)
}

// newSigner is a signer on the bench's client, recorder and namespace, with
// what set changes (nil: nothing); a new one remembers nothing, as a
// replica that takes over.
func (b *orderBench) newSigner(set func(*Options)) *Signer {
	o := Options{Client: b.cl, Secrets: b.api.Client, Events: b.events, ClusterResourceNamespace: "istio-acme-issuer", UserAgent: "test"}
	if set != nil {
		set(&o)
	}
	return NewSigner(o)
}

// placedUnrecorded creates a request and signs it once, the write of its
// new order's URL failing: the order is placed at the CA and kept only in
// this signer's memory.
func (b *orderBench) placedUnrecorded(t *testing.T, name string, names ...string) *cmapi.CertificateRequest {
	t.Helper()
	cr := b.request(t, b.valid, name, names...)
	b.cl.failNextStatusWrite(func(obj client.Object) bool {
		o, ok := obj.(*v1alpha1.ACMEOrder)
		return ok && o.Status.URL != ""
	})
	_, err := b.sign(cr)
	wantRetryable(t, err, "kept in memory")
	return cr
}

// signUntilSettled signs until the result is not pending.
func (b *orderBench) signUntilSettled(t *testing.T, cr *cmapi.CertificateRequest) (signer.PEMBundle, error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		bundle, err := b.sign(cr)
		if !errors.As(err, &signer.PendingError{}) {
			return bundle, err
		}
		if time.Now().After(deadline) {
			t.Fatalf("still pending after 30 s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (b *orderBench) signUntilDone(t *testing.T, cr *cmapi.CertificateRequest) signer.PEMBundle {
	t.Helper()
	bundle, err := b.signUntilSettled(t, cr)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	return bundle
}

func (b *orderBench) order(t *testing.T, cr *cmapi.CertificateRequest) *v1alpha1.ACMEOrder {
	t.Helper()
	o := &v1alpha1.ACMEOrder{}
	if err := b.api.Client.Get(context.Background(), client.ObjectKeyFromObject(cr), o); err != nil {
		t.Fatalf("reading ACMEOrder %s: %v", cr.Name, err)
	}
	return o
}

// olderVersion is a resourceVersion of the ACMEOrder before its current one.
func (b *orderBench) olderVersion(t *testing.T, cr *cmapi.CertificateRequest) string {
	t.Helper()
	rv, err := strconv.ParseUint(b.order(t, cr).ResourceVersion, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.FormatUint(rv-1, 10)
}

func (b *orderBench) challenges(t *testing.T, cr *cmapi.CertificateRequest) []v1alpha1.ACMEChallenge {
	t.Helper()
	var list v1alpha1.ACMEChallengeList
	if err := b.api.Client.List(context.Background(), &list, client.InNamespace(orderNamespace)); err != nil {
		t.Fatal(err)
	}
	var out []v1alpha1.ACMEChallenge
	for _, ch := range list.Items {
		if ch.Spec.Order == cr.Name && ch.DeletionTimestamp == nil {
			out = append(out, ch)
		}
	}
	return out
}

// present marks the request's challenges presented, as the challenge
// controller does once the routes answer.
func (b *orderBench) present(t *testing.T, cr *cmapi.CertificateRequest) {
	t.Helper()
	for _, ch := range b.challenges(t, cr) {
		ch.Status.Presented = true
		if err := b.api.Client.Status().Update(context.Background(), &ch); err != nil {
			t.Fatal(err)
		}
	}
}

// release lets the request's deleted challenges go, as the challenge
// controller does once their routes are removed.
func (b *orderBench) release(t *testing.T, cr *cmapi.CertificateRequest) {
	t.Helper()
	var list v1alpha1.ACMEChallengeList
	if err := b.api.Client.List(context.Background(), &list, client.InNamespace(orderNamespace)); err != nil {
		t.Fatal(err)
	}
	for _, ch := range list.Items {
		if ch.Spec.Order != cr.Name || ch.DeletionTimestamp == nil {
			continue
		}
		ch.Finalizers = nil
		if err := b.api.Client.Update(context.Background(), &ch); client.IgnoreNotFound(err) != nil {
			t.Fatal(err)
		}
	}
}

// count is the number of requests to an endpoint for names (sorted,
// comma-separated), whatever their outcome.
func (b *orderBench) count(ep testenv.Endpoint, names string) int {
	n := 0
	for _, r := range b.proxy.Requests() {
		if r.Endpoint == ep && strings.Join(r.Names, ",") == names {
			n++
		}
	}
	return n
}

// wantNewOrders checks how many orders the CA created for names.
func (b *orderBench) wantNewOrders(t *testing.T, names string, want int) {
	t.Helper()
	n := 0
	for _, r := range b.proxy.Requests() {
		if r.Endpoint == testenv.EndpointNewOrder && r.Location != "" && strings.Join(r.Names, ",") == names {
			n++
		}
	}
	if n != want {
		t.Errorf("the CA created %d orders for %s, want %d", n, names, want)
	}
}

func (b *orderBench) accepts(name string) int {
	n := 0
	for _, r := range b.proxy.Requests() {
		if r.Endpoint == testenv.EndpointChallenge && r.Accept && len(r.Names) == 1 && r.Names[0] == name {
			n++
		}
	}
	return n
}

// run runs one case with the Events of earlier cases drained: each case
// sees only its own, and the recorder's buffer never fills.
func (b *orderBench) run(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		for len(b.events.Events) > 0 {
			<-b.events.Events
		}
		f(t)
	})
}

// wantEvent drains the recorded Events and checks that one has the reason
// and the text.
func (b *orderBench) wantEvent(t *testing.T, reason, text string) {
	t.Helper()
	var seen []string
	for {
		select {
		case e := <-b.events.Events:
			seen = append(seen, e)
			if strings.Contains(e, " "+reason+" ") && strings.Contains(e, text) {
				return
			}
		default:
			t.Errorf("no %s Event saying %q; recorded: %q", reason, text, seen)
			return
		}
	}
}

func (b *orderBench) wantNoEvent(t *testing.T, reason string) {
	t.Helper()
	for {
		select {
		case e := <-b.events.Events:
			if strings.Contains(e, " "+reason+" ") {
				t.Errorf("unexpected Event: %s", e)
			}
		default:
			return
		}
	}
}

func wantPending(t *testing.T, err error, parts ...string) {
	t.Helper()
	if !errors.As(err, &signer.PendingError{}) {
		t.Fatalf("got %v, want a pending error", err)
	}
	wantMessage(t, err, parts...)
}

// wantRetryable checks for an error issuer-lib retries with backoff: neither
// pending nor permanent.
func wantRetryable(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil || errors.As(err, &signer.PendingError{}) || errors.As(err, &signer.PermanentError{}) {
		t.Fatalf("got %v, want an error retried with backoff", err)
	}
	wantMessage(t, err, parts...)
}

// flakyClient is the API server's client, except that it can fail the next
// status write of some object (an API server that went away between two
// writes) and can answer an ACMEOrder as a cache that is behind would.
type flakyClient struct {
	client.Client

	mu        sync.Mutex
	failWrite func(client.Object) bool
	stale     *v1alpha1.ACMEOrder
	// statusWrites counts the status writes sent, by object name.
	statusWrites map[string]int
	// challengeLists counts the lists of ACMEChallenges.
	challengeLists atomic.Int32
}

// statusWritesOf is how many status writes of the object were sent.
func (c *flakyClient) statusWritesOf(obj client.Object) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.statusWrites[writeKey(obj)]
}

// writeKey names an object by its type and key.
func writeKey(obj client.Object) string {
	return fmt.Sprintf("%T %s", obj, client.ObjectKeyFromObject(obj))
}

func (c *flakyClient) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if _, ok := list.(*v1alpha1.ACMEChallengeList); ok {
		c.challengeLists.Add(1)
	}
	return c.Client.List(ctx, list, opts...)
}

func (c *flakyClient) failNextStatusWrite(match func(client.Object) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failWrite = match
}

func (c *flakyClient) serveStale(o *v1alpha1.ACMEOrder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stale = o
}

func (c *flakyClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.mu.Lock()
	stale := c.stale
	c.mu.Unlock()
	if o, ok := obj.(*v1alpha1.ACMEOrder); ok && stale != nil && client.ObjectKeyFromObject(stale) == key {
		stale.DeepCopyInto(o)
		return nil
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

func (c *flakyClient) Status() client.SubResourceWriter {
	return flakyStatus{SubResourceWriter: c.Client.Status(), c: c}
}

type flakyStatus struct {
	client.SubResourceWriter
	c *flakyClient
}

func (s flakyStatus) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	s.c.mu.Lock()
	if s.c.statusWrites == nil {
		s.c.statusWrites = map[string]int{}
	}
	s.c.statusWrites[writeKey(obj)]++
	fail := s.c.failWrite != nil && s.c.failWrite(obj)
	if fail {
		s.c.failWrite = nil
	}
	s.c.mu.Unlock()
	if fail {
		return apierrors.NewServiceUnavailable("the API server is restarting")
	}
	return s.SubResourceWriter.Update(ctx, obj, opts...)
}
