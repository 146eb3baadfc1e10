package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/e2e/istiogw"
	"github.com/istio-acme/istio-acme-issuer/solver"
)

// TestExistingGateways issues certificates for hosts that users' Gateways
// already serve: the challenge route attaches to those Gateways, under
// their host strings, and the users' traffic keeps reaching their app.
func TestExistingGateways(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	c.clusterIssuer("pebble", v1alpha1.ACMESolver{})
	app := c.userApp("shop-app", appNamespace)

	// A user's Gateway for an exact host, with a VirtualService whose
	// catch-all sends everything to the app.
	c.userGateway("exact", "app.attach.test", app)
	// A user's wildcard Gateway with a catch-all.
	c.userGateway("wild", "*.wild.test", app)
	// A user's Gateway that redirects port 80 to its working HTTPS server
	// (its certificate Secret exists in the gateway pods' namespace).
	c.userGateway("secure", "secure.redirect.test", app, withHTTPSRedirect, withHTTPS)
	c.credential("secure-tls", "secure.redirect.test")
	// One that redirects, with no HTTPS server for the host anywhere.
	c.userGateway("bare", "bare.redirect.test", app, withHTTPSRedirect)
	// A user's Gateway whose older VirtualService sends /.well-known to the
	// app, ahead of any challenge route.
	c.userGateway("shadow", "shadow.attach.test", app)
	c.userRoute("shadow-wellknown", "shadow", "shadow.attach.test", app, "/.well-known")
	c.olderThanWhatFollows()
	// A user's Gateway written with the gateway pod's port (8080, behind
	// the Service's port 80), and one on a port the Service does not expose.
	c.userGateway("container-port", "container.port.test", app, onPort(8080))
	c.userGateway("unexposed", "unexposed.port.test", app, onPort(8081))

	t.Run("a user Gateway and catch-all VirtualService for the exact host", func(t *testing.T) {
		elapsed := c.issue("attach", "pebble", "app.attach.test")
		if c.createdGatewayFor("app.attach.test") {
			t.Error("the controller created a Gateway of its own for a host the user's Gateway serves")
		}
		t.Logf("Ready after %s through the user's Gateway %s/exact", elapsed.Round(time.Millisecond), appNamespace)
		c.waitNothingLeft()
	})

	t.Run("while a challenge is open under a wildcard Gateway, the app still gets the host's traffic", func(t *testing.T) {
		// An issuer whose token Service does not exist: its challenge can
		// never pass the self-check, so it stays open to be looked at.
		c.clusterIssuer("stuck", v1alpha1.ACMESolver{Istio: v1alpha1.IstioHTTP01Solver{
			Gateways:         []v1alpha1.GatewayWorkloadSelector{{Selector: map[string]string{"istio": "ingressgateway"}}},
			GatewayNamespace: gatewayNamespace,
			TokenService:     v1alpha1.TokenServiceReference{Name: "nowhere", Namespace: controllerNamespace, Port: tokenServicePort},
		}})
		crt := c.certificate("stuck", "stuck", "shop.wild.test")
		var ch v1alpha1.ACMEChallenge
		c.eventually("the open challenge to report its failing self-check", 30*time.Second, func() (bool, string) {
			var list v1alpha1.ACMEChallengeList
			if err := c.cl.List(ctx, &list, client.InNamespace(appNamespace)); err != nil {
				return false, err.Error()
			}
			for _, x := range list.Items {
				if x.Spec.DNSName == "shop.wild.test" {
					ch = x
					return strings.Contains(x.Status.Message, "self-check failed"), x.Status.Message
				}
			}
			return false, c.requestState(crt)
		})
		t.Logf("challenge status: %s", ch.Status.Message)
		if len(ch.Status.Routes) != 1 || ch.Status.Routes[0].Kind != "VirtualService" {
			t.Fatalf("routes %v, want one VirtualService and no Gateway of ours", ch.Status.Routes)
		}
		vs := &istionet.VirtualService{}
		if err := c.cl.Get(ctx, client.ObjectKey{Namespace: ch.Status.Routes[0].Namespace, Name: ch.Status.Routes[0].Name}, vs); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(vs.Spec.Gateways, []string{appNamespace + "/wild"}) || !slices.Equal(vs.Spec.Hosts, []string{"*.wild.test"}) {
			t.Errorf("VirtualService bound to %v under %v, want the user's Gateway under the name of the virtual host that serves the host", vs.Spec.Gateways, vs.Spec.Hosts)
		}
		if got := vs.Spec.Http[0].Match[0].GetAuthority().GetRegex(); got != `shop\.wild\.test(:[0-9]+)?` {
			t.Errorf("authority match %q, want the challenged host only", got)
		}

		// Istio routes the token to our (missing) Service, and everything
		// else of the host to the user's app.
		res, err := c.gateway.Route(ctx, "shop.wild.test", solver.ChallengePathPrefix+ch.Spec.Token)
		if err != nil || !strings.Contains(res.ClusterMatched, "nowhere."+controllerNamespace) {
			t.Errorf("the token path goes to %q (%v), want the token Service", res.ClusterMatched, err)
		}
		for _, path := range []string{"/app", "/", "/.well-known/other"} {
			code, body, err := c.gateway.Get("shop.wild.test", path)
			if err != nil || code != http.StatusOK || !strings.HasPrefix(body, "user app") {
				t.Errorf("GET http://shop.wild.test%s while the challenge is open: %d %q %v, want the user's app", path, code, body, err)
			}
		}

		c.abandon(crt)
	})

	t.Run("httpsRedirect on port 80 with an HTTPS server: issued through the redirect", func(t *testing.T) {
		elapsed := c.issue("secure", "pebble", "secure.redirect.test")
		if n := c.gateway.ServedTLS("LetsEncrypt-Pebble-VA", "secure.redirect.test", solver.ChallengePathPrefix); n == 0 {
			t.Error("the CA never fetched the token on the gateway's HTTPS port after the redirect")
		}
		if n := c.gateway.ServedTLS(solver.SelfCheckUserAgent, "secure.redirect.test", solver.ChallengePathPrefix); n == 0 {
			t.Error("the self-check did not follow the redirect")
		}
		t.Logf("Ready after %s through the HTTPS redirect", elapsed.Round(time.Millisecond))
		c.waitNothingLeft()
	})

	t.Run("httpsRedirect without an HTTPS server, temporary servers turned off: a message naming the fix", func(t *testing.T) {
		c.clusterIssuer("no-temp", v1alpha1.ACMESolver{Istio: v1alpha1.IstioHTTP01Solver{
			Gateways:             []v1alpha1.GatewayWorkloadSelector{{Selector: map[string]string{"istio": "ingressgateway"}}},
			GatewayNamespace:     gatewayNamespace,
			TokenService:         v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: controllerNamespace, Port: tokenServicePort},
			TemporaryHTTPSServer: ptr.To(false),
		}})
		crt := c.certificate("bare", "no-temp", "bare.redirect.test")
		c.waitRequestMessage(crt, "http://bare.redirect.test is redirected to HTTPS",
			"tls.httpsRedirect", "no HTTPS server of the ingress gateway pods with labels istio=ingressgateway serves bare.redirect.test", "temporaryHTTPSServer: false")
		if n := c.metricSum("istio_acme_challenge_not_presented_total", `reason="https_redirect"`); n < 1 {
			t.Errorf("istio_acme_challenge_not_presented_total{reason=\"https_redirect\"} = %v, want at least 1", n)
		}
		if left := c.ourObjectsLeft(); slices.ContainsFunc(left, func(s string) bool { return !strings.HasPrefix(s, "ACMEChallenge") }) {
			t.Errorf("routes were published for a host the CA cannot reach: %v", left)
		}
		c.abandon(crt)
	})

	t.Run("httpsRedirect without an HTTPS server: served by a temporary HTTPS server", func(t *testing.T) {
		elapsed := c.issue("bare-temp", "pebble", "bare.redirect.test")
		if n := c.gateway.ServedTLS("LetsEncrypt-Pebble-VA", "bare.redirect.test", solver.ChallengePathPrefix); n == 0 {
			t.Error("the CA never fetched the token on the temporary HTTPS server")
		}
		t.Logf("Ready after %s through a temporary HTTPS server", elapsed.Round(time.Millisecond))
		c.waitNothingLeft()
		var secrets corev1.SecretList
		if err := c.cl.List(ctx, &secrets, client.MatchingLabels{solver.LabelManagedBy: solver.ManagedByValue}); err != nil {
			t.Fatal(err)
		}
		for _, sec := range secrets.Items {
			if sec.Type == corev1.SecretTypeTLS {
				t.Errorf("the temporary server's Secret %s/%s is left behind", sec.Namespace, sec.Name)
			}
		}
	})

	t.Run("an older route for /.well-known is reported as shadowing, before any CA validation", func(t *testing.T) {
		crt := c.certificate("shadow", "pebble", "shadow.attach.test")
		c.waitRequestMessage(crt, "VirtualService apps/shadow-wellknown",
			"prefix /.well-known", "Istio tries it before the challenge route", "exclude /.well-known/acme-challenge/")
		if n := c.metricSum("istio_acme_challenge_not_presented_total", `reason="shadowed"`); n < 1 {
			t.Errorf("istio_acme_challenge_not_presented_total{reason=\"shadowed\"} = %v, want at least 1", n)
		}
		if n := c.gateway.Served("LetsEncrypt-Pebble-VA", "shadow.attach.test", "/"); n != 0 {
			t.Errorf("the CA was asked to validate %d times through a shadowed route", n)
		}
		var chs v1alpha1.ACMEChallengeList
		if err := c.cl.List(ctx, &chs, client.InNamespace(appNamespace)); err != nil {
			t.Fatal(err)
		}
		for _, ch := range chs.Items {
			if ch.Spec.DNSName == "shadow.attach.test" && ch.Status.State != "" {
				t.Errorf("the challenge was accepted at the CA (state %s)", ch.Status.State)
			}
		}
		c.abandon(crt)
	})

	t.Run("a user Gateway on the pod port behind the Service's port 80 is attached to", func(t *testing.T) {
		elapsed := c.issue("container-port", "pebble", "container.port.test")
		if c.createdGatewayFor("container.port.test") {
			t.Error("the controller created a Gateway of its own although the user's port-8080 server receives port 80")
		}
		t.Logf("Ready after %s through the user's Gateway on port 8080", elapsed.Round(time.Millisecond))
		c.waitNothingLeft()
	})

	t.Run("a user Gateway on a port the CA does not reach is not attached to", func(t *testing.T) {
		elapsed := c.issue("unexposed", "pebble", "unexposed.port.test")
		if !c.createdGatewayFor("unexposed.port.test") {
			t.Error("the route was attached to a server on port 8081, which the CA never reaches")
		}
		t.Logf("Ready after %s through a Gateway of our own", elapsed.Round(time.Millisecond))
		c.waitNothingLeft()
	})

	t.Run("a shared wildcard Gateway with per-app VirtualServices: issued through the app's virtual host, its traffic unchanged", func(t *testing.T) {
		// The platform's Gateway serves *.shared.test; each app binds its
		// exact host. Istio builds a virtual host per app host: a route
		// under *.shared.test would never be reached.
		c.platformGateway("shared", httpServer("*.shared.test"))
		for _, name := range []string{"shop", "cart"} {
			c.userRoute(name+"-shared", gatewayNamespace+"/shared", name+".shared.test", app, "/")
		}
		c.openChallengeKeepsTraffic(t, "cart.shared.test", []string{"cart.shared.test"}, []string{gatewayNamespace + "/shared"})
		elapsed := c.issue("shop-shared", "pebble", "shop.shared.test")
		if c.createdGatewayFor("shop.shared.test") {
			t.Error("the controller created a Gateway of its own for a host the shared Gateway serves")
		}
		t.Logf("Ready after %s through the app's virtual host on the shared Gateway", elapsed.Round(time.Millisecond))
		c.waitNothingLeft()
	})

	t.Run("a Gateway for * with per-team wildcard VirtualServices: issued through the team's virtual host", func(t *testing.T) {
		c.platformGateway("all", httpServer("*"))
		c.userRoute("team-a", gatewayNamespace+"/all", "*.team-a.test", app, "/")
		c.userRoute("team-b", gatewayNamespace+"/all", "*.team-b.test", app, "/")
		c.openChallengeKeepsTraffic(t, "web.team-a.test", []string{"*.team-a.test"}, []string{gatewayNamespace + "/all"})
		elapsed := c.issue("api-team-a", "pebble", "api.team-a.test")
		if c.createdGatewayFor("api.team-a.test") {
			t.Error("the controller created a Gateway of its own for a host the Gateway for * serves")
		}
		t.Logf("Ready after %s through the team's wildcard virtual host", elapsed.Round(time.Millisecond))
		c.waitNothingLeft()
	})

	t.Run("a certificate is issued through a user's wildcard Gateway", func(t *testing.T) {
		elapsed := c.issue("wild", "pebble", "www.wild.test")
		if c.createdGatewayFor("www.wild.test") {
			t.Error("the controller created a Gateway of its own for a host the user's wildcard Gateway serves")
		}
		if code, body, _ := c.gateway.Get("www.wild.test", "/app"); code != http.StatusOK || !strings.HasPrefix(body, "user app") {
			t.Errorf("after issuance GET /app: %d %q, want the user's app", code, body)
		}
		t.Logf("Ready after %s through the user's wildcard Gateway", elapsed.Round(time.Millisecond))
		c.waitNothingLeft()
	})
}

// userApp starts a loopback HTTP server standing for a user's application,
// and its Service; it returns the Service's host name.
func (c *cluster) userApp(name, namespace string) string {
	c.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "user app %s%s", r.Host, r.URL.Path)
	})}
	go func() { _ = srv.Serve(ln) }() // ends with Close below
	c.t.Cleanup(func() { _ = srv.Close() })
	c.create(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}},
	})
	host := fmt.Sprintf("%s.%s.svc.cluster.local", name, namespace)
	c.setBackend(host+":8080", ln.Addr().String())
	return host
}

type gatewayOption func(*istionet.Gateway)

// withHTTPSRedirect makes the port-80 server redirect to HTTPS.
func withHTTPSRedirect(gw *istionet.Gateway) {
	gw.Spec.Servers[0].Tls = &istioapi.ServerTLSSettings{HttpsRedirect: true}
}

// onPort moves the first server to another port number.
func onPort(port uint32) gatewayOption {
	return func(gw *istionet.Gateway) { gw.Spec.Servers[0].Port.Number = port }
}

// withSelector makes the Gateway select another gateway workload.
func withSelector(selector map[string]string) gatewayOption {
	return func(gw *istionet.Gateway) { gw.Spec.Selector = selector }
}

// withHTTPS adds an HTTPS server for the same host.
func withHTTPS(gw *istionet.Gateway) {
	gw.Spec.Servers = append(gw.Spec.Servers, &istioapi.Server{
		Port:  &istioapi.Port{Number: 443, Name: "https", Protocol: "HTTPS"},
		Hosts: gw.Spec.Servers[0].Hosts,
		Tls:   &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: gw.Name + "-tls"},
	})
}

// platformGateway creates a platform team's Gateway for the default
// ingress gateway, in the gateway pods' namespace, with servers.
func (c *cluster) platformGateway(name string, servers ...*istioapi.Server) {
	c.t.Helper()
	gw := &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: gatewayNamespace, Name: name}}
	gw.Spec.Selector = map[string]string{"istio": "ingressgateway"}
	gw.Spec.Servers = servers
	c.create(gw)
}

// httpServer is a plain HTTP server on port 80 for hosts.
func httpServer(hosts ...string) *istioapi.Server {
	return &istioapi.Server{Port: &istioapi.Port{Number: 80, Name: "http", Protocol: "HTTP"}, Hosts: hosts}
}

// userGateway creates a user's Gateway serving host on port 80 of the
// ingress gateway and a VirtualService sending all its traffic to app.
func (c *cluster) userGateway(name, host, app string, opts ...gatewayOption) {
	c.t.Helper()
	gw := &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: appNamespace, Name: name}}
	gw.Spec.Selector = map[string]string{"istio": "ingressgateway"}
	gw.Spec.Servers = []*istioapi.Server{{Port: &istioapi.Port{Number: 80, Name: "http", Protocol: "HTTP"}, Hosts: []string{host}}}
	for _, o := range opts {
		o(gw)
	}
	c.create(gw)
	vs := &istionet.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: appNamespace, Name: name}}
	vs.Spec.Hosts = []string{host}
	vs.Spec.Gateways = []string{name}
	vs.Spec.Http = []*istioapi.HTTPRoute{{
		Name:  "catch-all",
		Match: []*istioapi.HTTPMatchRequest{{Uri: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Prefix{Prefix: "/"}}}},
		Route: []*istioapi.HTTPRouteDestination{{Destination: &istioapi.Destination{Host: app, Port: &istioapi.PortSelector{Number: 8080}}}},
	}}
	c.create(vs)
}

// issue has a Certificate for host issued, checks its Secret and that the CA
// fetched the token through the gateway, and returns the time to Ready.
func (c *cluster) issue(name, issuer, host string) time.Duration {
	c.t.Helper()
	return c.issueVia(c.gateway, name, issuer, host)
}

// issueVia is issue for a host that DNS sends to gateway.
func (c *cluster) issueVia(gateway *istiogw.Gateway, name, issuer, host string) time.Duration {
	c.t.Helper()
	crt := c.certificate(name, issuer, host)
	elapsed := c.waitReady(crt, 60*time.Second)
	c.verifySecret(crt, host)
	if n := gateway.Served("LetsEncrypt-Pebble-VA", host, solver.ChallengePathPrefix); n == 0 {
		c.t.Errorf("the CA never fetched the token for %s through the ingress gateway", host)
	}
	return elapsed
}

// waitRequestMessage waits until the Certificate's request says first, then
// checks that it also says the rest.
func (c *cluster) waitRequestMessage(crt *cmapi.Certificate, first string, rest ...string) {
	c.t.Helper()
	var state string
	c.eventually("the request to say "+first, 30*time.Second, func() (bool, string) {
		state = c.requestState(crt)
		return strings.Contains(state, first), state
	})
	c.t.Logf("request message: %s", state)
	for _, want := range rest {
		if !strings.Contains(state, want) {
			c.t.Errorf("message lacks %q: %s", want, state)
		}
	}
}

// abandon deletes a Certificate that cannot be issued, and nothing else:
// the garbage collector deletes its requests, their ACMEOrders and those
// orders' ACMEChallenges through their ownerReferences, and the challenge
// controller removes the routes before its finalizer lets a challenge go.
// It waits until none of the Certificate's chain and none of our objects
// is left.
func (c *cluster) abandon(crt *cmapi.Certificate) {
	c.t.Helper()
	ctx := context.Background()
	var crs cmapi.CertificateRequestList
	if err := c.cl.List(ctx, &crs, client.InNamespace(crt.Namespace)); err != nil {
		c.t.Fatal(err)
	}
	requests := map[string]bool{}
	for i := range crs.Items {
		if metav1.IsControlledBy(&crs.Items[i], crt) {
			requests[crs.Items[i].Name] = true
		}
	}
	if err := c.cl.Delete(ctx, crt); err != nil {
		c.t.Fatal(err)
	}
	c.eventually("the garbage collector to delete the requests, orders and challenges of Certificate "+crt.Name, 60*time.Second, func() (bool, string) {
		var left []string
		var crs cmapi.CertificateRequestList
		var orders v1alpha1.ACMEOrderList
		if err := c.cl.List(ctx, &crs, client.InNamespace(crt.Namespace)); err != nil {
			return false, err.Error()
		}
		if err := c.cl.List(ctx, &orders, client.InNamespace(crt.Namespace)); err != nil {
			return false, err.Error()
		}
		for _, cr := range crs.Items {
			if requests[cr.Name] {
				left = append(left, "CertificateRequest "+cr.Name)
			}
		}
		for _, o := range orders.Items {
			if requests[o.Spec.Request] {
				left = append(left, "ACMEOrder "+o.Name)
			}
		}
		left = append(left, c.ourObjectsLeft()...)
		return len(left) == 0, strings.Join(left, ", ")
	})
}

// userRoute adds a user's VirtualService on gateway for host that sends
// paths under prefix to app.
func (c *cluster) userRoute(name, gateway, host, app, prefix string) {
	c.t.Helper()
	vs := &istionet.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: appNamespace, Name: name}}
	vs.Spec.Hosts = []string{host}
	vs.Spec.Gateways = []string{gateway}
	vs.Spec.Http = []*istioapi.HTTPRoute{{
		Name:  "well-known",
		Match: []*istioapi.HTTPMatchRequest{{Uri: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Prefix{Prefix: prefix}}}},
		Route: []*istioapi.HTTPRouteDestination{{Destination: &istioapi.Destination{Host: app, Port: &istioapi.PortSelector{Number: 8080}}}},
	}}
	c.create(vs)
}

// credential creates the certificate Secret of a user's working HTTPS
// server: name in the gateway pods' namespace, where Istio reads
// credentialName, holding a self-signed certificate for host.
func (c *cluster) credential(name, host string) {
	c.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		c.t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		c.t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		c.t.Fatal(err)
	}
	c.create(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: gatewayNamespace, Name: name},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		},
	})
}

// openChallengeKeepsTraffic opens a challenge for host that never passes
// (its issuer's token Service does not exist) and checks, while it is
// open, that its VirtualService joins the expected virtual host and that
// Istio sends the token path to the token Service and every other path of
// the host to the user's app.
func (c *cluster) openChallengeKeepsTraffic(t *testing.T, host string, wantHosts, wantGateways []string) {
	t.Helper()
	ctx := context.Background()
	name := "stuck-" + strings.ReplaceAll(host, ".", "-")
	c.clusterIssuer(name, v1alpha1.ACMESolver{Istio: v1alpha1.IstioHTTP01Solver{
		Gateways:         []v1alpha1.GatewayWorkloadSelector{{Selector: map[string]string{"istio": "ingressgateway"}}},
		GatewayNamespace: gatewayNamespace,
		TokenService:     v1alpha1.TokenServiceReference{Name: "nowhere", Namespace: controllerNamespace, Port: tokenServicePort},
	}})
	crt := c.certificate(name, name, host)
	var ch v1alpha1.ACMEChallenge
	c.eventually("the open challenge for "+host+" to publish its route", 30*time.Second, func() (bool, string) {
		var list v1alpha1.ACMEChallengeList
		if err := c.cl.List(ctx, &list, client.InNamespace(appNamespace)); err != nil {
			return false, err.Error()
		}
		for _, x := range list.Items {
			if x.Spec.DNSName == host {
				ch = x
				return strings.Contains(x.Status.Message, "self-check failed"), x.Status.Message
			}
		}
		return false, c.requestState(crt)
	})
	var vss istionet.VirtualServiceList
	if err := c.cl.List(ctx, &vss, client.MatchingLabels{solver.LabelChallenge: solver.ChallengeKey(ch.Namespace, ch.Name)}); err != nil {
		t.Fatal(err)
	}
	if len(vss.Items) != 1 || !slices.Equal(vss.Items[0].Spec.Hosts, wantHosts) || !slices.Equal(vss.Items[0].Spec.Gateways, wantGateways) {
		for _, vs := range vss.Items {
			t.Errorf("VirtualService %s: hosts %v gateways %v", vs.Name, vs.Spec.Hosts, vs.Spec.Gateways)
		}
		t.Errorf("want one VirtualService with hosts %v on %v", wantHosts, wantGateways)
	}
	res, err := c.gateway.Route(ctx, host, solver.ChallengePathPrefix+ch.Spec.Token)
	if err != nil || !strings.Contains(res.ClusterMatched, "nowhere."+controllerNamespace) {
		t.Errorf("the token path goes to %q (%v), want the token Service", res.ClusterMatched, err)
	}
	for _, path := range []string{"/", "/app", "/.well-known/other"} {
		code, body, err := c.gateway.Get(host, path)
		if err != nil || code != http.StatusOK || !strings.HasPrefix(body, "user app") {
			t.Errorf("GET http://%s%s while the challenge is open: %d %q %v, want the user's app", host, path, code, body, err)
		}
	}
	c.abandon(crt)
}
