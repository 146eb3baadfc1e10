package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cmacme "github.com/cert-manager/cert-manager/pkg/apis/acme/v1"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
	"github.com/istio-acme/istio-acme-issuer/solver"
)

// TestCertManagerACMEIssuer: cert-manager's own ACME ClusterIssuer, with
// its Order and Challenge controllers and its own self-check, solves
// HTTP-01 through Istio when its solver names the chart's IngressClass; our
// controller publishes the routes and answers the tokens, and never writes
// cert-manager's objects.
func TestCertManagerACMEIssuer(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	writers := c.watchWriters(&cmacme.Challenge{}, &v1alpha1.ACMEChallenge{})
	c.applyChartIngressClasses()
	c.create(&networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}, Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}})
	app := c.userApp("shop-app", appNamespace)

	// The layouts, before any Certificate: a shared wildcard Gateway with a
	// per-app VirtualService; a host redirected to HTTPS whose certificate
	// is the one being issued; a host whose older route for /.well-known
	// shadows any challenge route.
	c.platformGateway("shared", httpServer("*.shared.test"))
	c.userRoute("shop-shared", gatewayNamespace+"/shared", "shop.shared.test", app, "/")
	c.userGateway("bare", "bare.redirect.test", app, withHTTPSRedirect)
	c.redirectingGateway("fresh-redirect", "fresh.redirect.test", "fresh-redirect-tls")
	c.userRoute("fresh-redirect", gatewayNamespace+"/fresh-redirect", "fresh.redirect.test", app, "/")
	c.userGateway("shadow", "shop.shadow.test", app)
	c.userRoute("shadow-wellknown", "shadow", "shop.shadow.test", app, "/.well-known")
	c.olderThanWhatFollows()

	// The user's existing ClusterIssuer: our class for these zones, another
	// ingress controller's class for another zone.
	c.cmClusterIssuer("letsencrypt",
		cmacme.ACMEChallengeSolver{
			Selector: &cmacme.CertificateDNSNameSelector{DNSZones: []string{"example.com", "shared.test", "redirect.test", "shadow.test"}},
			HTTP01: &cmacme.ACMEChallengeSolverHTTP01{Ingress: &cmacme.ACMEChallengeSolverHTTP01Ingress{
				IngressClassName: ptr.To("istio-acme"), ServiceType: corev1.ServiceTypeClusterIP,
			}},
		},
		cmacme.ACMEChallengeSolver{
			Selector: &cmacme.CertificateDNSNameSelector{DNSZones: []string{"other.test"}},
			HTTP01:   &cmacme.ACMEChallengeSolverHTTP01{Ingress: &cmacme.ACMEChallengeSolverHTTP01Ingress{IngressClassName: ptr.To("nginx")}},
		},
	)

	names := []string{"shop.example.com", "www.shop.example.com"}
	shop := c.cmCertificate("shop", names...)
	shared := c.cmCertificate("shop-shared", "shop.shared.test")
	bare := c.cmCertificate("bare", "bare.redirect.test")
	shadow := c.cmCertificate("shadow", "shop.shadow.test")
	other := c.cmCertificate("other", "web.other.test")
	// The platform's Certificate for its exact-host HTTPS server, whose
	// Secret it fills, in the gateway pods' namespace.
	fresh := c.teamCertificate(gatewayNamespace, "fresh-redirect", cmmeta.IssuerReference{Group: "cert-manager.io", Kind: "ClusterIssuer", Name: "letsencrypt"}, "fresh.redirect.test")

	t.Run("cmctl status shows cert-manager's Order and Challenges while they are solved through Istio", func(t *testing.T) {
		var out string
		c.eventually("cmctl status to show the order's challenges", 60*time.Second, func() (bool, string) {
			out = c.cmctl("status", "certificate", shop.Name, "-n", shop.Namespace)
			return strings.Contains(out, "Challenges:") && strings.Count(out, "Type: HTTP-01") == 2, out
		})
		t.Logf("cmctl status certificate %s while its challenges are open:\n%s", shop.Name, out)
		for _, want := range []string{"Order:", "Challenges:", "shop.example.com", "www.shop.example.com"} {
			if !strings.Contains(out, want) {
				t.Errorf("cmctl status output lacks %q", want)
			}
		}
	})

	t.Run("a Certificate for two names is issued through Istio routes", func(t *testing.T) {
		elapsed := c.waitReady(shop, 90*time.Second)
		leaf := c.verifySecret(shop, names...)
		t.Logf("issued serial %s for %v by cert-manager's ACME issuer; Certificate creation to Ready: %s", leaf.SerialNumber, leaf.DNSNames, elapsed.Round(time.Millisecond))
		for _, host := range names {
			if !c.createdGatewayFor(host) {
				t.Errorf("no Gateway of ours was created for %s, which nothing else serves", host)
			}
			for _, agent := range []string{"LetsEncrypt-Pebble-VA", "cert-manager-challenges", solver.SelfCheckUserAgent} {
				if n := c.gateway.Served(agent, host, solver.ChallengePathPrefix); n == 0 {
					t.Errorf("%s never fetched the token for %s through the Istio gateway", agent, host)
				}
			}
			c.waitChallengeEvent(host, "RoutesPublished", "self-check passed")
		}
	})

	t.Run("a shared wildcard Gateway: issued through the app's virtual host", func(t *testing.T) {
		elapsed := c.waitReady(shared, 90*time.Second)
		c.verifySecret(shared, "shop.shared.test")
		if c.createdGatewayFor("shop.shared.test") {
			t.Error("the controller created a Gateway of its own for a host the shared Gateway serves")
		}
		t.Logf("Ready after %s through the app's virtual host on the shared Gateway", elapsed.Round(time.Millisecond))
	})

	t.Run("httpsRedirect with no HTTPS server: issued through a temporary HTTPS server", func(t *testing.T) {
		elapsed := c.waitReady(bare, 90*time.Second)
		c.verifySecret(bare, "bare.redirect.test")
		for _, agent := range []string{"LetsEncrypt-Pebble-VA", "cert-manager-challenges"} {
			if n := c.gateway.ServedTLS(agent, "bare.redirect.test", solver.ChallengePathPrefix); n == 0 {
				t.Errorf("%s never fetched the token over HTTPS after the redirect", agent)
			}
		}
		t.Logf("Ready after %s behind httpsRedirect", elapsed.Round(time.Millisecond))
	})

	t.Run("httpsRedirect to an exact-host server whose Secret the Certificate fills: issued through that server without an annotation", func(t *testing.T) {
		elapsed := c.waitReady(fresh, 90*time.Second)
		c.verifySecret(fresh, "fresh.redirect.test")
		if n := c.gateway.ServedTLS("LetsEncrypt-Pebble-VA", "fresh.redirect.test", solver.ChallengePathPrefix); n == 0 {
			t.Error("the CA never fetched the token over HTTPS through the user's server")
		}
		if n := c.gateway.FailedHandshakes("fresh.redirect.test"); n != 0 {
			t.Errorf("%d TLS handshakes for fresh.redirect.test failed", n)
		}
		if c.createdGatewayFor("fresh.redirect.test") {
			t.Error("the controller created a Gateway of its own although the user's server works with the temporary certificate")
		}
		c.eventually("the temporary-certificate annotation to be removed with the challenge", 30*time.Second, func() (bool, string) {
			v, set := c.getCertificate(fresh).Annotations[cmapi.IssueTemporaryCertificateAnnotation]
			return !set, "annotation " + v
		})
		t.Logf("Ready after %s behind a redirect to the user's exact-host server", elapsed.Round(time.Millisecond))
	})

	t.Run("a shadowing route is an Event on the Challenge, and the CA is never asked", func(t *testing.T) {
		c.waitChallengeEvent("shop.shadow.test", "NotPresented", "VirtualService apps/shadow-wellknown")
		ch := c.cmChallengeFor("shop.shadow.test")
		if ch == nil || ch.Status.State != cmacme.Pending {
			t.Errorf("the shadowed Challenge is %+v, want pending at the CA", ch)
		}
		if n := c.gateway.Served("LetsEncrypt-Pebble-VA", "shop.shadow.test", "/"); n != 0 {
			t.Errorf("the CA fetched %d times through the shadowed route", n)
		}
		c.deleteAndWaitGone(shadow)
	})

	t.Run("a Challenge of another IngressClass is left alone", func(t *testing.T) {
		c.eventually("cert-manager to process the other zone's Challenge", 60*time.Second, func() (bool, string) {
			ch := c.cmChallengeFor("web.other.test")
			return ch != nil && ch.Status.Presented, fmt.Sprintf("%+v", ch)
		})
		ch := c.cmChallengeFor("web.other.test")
		if err := c.cl.Get(ctx, client.ObjectKeyFromObject(ch), &v1alpha1.ACMEChallenge{}); err == nil {
			t.Error("an ACMEChallenge was created for a Challenge of IngressClass nginx")
		}
		if evs := c.ourEventsOn(ch); len(evs) != 0 {
			t.Errorf("Events of ours on the other class's Challenge: %v", evs)
		}
		c.deleteAndWaitGone(other)
	})

	t.Run("cert-manager's objects are cert-manager's, and nothing of ours is left", func(t *testing.T) {
		c.waitNothingLeft()
		// The manager that wrote our ACMEChallenges is our controller; no
		// version of any Challenge, as the watch saw it, has its fields.
		ours := writers.of("ACMEChallenge")
		if len(ours) == 0 {
			t.Fatal("no writer of the ACMEChallenges was seen")
		}
		for _, m := range writers.of("Challenge") {
			if slices.Contains(ours, m) {
				t.Errorf("a Challenge was written by %s, which writes our ACMEChallenges", m)
			}
		}
		t.Logf("Challenges written by %v; ACMEChallenges by %v", writers.of("Challenge"), ours)
	})
}

// applyChartIngressClasses installs the IngressClasses the Helm chart
// renders with its defaults.
func (c *cluster) applyChartIngressClasses() {
	c.t.Helper()
	chart := filepath.Join(testenv.RepoRoot(c.t), "charts/istio-acme-issuer")
	var classes []*unstructured.Unstructured
	for _, o := range testenv.RenderChart(c.t, chart, "istio-acme-issuer", controllerNamespace) {
		if o.GetKind() == "IngressClass" {
			classes = append(classes, o)
		}
	}
	if len(classes) == 0 {
		c.t.Fatal("the chart renders no IngressClass")
	}
	c.api.Apply(c.t, controllerNamespace, classes)
}

// cmClusterIssuer creates a cert-manager ACME ClusterIssuer for Pebble with
// solvers and waits until it is Ready (its account registered).
func (c *cluster) cmClusterIssuer(name string, solvers ...cmacme.ACMEChallengeSolver) {
	c.t.Helper()
	c.create(&cmapi.ClusterIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{ACME: &cmacme.ACMEIssuer{
			Server:     c.pebble.DirectoryURL,
			Email:      "platform@example.org",
			CABundle:   c.pebble.ServerCAPEM,
			PrivateKey: cmmeta.SecretKeySelector{LocalObjectReference: cmmeta.LocalObjectReference{Name: name + "-account"}},
			Solvers:    solvers,
		}}},
	})
	c.waitClusterIssuerReady(name)
}

// waitClusterIssuerReady waits until cert-manager's ClusterIssuer name is
// Ready.
func (c *cluster) waitClusterIssuerReady(name string) {
	c.t.Helper()
	c.eventually("ClusterIssuer "+name+" to be Ready", 60*time.Second, func() (bool, string) {
		got := &cmapi.ClusterIssuer{}
		if err := c.cl.Get(context.Background(), client.ObjectKey{Name: name}, got); err != nil {
			return false, err.Error()
		}
		for _, cond := range got.Status.Conditions {
			if cond.Type == cmapi.IssuerConditionReady {
				return cond.Status == cmmeta.ConditionTrue, cond.Message
			}
		}
		return false, "no Ready condition"
	})
}

// cmCertificate creates a Certificate issued by the cert-manager
// ClusterIssuer "letsencrypt".
func (c *cluster) cmCertificate(name string, dnsNames ...string) *cmapi.Certificate {
	c.t.Helper()
	return c.certificateWith(cmmeta.IssuerReference{Group: "cert-manager.io", Kind: "ClusterIssuer", Name: "letsencrypt"}, name, dnsNames...)
}

// cmChallengeFor returns cert-manager's Challenge for host, or nil.
func (c *cluster) cmChallengeFor(host string) *cmacme.Challenge {
	var chs cmacme.ChallengeList
	if err := c.cl.List(context.Background(), &chs); err != nil {
		c.t.Fatal(err)
	}
	for i := range chs.Items {
		if chs.Items[i].Spec.DNSName == host {
			return &chs.Items[i]
		}
	}
	return nil
}

// ourEventsOn returns the Events our controller recorded on a Challenge, as
// "reason: note".
func (c *cluster) ourEventsOn(ch *cmacme.Challenge) []string {
	events, err := testenv.EventsAbout(context.Background(), c.cl, ch.Namespace, func(r corev1.ObjectReference) bool { return r.Kind == "Challenge" && r.UID == ch.UID })
	if err != nil {
		c.t.Fatal(err)
	}
	var out []string
	for _, e := range events {
		if e.ReportingController == "istio-acme-issuer" {
			out = append(out, e.Reason+": "+e.Note)
		}
	}
	return out
}

// waitChallengeEvent waits for an Event of ours with reason on a Challenge
// for host (its note names http://host/ or http://host) whose note contains
// text; Events outlive their Challenge.
func (c *cluster) waitChallengeEvent(host, reason, text string) {
	c.t.Helper()
	isChallenge := func(r corev1.ObjectReference) bool { return r.Kind == "Challenge" }
	c.eventually("Event "+reason+" on the Challenge for "+host, 60*time.Second, func() (bool, string) {
		ok, found := testenv.FindEvent(context.Background(), c.cl, "", isChallenge, reason, "http://"+host+"/", text)
		if ok {
			c.t.Logf("Event on a Challenge for %s: %s", host, found)
		}
		return ok, found
	})
}

// deleteAndWaitGone deletes a Certificate and waits until cert-manager's
// chain below it (requests, orders, challenges) and every object of ours
// are gone.
func (c *cluster) deleteAndWaitGone(crt *cmapi.Certificate) {
	c.t.Helper()
	ctx := context.Background()
	if err := c.cl.Delete(ctx, crt); err != nil {
		c.t.Fatal(err)
	}
	c.eventually("Certificate "+crt.Name+"'s orders and challenges, and our objects, to be gone", 60*time.Second, func() (bool, string) {
		var left []string
		var chs cmacme.ChallengeList
		if err := c.cl.List(ctx, &chs, client.InNamespace(crt.Namespace)); err != nil {
			return false, err.Error()
		}
		for _, ch := range chs.Items {
			if slices.Contains(crt.Spec.DNSNames, ch.Spec.DNSName) {
				left = append(left, "Challenge "+ch.Name)
			}
		}
		left = append(left, c.ourObjectsLeft()...)
		return len(left) == 0, strings.Join(left, ", ")
	})
}

// fieldWriters records the field managers seen on objects of some kinds.
type fieldWriters struct {
	mu       sync.Mutex
	managers map[string][]string // kind -> managers
}

func (w *fieldWriters) of(kind string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.managers[kind])
}

// watchWriters records, from every version of every object of these kinds
// the watch delivers, which field managers wrote it.
func (c *cluster) watchWriters(objs ...client.Object) *fieldWriters {
	c.t.Helper()
	w := &fieldWriters{managers: map[string][]string{}}
	for _, obj := range objs {
		kind := reflect.TypeOf(obj).Elem().Name()
		inf, err := c.informers.GetInformer(context.Background(), obj)
		if err != nil {
			c.t.Fatal(err)
		}
		record := func(o any) {
			m, ok := o.(metav1.Object)
			if !ok {
				return
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			for _, f := range m.GetManagedFields() {
				if !slices.Contains(w.managers[kind], f.Manager) {
					w.managers[kind] = append(w.managers[kind], f.Manager)
				}
			}
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc: record, UpdateFunc: func(_, n any) { record(n) },
		}); err != nil {
			c.t.Fatal(err)
		}
	}
	return w
}
