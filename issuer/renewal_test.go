package issuer

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/cert-manager/cert-manager/third_party/forked/acme"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/metrics"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// Renewals from the CA's renewal information (RFC 9773) and renewal orders
// that name the certificate they replace, against a real API server and a
// real Pebble, whose management endpoint moves a certificate's window. The
// renewal controller runs on a fake clock, so that "the next check" comes
// when a case says; cert-manager does not run: a case plays its part
// (the Certificate's status, a new CertificateRequest per renewal).
func TestRenewals(t *testing.T) {
	api := testenv.StartAPIServer(t)
	pebble := testenv.StartPebble(t, testenv.PebbleOptions{Env: []string{"PEBBLE_VA_ALWAYS_VALID=1"}})
	b := &orderBench{t: t, api: api, proxy: testenv.StartFaultProxy(t, pebble, 1)}
	noARI := testenv.StartFaultProxy(t, pebble, 2)
	noARI.HideRenewalInfo()
	api.CreateNamespaces(t, "istio-acme-issuer", orderNamespace)
	b.cl = &flakyClient{Client: api.Client}
	b.events = events.NewFakeRecorder(100)
	b.signer = b.newSigner(nil)
	b.valid = b.readyIssuer("ari", b.proxy.DirectoryURL, pebble.ServerCAPEM)
	withoutARI := b.readyIssuer("no-ari", noARI.DirectoryURL, pebble.ServerCAPEM)
	names := []string{"shop.renew.example.com", "www.shop.renew.example.com"}
	crt := certificate(t, api.Client, "shop", b.valid, names...)
	first := b.issueFor(t, crt, "shop-1", names...)
	firstID := ariID(t, first)
	clk := clocktesting.NewFakeClock(time.Now())
	ren := &Renewals{Signer: b.signer, Certificates: api.Client, MinInterval: time.Hour, MaxInterval: 24 * time.Hour, Rand: func() float64 { return 0.5 }, Clock: clk}

	b.run(t, "an issued certificate is recorded for its Certificate and its renewal information read at once", func(t *testing.T) {
		r := renewalOf(t, api.Client, crt)
		st := r.Status
		if st.CertID != firstID || st.Serial == "" || st.NotAfter == nil || !st.NotAfter.Time.Equal(first.NotAfter) || st.AccountURI == "" || st.Request != "shop-1" {
			t.Fatalf("ACMERenewal status %+v, want certificate %s issued for shop-1", st, firstID)
		}
		if len(r.OwnerReferences) != 1 || r.OwnerReferences[0].UID != crt.UID || r.Spec.IssuerRef.Name != "ari" {
			t.Errorf("ACMERenewal owned by %+v for issuer %+v, want the Certificate and issuer ari", r.OwnerReferences, r.Spec.IssuerRef)
		}
		if n := b.cl.statusWritesOf(r); n != 0 || r.Generation != 1 {
			t.Errorf("ACMERenewal at generation %d after %d status writes, want created with its record in one write", r.Generation, n)
		}
		reconcileRenewal(t, ren, crt)
		st = renewalOf(t, api.Client, crt).Status
		// Pebble's own window: a day either side of two thirds of the
		// validity.
		ideal := first.NotAfter.Add(-first.NotAfter.Add(time.Second).Sub(first.NotBefore) / 3)
		if st.SuggestedWindow == nil || st.SuggestedWindow.Start.Sub(ideal.Add(-24*time.Hour)).Abs() > 2*time.Second {
			t.Fatalf("window %+v (%s), want one starting a day before %s", st.SuggestedWindow, st.Message, ideal)
		}
		mid := st.SuggestedWindow.Start.Add(st.SuggestedWindow.End.Sub(st.SuggestedWindow.Start.Time) / 2).Truncate(time.Second)
		if st.RenewAt == nil || !st.RenewAt.Time.Equal(mid) {
			t.Errorf("renewAt %v, want %s (the drawn point of the window)", st.RenewAt, mid)
		}
		if st.NextCheck == nil || !st.NextCheck.Time.Equal(clk.Now().Add(6*time.Hour).Truncate(time.Second)) {
			t.Errorf("next check %v, want at Pebble's Retry-After of 6 h", st.NextCheck)
		}
		if !strings.Contains(st.Message, "the CA suggests renewing between") {
			t.Errorf("message %q", st.Message)
		}
		reconcileRenewal(t, ren, crt) // not due: the CA is not asked again
		if n := b.proxyCount(b.proxy, testenv.EndpointRenewalInfo); n != 1 {
			t.Errorf("%d renewalInfo requests, want 1", n)
		}
		if issuingCondition(t, api.Client, crt) != nil {
			t.Error("the Certificate was asked to renew inside no window")
		}
	})

	b.run(t, "a window moved into the past is heard at the next check and renews once, with the explanation", func(t *testing.T) {
		// cert-manager's own renewal time is days away (Pebble issues 6 or
		// 90 days, picking a profile when the order names none).
		setCertificateStatus(t, api.Client, crt, first, first.NotAfter.Add(-time.Hour))
		if err := pebble.SetRenewalWindow(certPEM(first), clk.Now().Add(-2*time.Hour), clk.Now().Add(-time.Hour), "https://ca.example/incident-42"); err != nil {
			t.Fatal(err)
		}
		reconcileRenewal(t, ren, crt)
		if issuingCondition(t, api.Client, crt) != nil {
			t.Fatal("renewed before the next check read the moved window")
		}
		before := testutil.ToFloat64(metrics.EarlyRenewals.WithLabelValues("ACMEClusterIssuer", "ari"))
		clk.Step(6 * time.Hour)
		reconcileRenewal(t, ren, crt)
		cond := issuingCondition(t, api.Client, crt)
		if cond == nil || cond.Reason != RenewalReasonWindow || !strings.Contains(cond.Message, "https://ca.example/incident-42") {
			t.Fatalf("Issuing condition %+v, want one set for the CA's window with its explanation", cond)
		}
		b.wantEvent(t, "RenewalWindow", "https://ca.example/incident-42")
		if got := testutil.ToFloat64(metrics.EarlyRenewals.WithLabelValues("ACMEClusterIssuer", "ari")) - before; got != 1 {
			t.Errorf("early renewals counted %v, want 1", got)
		}
		st := renewalOf(t, api.Client, crt).Status
		if st.RenewalRequestedAt == nil || st.ExplanationURL != "https://ca.example/incident-42" {
			t.Errorf("status %+v, want the renewal request and the explanation recorded", st)
		}
		// cert-manager's issuance failed and it cleared the condition: the
		// controller does not ask again for the same certificate.
		clearIssuing(t, api.Client, crt)
		reconcileRenewal(t, ren, crt)
		if issuingCondition(t, api.Client, crt) != nil {
			t.Error("asked twice to renew the same certificate")
		}
	})

	var second *x509.Certificate
	b.run(t, "the renewal's order names the certificate it replaces, and the new certificate is recorded", func(t *testing.T) {
		mark := len(b.proxy.Requests())
		second = b.issueFor(t, crt, "shop-2", names...)
		if got := b.order(t, &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Namespace: orderNamespace, Name: "shop-2"}}).Status.Replaces; got != firstID {
			t.Errorf("ACMEOrder replaces %q, want %q", got, firstID)
		}
		if got := newOrdersSince(b.proxy, mark); len(got) != 1 || got[0] != firstID {
			t.Errorf("new orders sent with replaces %q, want one naming %s", got, firstID)
		}
		if n := len(pebble.Replacements()); n != 1 {
			t.Errorf("Pebble accepted %d replacements, want 1", n)
		}
		b.wantNoEvent(t, "ReplacesRefused")
		st := renewalOf(t, api.Client, crt).Status
		if st.CertID != ariID(t, second) || st.RenewalRequestedAt != nil || st.SuggestedWindow != nil || st.NextCheck == nil || st.NextCheck.After(clk.Now()) {
			t.Errorf("status %+v, want the new certificate recorded and due for a check", st)
		}
	})

	b.run(t, "a CA refusing the replacement still renews, says so once, and the request never offers it again", func(t *testing.T) {
		// The write of the second certificate was lost: the record names
		// the first, which the CA already counts as replaced.
		r := renewalOf(t, api.Client, crt)
		r.Status.CertID = firstID
		if err := api.Client.Update(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		mark := len(b.proxy.Requests())
		cr := b.requestFor(t, crt, "shop-3", names...)
		_, err := b.sign(cr)
		wantPending(t, err, "publishing routes")
		b.wantEvent(t, "ReplacesRefused", "alreadyReplaced")
		if got := newOrdersSince(b.proxy, mark); len(got) != 2 || got[0] != firstID || got[1] != "" {
			t.Errorf("new orders sent with replaces %q, want the refused one then one without", got)
		}
		b.wantNewOrders(t, strings.Join(names, ","), 3)
		// The order goes away at the CA; the one placed again does not
		// name the certificate a second time.
		order := b.order(t, cr)
		if err := b.signer.resetOrder(context.Background(), order); err != nil {
			t.Fatal(err)
		}
		b.release(t, cr)
		mark = len(b.proxy.Requests())
		_, err = b.sign(cr)
		wantPending(t, err, "publishing routes")
		b.present(t, cr)
		b.signUntilDone(t, cr)
		if got := newOrdersSince(b.proxy, mark); len(got) != 1 || got[0] != "" {
			t.Errorf("the order placed again sent replaces %q, want none", got)
		}
		b.wantNoEvent(t, "ReplacesRefused")
	})

	b.run(t, "a renewal order the CA rate-limits names the certificate again when placed", func(t *testing.T) {
		current := renewalOf(t, api.Client, crt).Status.CertID
		mark := len(b.proxy.Requests())
		b.proxy.SetRules([]testenv.FaultRule{{Endpoint: testenv.EndpointNewOrder, Kind: testenv.FaultRateLimited, Fraction: 1, RetryAfter: time.Second}})
		cr := b.requestFor(t, crt, "shop-4", names...)
		if _, err := b.sign(cr); err == nil {
			t.Fatal("signing through a rate-limited CA succeeded")
		}
		b.proxy.SetRules(nil)
		if got := b.order(t, cr).Status.Replaces; got != "" {
			t.Errorf("ACMEOrder replaces %q after an attempt that created no order, want none", got)
		}
		time.Sleep(1100 * time.Millisecond) // the CA's Retry-After
		_, err := b.sign(cr)
		wantPending(t, err, "publishing routes")
		if got := newOrdersSince(b.proxy, mark); len(got) != 2 || got[0] != current || got[1] != current {
			t.Errorf("new orders sent with replaces %q, want both naming %s", got, current)
		}
		b.wantNoEvent(t, "ReplacesRefused")
		b.present(t, cr)
		b.signUntilDone(t, cr)
	})

	b.run(t, "a Certificate that does not hold the recorded certificate is not renewed on its behalf", func(t *testing.T) {
		other := certificate(t, api.Client, "elsewhere", b.valid, "elsewhere.renew.example.com")
		cert := b.issueFor(t, other, "elsewhere-1", "elsewhere.renew.example.com")
		// The Secret holds a certificate some other issuer signed later.
		setCertificateStatus(t, api.Client, other, cert, time.Time{})
		if err := pebble.SetRenewalWindow(certPEM(cert), clk.Now().Add(-2*time.Hour), clk.Now().Add(-time.Hour), ""); err != nil {
			t.Fatal(err)
		}
		held := &cmapi.Certificate{}
		if err := api.Client.Get(context.Background(), client.ObjectKeyFromObject(other), held); err != nil {
			t.Fatal(err)
		}
		held.Status.NotAfter = &metav1.Time{Time: cert.NotAfter.Add(24 * time.Hour)}
		if err := api.Client.Status().Update(context.Background(), held); err != nil {
			t.Fatal(err)
		}
		reconcileRenewal(t, ren, other)
		if issuingCondition(t, api.Client, other) != nil {
			t.Error("renewed a Certificate that holds another certificate")
		}
		if msg := renewalOf(t, api.Client, other).Status.Message; !strings.Contains(msg, "the Certificate does not hold it") {
			t.Errorf("message %q, want it to say the Certificate holds another certificate", msg)
		}
	})

	b.run(t, "a day of a certificate's life reads the CA four times, at its 6 h Retry-After", func(t *testing.T) {
		daily := certificate(t, api.Client, "daily", b.valid, "daily.renew.example.com")
		b.issueFor(t, daily, "daily-1", "daily.renew.example.com")
		before := b.proxyCount(b.proxy, testenv.EndpointRenewalInfo)
		for range 24 {
			reconcileRenewal(t, ren, daily)
			clk.Step(time.Hour)
		}
		reads := b.proxyCount(b.proxy, testenv.EndpointRenewalInfo) - before
		t.Logf("renewalInfo requests in a day of hourly wake-ups: %d", reads)
		if reads != 4 {
			t.Errorf("%d renewalInfo requests in a day, want 4", reads)
		}
	})

	b.run(t, "a CA without renewal information changes nothing", func(t *testing.T) {
		plain := certificate(t, api.Client, "plain", withoutARI, "plain.renew.example.com")
		b.issueForIssuer(t, withoutARI, plain, "plain-1", "plain.renew.example.com")
		reconcileRenewal(t, ren, plain)
		st := renewalOf(t, api.Client, plain).Status
		if st.SuggestedWindow != nil || st.RenewAt != nil || !strings.Contains(st.Message, "offers no renewal information") {
			t.Errorf("status %+v, want no window and the reason", st)
		}
		if st.NextCheck == nil || !st.NextCheck.Time.Equal(clk.Now().Add(24*time.Hour).Truncate(time.Second)) {
			t.Errorf("next check %v, want after the longest interval", st.NextCheck)
		}
		if n := b.proxyCount(noARI, testenv.EndpointRenewalInfo); n != 0 {
			t.Errorf("%d renewalInfo requests to a CA without it", n)
		}
		mark := len(noARI.Requests())
		b.issueForIssuer(t, withoutARI, plain, "plain-2", "plain.renew.example.com")
		if got := newOrdersSince(noARI, mark); len(got) != 1 || got[0] != "" {
			t.Errorf("renewal orders sent replaces %q to a CA without ARI", got)
		}
	})

	b.run(t, "with the renewal controller set up, the first reading is done in the issuance's own status write", func(t *testing.T) {
		// A controller on the real time: the cases above moved ren's clock
		// days ahead.
		now := &Renewals{Signer: b.signer, Certificates: api.Client, MinInterval: time.Hour, MaxInterval: 24 * time.Hour, Rand: func() float64 { return 0.5 }}
		b.signer.checkRenewal = now.check
		defer func() { b.signer.checkRenewal = nil }()
		inline := certificate(t, api.Client, "inline", b.valid, "inline.renew.example.com")
		reads := b.proxyCount(b.proxy, testenv.EndpointRenewalInfo)
		b.issueFor(t, inline, "inline-1", "inline.renew.example.com")
		r := renewalOf(t, api.Client, inline)
		st := r.Status
		if st.CertID == "" || st.SuggestedWindow == nil || st.RenewAt == nil || st.NextCheck == nil || !st.NextCheck.After(time.Now().Add(time.Hour)) {
			t.Fatalf("ACMERenewal status %+v, want the certificate recorded with its window and a next check hours away", st)
		}
		if n := b.proxyCount(b.proxy, testenv.EndpointRenewalInfo) - reads; n != 1 {
			t.Errorf("%d renewalInfo requests for the issuance, want 1", n)
		}
		// The controller, woken by the new record, finds nothing due: no
		// request to the CA, no write.
		version := r.ResourceVersion
		reconcileRenewal(t, now, inline)
		if n := b.proxyCount(b.proxy, testenv.EndpointRenewalInfo) - reads; n != 1 {
			t.Errorf("%d renewalInfo requests after the controller's pass, want still 1", n)
		}
		if got := renewalOf(t, api.Client, inline).ResourceVersion; got != version {
			t.Errorf("the controller's pass wrote the ACMERenewal again (resourceVersion %s, was %s)", got, version)
		}
	})
}

// issueFor issues a certificate for the Certificate through the issuer with
// ARI, as cert-manager's request for it would.
func (b *orderBench) issueFor(t *testing.T, crt *cmapi.Certificate, name string, names ...string) *x509.Certificate {
	t.Helper()
	return b.issueForIssuer(t, b.valid, crt, name, names...)
}

func (b *orderBench) issueForIssuer(t *testing.T, iss *v1alpha1.ACMEClusterIssuer, crt *cmapi.Certificate, name string, names ...string) *x509.Certificate {
	t.Helper()
	cr := b.requestFor(t, crt, name, names...)
	cr.Spec.IssuerRef.Name = iss.Name
	if err := b.api.Client.Update(context.Background(), cr); err != nil {
		t.Fatal(err)
	}
	_, err := b.sign(cr)
	wantPending(t, err, "publishing routes")
	b.present(t, cr)
	bundle := b.signUntilDone(t, cr)
	block, _ := pem.Decode(bundle.ChainPEM)
	if block == nil {
		t.Fatalf("no certificate in %q", bundle.ChainPEM)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// requestFor creates a CertificateRequest owned by the Certificate, as
// cert-manager does.
func (b *orderBench) requestFor(t *testing.T, crt *cmapi.Certificate, name string, names ...string) *cmapi.CertificateRequest {
	t.Helper()
	cr := &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: orderNamespace, Name: name, OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "cert-manager.io/v1", Kind: "Certificate", Name: crt.Name, UID: crt.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
		}}},
		Spec: cmapi.CertificateRequestSpec{
			Request:   csrPEM(t, &x509.CertificateRequest{DNSNames: names}),
			IssuerRef: crt.Spec.IssuerRef,
		},
	}
	mustCreate(t, b.api.Client, cr)
	return cr
}

func (b *orderBench) proxyCount(p *testenv.FaultProxy, ep testenv.Endpoint) int {
	n := 0
	for _, r := range p.Requests() {
		if r.Endpoint == ep {
			n++
		}
	}
	return n
}

// newOrdersSince is the replaces of each new order sent after the mark.
func newOrdersSince(p *testenv.FaultProxy, mark int) []string {
	var out []string
	for _, r := range p.Requests()[mark:] {
		if r.Endpoint == testenv.EndpointNewOrder {
			out = append(out, r.Replaces)
		}
	}
	return out
}

func certificate(t *testing.T, cl client.Client, name string, iss *v1alpha1.ACMEClusterIssuer, names ...string) *cmapi.Certificate {
	t.Helper()
	crt := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: orderNamespace, Name: name},
		Spec: cmapi.CertificateSpec{
			SecretName: name + "-tls",
			DNSNames:   names,
			IssuerRef:  cmmeta.IssuerReference{Group: v1alpha1.GroupVersion.Group, Kind: "ACMEClusterIssuer", Name: iss.Name},
		},
	}
	mustCreate(t, cl, crt)
	return crt
}

// setCertificateStatus records the certificate in the Certificate's status,
// as cert-manager does once it stored it.
func setCertificateStatus(t *testing.T, cl client.Client, crt *cmapi.Certificate, cert *x509.Certificate, renewal time.Time) {
	t.Helper()
	got := &cmapi.Certificate{}
	if err := cl.Get(context.Background(), client.ObjectKeyFromObject(crt), got); err != nil {
		t.Fatal(err)
	}
	got.Status.NotBefore = &metav1.Time{Time: cert.NotBefore}
	got.Status.NotAfter = &metav1.Time{Time: cert.NotAfter}
	if !renewal.IsZero() {
		got.Status.RenewalTime = &metav1.Time{Time: renewal}
	}
	if err := cl.Status().Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
}

func issuingCondition(t *testing.T, cl client.Client, crt *cmapi.Certificate) *cmapi.CertificateCondition {
	t.Helper()
	got := &cmapi.Certificate{}
	if err := cl.Get(context.Background(), client.ObjectKeyFromObject(crt), got); err != nil {
		t.Fatal(err)
	}
	for _, c := range got.Status.Conditions {
		if c.Type == cmapi.CertificateConditionIssuing && c.Status == cmmeta.ConditionTrue {
			return &c
		}
	}
	return nil
}

func clearIssuing(t *testing.T, cl client.Client, crt *cmapi.Certificate) {
	t.Helper()
	got := &cmapi.Certificate{}
	if err := cl.Get(context.Background(), client.ObjectKeyFromObject(crt), got); err != nil {
		t.Fatal(err)
	}
	got.Status.Conditions = nil
	if err := cl.Status().Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
}

func renewalOf(t *testing.T, cl client.Client, crt *cmapi.Certificate) *v1alpha1.ACMERenewal {
	t.Helper()
	r := &v1alpha1.ACMERenewal{}
	if err := cl.Get(context.Background(), client.ObjectKeyFromObject(crt), r); err != nil {
		t.Fatalf("reading the ACMERenewal of %s: %v", crt.Name, err)
	}
	return r
}

func reconcileRenewal(t *testing.T, r *Renewals, crt *cmapi.Certificate) {
	t.Helper()
	if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKeyFromObject(crt)}); err != nil {
		t.Fatalf("reconciling the renewal of %s: %v", crt.Name, err)
	}
}

func ariID(t *testing.T, cert *x509.Certificate) string {
	t.Helper()
	id, err := acme.CertificateARIID(cert)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func certPEM(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}
