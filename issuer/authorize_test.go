package issuer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cert-manager/issuer-lib/controllers/signer"
	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
	"github.com/istio-acme/istio-acme-issuer/solver"
)

// The tenancy rule in the signer, with the real rule (solver's
// HostAuthorizer) against a real API server and Pebble: a request whose
// namespace may not get a name places no order and writes nothing; a grant
// admits it on the next pass; a refusal past its grace fails the request.
func TestTenancyRefusesBeforeAnyOrder(t *testing.T) {
	b := &orderBench{t: t, api: testenv.StartAPIServer(t)}
	lenient := testenv.StartPebble(t, testenv.PebbleOptions{Env: []string{"PEBBLE_VA_ALWAYS_VALID=1"}})
	b.proxy = testenv.StartFaultProxy(t, lenient, 1)
	b.api.CreateNamespaces(t, "istio-acme-issuer", orderNamespace, "istio-system", "team-b")
	b.cl = &flakyClient{Client: b.api.Client}
	b.events = events.NewFakeRecorder(100)
	ctx := context.Background()

	// Istio's default ingress gateway: its pod and Service.
	ingress := map[string]string{"istio": "ingressgateway"}
	mustCreate(t, b.api.Client, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio-ingressgateway-0", Labels: ingress},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "istio-proxy", Image: "istio/proxyv2"}}},
	})
	mustCreate(t, b.api.Client, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio-ingressgateway"},
		Spec:       corev1.ServiceSpec{Selector: ingress, Ports: []corev1.ServicePort{{Name: "http2", Port: 80}}},
	})
	// team-b serves secure.b.example.com on 443 only, from its own Gateway.
	teamB := &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "team-b", Name: "secure"}}
	teamB.Spec.Selector = ingress
	teamB.Spec.Servers = []*istioapi.Server{{
		Port:  &istioapi.Port{Number: 443, Name: "https", Protocol: "HTTPS"},
		Hosts: []string{"./secure.b.example.com"},
		Tls:   &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: "secure-b-tls"},
	}}
	mustCreate(t, b.api.Client, teamB)

	authz := &solver.HostAuthorizer{Client: b.api.Client, Discovery: &solver.GatewayDiscovery{Reader: b.api.Client}}
	now := time.Now()
	clock := &stepClock{now: now}
	b.signer = b.newSigner(func(o *Options) { o.Authorize, o.RefusalGrace, o.Clock = authz.Authorize, time.Hour, clock })
	b.valid = b.readyIssuer("lenient", b.proxy.DirectoryURL, lenient.ServerCAPEM)

	cr := b.request(t, b.valid, "taken", "secure.b.example.com", "free.example.com")
	sent := len(b.proxy.Requests())
	for range 3 {
		_, err := b.sign(cr)
		wantPending(t, err, "namespace apps may not get secure.b.example.com",
			"the server of Gateway team-b/secure on port 443 (hosts ./secure.b.example.com)",
			"namespace apps may not get free.example.com: no Gateway server",
			"HostnameGrant", "no order is placed")
	}
	if err := b.api.Client.Get(ctx, client.ObjectKeyFromObject(cr), &v1alpha1.ACMEOrder{}); !apierrors.IsNotFound(err) {
		t.Errorf("an ACMEOrder exists for the refused request (%v)", err)
	}
	b.wantNewOrders(t, "free.example.com,secure.b.example.com", 0)
	if n := len(b.proxy.Requests()) - sent; n != 0 {
		t.Errorf("the refused request sent %d requests to the CA, want none", n)
	}
	if !strings.Contains(drainEvents(b.events), "HostNotAllowed") {
		t.Error("no HostNotAllowed Event for the refused request")
	}

	// The platform grants the names: the next pass places the order.
	mustCreate(t, b.api.Client, &v1alpha1.HostnameGrant{
		ObjectMeta: metav1.ObjectMeta{Name: "apps"},
		Spec:       v1alpha1.HostnameGrantSpec{Namespaces: []string{orderNamespace}, DNSNames: []string{"secure.b.example.com"}, Zones: []string{"free.example.com"}},
	})
	_, err := b.sign(cr)
	wantPending(t, err, "secure.b.example.com: publishing routes", "free.example.com: publishing routes")
	b.wantNewOrders(t, "free.example.com,secure.b.example.com", 1)

	// Still refused an hour after its creation: the request fails, and
	// still no order.
	late := b.request(t, b.valid, "late", "other.b.example.com")
	clock.now = now.Add(2 * time.Hour)
	_, err = b.sign(late)
	if !errors.As(err, &signer.PermanentError{}) || !strings.Contains(err.Error(), "no order was placed") {
		t.Fatalf("a refusal past its grace: %v, want a permanent error", err)
	}
	b.wantNewOrders(t, "other.b.example.com", 0)
}

// stepClock is a clock a test sets.
type stepClock struct{ now time.Time }

func (c *stepClock) Now() time.Time                  { return c.now }
func (c *stepClock) Since(t time.Time) time.Duration { return c.now.Sub(t) }

func drainEvents(r *events.FakeRecorder) string {
	var out []string
	for {
		select {
		case e := <-r.Events:
			out = append(out, e)
		default:
			return strings.Join(out, "\n")
		}
	}
}

// A namespaced ACMEIssuer whose routing settings the platform does not
// allow is not Ready, and its requests reach neither the CA nor the API
// server's orders; an ACMEClusterIssuer with the same settings is the
// platform's own and is not confined.
func TestNamespacedIssuersAreConfined(t *testing.T) {
	api := testenv.StartAPIServer(t)
	api.CreateNamespaces(t, "istio-acme-issuer", "team-a", orderNamespace)
	policy := &solver.NamespacedIssuerPolicy{
		GatewayNamespaces: []string{"istio-system"},
		GatewaySelectors:  []map[string]string{{"istio": "ingressgateway"}},
		TokenServices:     []v1alpha1.TokenServiceReference{v1alpha1.DefaultIstioHTTP01Solver().TokenService},
	}
	s := NewSigner(Options{Client: api.Client, Secrets: api.Client, ClusterResourceNamespace: "istio-acme-issuer", UserAgent: "test", NamespacedPolicy: policy.Check})
	sol := v1alpha1.DefaultIstioHTTP01Solver()
	sol.GatewayNamespace = "team-b" // another team's namespace
	// The CA's URL answers nothing: a confined issuer never gets that far.
	spec := v1alpha1.ACMEIssuerSpec{Server: "https://127.0.0.1:1/dir", PrivateKeySecretRef: v1alpha1.SecretKeySelector{Name: "k"}, Solver: v1alpha1.ACMESolver{Istio: sol}}
	iss := &v1alpha1.ACMEIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "own"}, Spec: spec}
	mustCreate(t, api.Client, iss)
	err := s.Check(context.Background(), iss)
	if !errors.As(err, &signer.PermanentError{}) || !strings.Contains(err.Error(), `ACMEIssuer team-a/own: spec.solver.istio.gatewayNamespace "team-b"`) || !strings.Contains(err.Error(), "namespacedIssuers.gatewayNamespaces") {
		t.Errorf("Check: %v, want a permanent error naming the field and the chart value", err)
	}
	cr := (&orderBench{t: t, api: api}).request(t, &v1alpha1.ACMEClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "unused"}}, "r", "a.example.com")
	_, err = s.Sign(context.Background(), signer.CertificateRequestObjectFromCertificateRequest(cr), iss)
	if !errors.As(err, &signer.IssuerError{}) || !strings.Contains(err.Error(), "gatewayNamespace") {
		t.Errorf("Sign: %v, want an issuer error", err)
	}
	if err := api.Client.Get(context.Background(), client.ObjectKeyFromObject(cr), &v1alpha1.ACMEOrder{}); !apierrors.IsNotFound(err) {
		t.Errorf("an ACMEOrder exists for the confined issuer's request (%v)", err)
	}
	// The same settings on a cluster issuer pass the policy (and fail only
	// at the unreachable CA).
	cluster := &v1alpha1.ACMEClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "platform"}, Spec: spec}
	if err := s.Check(context.Background(), cluster); err == nil || strings.Contains(err.Error(), "gatewayNamespace") {
		t.Errorf("the cluster issuer's Check: %v, want only the CA's failure", err)
	}
}
