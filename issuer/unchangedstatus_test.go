package issuer

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// countingWriter counts the status patches that reach the API server.
type countingWriter struct {
	client.SubResourceWriter
	patches *int
}

func (w countingWriter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	*w.patches++
	return w.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

// startRequestStatusTest starts an API server holding one
// CertificateRequest, apps/req, whose status the test applies.
func startRequestStatusTest(t *testing.T) (*testenv.APIServer, *cmapi.CertificateRequest) {
	t.Helper()
	api := testenv.StartAPIServer(t)
	api.CreateNamespaces(t, "apps")
	cr := &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "req"},
		Spec: cmapi.CertificateRequestSpec{
			Request:   csrPEM(t, &x509.CertificateRequest{DNSNames: []string{"a.example.com"}}),
			IssuerRef: cmmeta.IssuerReference{Group: v1alpha1.GroupVersion.Group, Kind: "ACMEClusterIssuer", Name: "x"},
		},
	}
	mustCreate(t, api.Client, cr)
	return api, cr
}

// TestUnchangedRequestStatusIsNotWritten applies request statuses as
// issuer-lib v0.11.0 does (server-side apply of the whole status it owns)
// against a real API server, reading the request back as the cache would.
func TestUnchangedRequestStatusIsNotWritten(t *testing.T) {
	api, cr := startRequestStatusTest(t)

	sent := 0
	w := requestStatusWriter{SubResourceWriter: countingWriter{SubResourceWriter: api.Client.Status(), patches: &sent}, cache: api.Client}
	since := metav1.NewTime(time.Now().Truncate(time.Second))
	ready := func(reason, message string, at metav1.Time) cmapi.CertificateRequestCondition {
		return cmapi.CertificateRequestCondition{Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionFalse, Reason: reason, Message: message, LastTransitionTime: &at}
	}
	apply := func(obj client.Object, status any) { applyStatus(t, w, obj, status) }
	target := &cmapi.CertificateRequest{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmapi.SchemeGroupVersion.String(), Kind: cmapi.CertificateRequestKind},
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "req"},
	}
	pending := func(message string, at metav1.Time) cmapi.CertificateRequestStatus {
		return cmapi.CertificateRequestStatus{Conditions: []cmapi.CertificateRequestCondition{ready(cmapi.CertificateRequestReasonPending, message, at)}}
	}

	for _, step := range []struct {
		what   string
		status cmapi.CertificateRequestStatus
		sent   bool
	}{
		{"a first pending message", pending(doubledPendingPrefix+"a.example.com: publishing routes", since), true},
		{"the same message again, prefixed twice as issuer-lib does", pending(doubledPendingPrefix+"a.example.com: publishing routes", since), false},
		{"a new message", pending(pendingPrefix+"a.example.com: the CA is validating", since), true},
		{"the same message with another transition time", pending(pendingPrefix+"a.example.com: the CA is validating", metav1.NewTime(since.Add(time.Minute))), true},
		{"the same condition with a certificate", cmapi.CertificateRequestStatus{
			Conditions:  pending(pendingPrefix+"a.example.com: the CA is validating", metav1.NewTime(since.Add(time.Minute))).Conditions,
			Certificate: []byte("-----BEGIN CERTIFICATE-----\n"),
		}, true},
		{"a failure with the same message", cmapi.CertificateRequestStatus{
			Conditions:  []cmapi.CertificateRequestCondition{ready(cmapi.CertificateRequestReasonFailed, pendingPrefix+"a.example.com: the CA is validating", metav1.NewTime(since.Add(time.Minute)))},
			FailureTime: &since,
		}, true},
		{"the failure's condition again, alone", cmapi.CertificateRequestStatus{
			Conditions: []cmapi.CertificateRequestCondition{ready(cmapi.CertificateRequestReasonFailed, pendingPrefix+"a.example.com: the CA is validating", metav1.NewTime(since.Add(time.Minute)))},
		}, true},
	} {
		before := sent
		apply(target, step.status)
		if got := sent > before; got != step.sent {
			t.Errorf("%s: sent %v, want %v", step.what, got, step.sent)
		}
	}
	wantReadyReason(t, api.Client, cr, cmapi.CertificateRequestReasonFailed)

	// Another kind's status is always sent.
	iss := &v1alpha1.ACMEClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: v1alpha1.ACMEIssuerSpec{Server: "https://ca.example/directory", PrivateKeySecretRef: v1alpha1.SecretKeySelector{Name: "k"}}}
	mustCreate(t, api.Client, iss)
	iss.TypeMeta = metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "ACMEClusterIssuer"}
	before := sent
	for range 2 {
		apply(iss, map[string]any{})
	}
	if sent-before != 2 {
		t.Errorf("%d of 2 issuer status applies sent, want both", sent-before)
	}
}

// TestProgressIsWrittenOnceItLasts: a request's progress message is written
// once it has stayed the same for quietProgress, a step passed through
// faster is never written, and the outcome is written at once.
func TestProgressIsWrittenOnceItLasts(t *testing.T) {
	api, cr := startRequestStatusTest(t)

	sent := 0
	clk := clocktesting.NewFakePassiveClock(time.Now())
	w := requestStatusWriter{SubResourceWriter: countingWriter{SubResourceWriter: api.Client.Status(), patches: &sent}, cache: api.Client, progress: newProgressMemo(), clock: clk}
	since := metav1.NewTime(time.Now().Truncate(time.Second))
	target := &cmapi.CertificateRequest{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmapi.SchemeGroupVersion.String(), Kind: cmapi.CertificateRequestKind},
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "req"},
	}
	apply := func(status cmapi.CertificateRequestStatus) { applyStatus(t, w, target, status) }
	pending := func(message string) cmapi.CertificateRequestStatus {
		return cmapi.CertificateRequestStatus{Conditions: []cmapi.CertificateRequestCondition{{
			Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionFalse, Reason: cmapi.CertificateRequestReasonPending, Message: message, LastTransitionTime: &since,
		}}}
	}
	for _, step := range []struct {
		what    string
		advance time.Duration
		status  cmapi.CertificateRequestStatus
		sent    bool
	}{
		{"a first progress message", 0, pending(pendingPrefix + "a.example.com: publishing routes"), false},
		{"the same, a second later", time.Second, pending(pendingPrefix + "a.example.com: publishing routes"), false},
		{"the next step, before the first lasted", 500 * time.Millisecond, pending(pendingPrefix + "a.example.com: the CA is validating"), false},
		{"the next step, not lasted yet", quietProgress - time.Millisecond, pending(pendingPrefix + "a.example.com: the CA is validating"), false},
		{"the next step, lasted", time.Millisecond, pending(pendingPrefix + "a.example.com: the CA is validating"), true},
		{"the same again", time.Second, pending(pendingPrefix + "a.example.com: the CA is validating"), false},
		{"the certificate, at once", 0, cmapi.CertificateRequestStatus{
			Conditions:  []cmapi.CertificateRequestCondition{{Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionTrue, Reason: cmapi.CertificateRequestReasonIssued, Message: "issued", LastTransitionTime: &since}},
			Certificate: []byte("-----BEGIN CERTIFICATE-----\n"),
		}, true},
	} {
		clk.SetTime(clk.Now().Add(step.advance))
		before := sent
		apply(step.status)
		if got := sent > before; got != step.sent {
			t.Errorf("%s: sent %v, want %v", step.what, got, step.sent)
		}
	}
	wantReadyReason(t, api.Client, cr, cmapi.CertificateRequestReasonIssued)

	// Each held-back message woke the request once it would have lasted,
	// on real time: a request may have no pass of its own coming.
	select {
	case ev := <-w.progress.wake:
		if ev.Object.GetNamespace() != "apps" || ev.Object.GetName() != "req" {
			t.Errorf("woke %s/%s, want apps/req", ev.Object.GetNamespace(), ev.Object.GetName())
		}
	case <-time.After(quietProgress + 5*time.Second):
		t.Error("a held-back progress message never woke its request")
	}

	// An issuer's pending condition is its status, not a request's
	// progress: sent at once.
	iss := &v1alpha1.ACMEClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: v1alpha1.ACMEIssuerSpec{Server: "https://ca.example/directory", PrivateKeySecretRef: v1alpha1.SecretKeySelector{Name: "k"}}}
	mustCreate(t, api.Client, iss)
	iss.TypeMeta = metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "ACMEClusterIssuer"}
	before := sent
	applyStatus(t, w, iss, pending("registering"))
	if sent == before {
		t.Error("an issuer's status apply with a pending condition was held back as a request's progress")
	}
}

// applyStatus applies status to obj (which carries its kind) through w, as
// issuer-lib does: server-side apply of the whole status it owns.
func applyStatus(t *testing.T, w requestStatusWriter, obj client.Object, status any) {
	t.Helper()
	gvk := obj.GetObjectKind().GroupVersionKind()
	data, err := json.Marshal(map[string]any{
		"apiVersion": gvk.GroupVersion().String(),
		"kind":       gvk.Kind,
		"metadata":   map[string]string{"name": obj.GetName(), "namespace": obj.GetNamespace()},
		"status":     status,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Patch(context.Background(), obj, client.RawPatch("application/apply-patch+yaml", data), client.ForceOwnership, client.FieldOwner(FieldOwner)); err != nil {
		t.Fatal(err)
	}
}

// wantReadyReason checks that the stored request's only condition is
// Ready with reason.
func wantReadyReason(t *testing.T, cl client.Client, cr *cmapi.CertificateRequest, reason string) {
	t.Helper()
	var got cmapi.CertificateRequest
	if err := cl.Get(context.Background(), client.ObjectKeyFromObject(cr), &got); err != nil {
		t.Fatal(err)
	}
	if c := got.Status.Conditions; len(c) != 1 || c[0].Reason != reason {
		t.Errorf("the request's status ended as %+v, want Ready reason %s", got.Status, reason)
	}
}
