package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	cmacme "github.com/cert-manager/cert-manager/pkg/apis/acme/v1"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/shim"
	"github.com/istio-acme/istio-acme-issuer/solver"
)

// TestTenancy: two teams share the ingress gateway. The platform's Gateway
// lets only team-b bind shop.b.tenants.example; team-b serves
// secure.b.tenants.example on 443 only, from its own Gateway with ./host;
// team-a serves app.a.tenants.example from its own Gateway with ./host. No
// HostnameGrant covers these names. team-a gets neither of team-b's names,
// through the shared ACMEClusterIssuer or through a cert-manager Issuer of
// its own naming our IngressClass; team-b gets both, and team-a its own,
// with every user's traffic where it was.
func TestTenancy(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	for _, ns := range []string{"team-a", "team-b"} {
		c.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	c.clusterIssuer("shared", v1alpha1.ACMESolver{})
	c.applyChartIngressClasses()
	appA, appB := c.userApp("app-a", "team-a"), c.userApp("shop-b", "team-b")

	const shop, secure, app = "shop.b.tenants.example", "secure.b.tenants.example", "app.a.tenants.example"
	c.platformGateway("team-b-shop", httpServer("team-b/"+shop))
	c.teamRoute("team-b", "shop", gatewayNamespace+"/team-b-shop", shop, appB)
	c.teamGateway("team-b", "secure", &istioapi.Server{
		Port: &istioapi.Port{Number: 443, Name: "https", Protocol: "HTTPS"}, Hosts: []string{"./" + secure},
		Tls: &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: "secure-b-tls"},
	})
	c.teamGateway("team-a", "app", httpServer("./"+app))
	c.teamRoute("team-a", "app", "app", app, appA)

	shared := cmmeta.IssuerReference{Group: "istio-acme.io", Kind: "ACMEClusterIssuer", Name: "shared"}
	t.Run("team-a is refused team-b's names before any order, and nothing is routed", func(t *testing.T) {
		taken := c.teamCertificate("team-a", "taken", shared, shop)
		c.waitRequestMessage(taken, "namespace team-a may not get "+shop, "Gateway istio-system/team-b-shop", "HostnameGrant", "no order is placed")
		https := c.teamCertificate("team-a", "secure", shared, secure)
		c.waitRequestMessage(https, "namespace team-a may not get "+secure, "Gateway team-b/secure on port 443")
		time.Sleep(time.Second) // a pass that would order has had its chance
		var orders v1alpha1.ACMEOrderList
		if err := c.cl.List(ctx, &orders, client.InNamespace("team-a")); err != nil {
			t.Fatal(err)
		}
		// The ACMEOrder is written before the CA is asked for an order.
		if len(orders.Items) != 0 {
			t.Errorf("team-a has %d ACMEOrders: an order was placed for a refused name", len(orders.Items))
		}
		c.wantNoRouteFor(t, shop, secure)
		if events := c.cmctl("status", "certificate", taken.Name, "-n", taken.Namespace); !strings.Contains(events, "HostNotAllowed") {
			t.Errorf("cmctl status shows no HostNotAllowed Event:\n%s", events)
		}
	})

	t.Run("team-a's own cert-manager Issuer naming our IngressClass gets no route for team-b's name", func(t *testing.T) {
		c.create(&cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "own"},
			Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{ACME: &cmacme.ACMEIssuer{
				Server: c.pebble.DirectoryURL, CABundle: c.pebble.ServerCAPEM,
				PrivateKey: cmmeta.SecretKeySelector{LocalObjectReference: cmmeta.LocalObjectReference{Name: "own-account"}},
				Solvers: []cmacme.ACMEChallengeSolver{{HTTP01: &cmacme.ACMEChallengeSolverHTTP01{Ingress: &cmacme.ACMEChallengeSolverHTTP01Ingress{
					IngressClassName: ptr.To("istio-acme"), ServiceType: corev1.ServiceTypeClusterIP,
				}}}},
			}}},
		})
		c.teamCertificate("team-a", "via-cert-manager", cmmeta.IssuerReference{Group: "cert-manager.io", Kind: "Issuer", Name: "own"}, shop)
		c.eventually("the mirrored challenge to be refused", 60*time.Second, func() (bool, string) {
			var chs v1alpha1.ACMEChallengeList
			if err := c.cl.List(ctx, &chs, client.InNamespace("team-a")); err != nil {
				return false, err.Error()
			}
			for _, ch := range chs.Items {
				if ch.Spec.DNSName == shop {
					return strings.Contains(ch.Status.Message, "namespace team-a may not get "+shop), ch.Status.Message
				}
			}
			return false, "no ACMEChallenge yet"
		})
		c.wantNoRouteFor(t, shop)
		if n := c.gateway.Served("LetsEncrypt-Pebble-VA", shop, solver.ChallengePathPrefix); n != 0 {
			t.Errorf("the CA fetched a token for %s %d times", shop, n)
		}
	})

	t.Run("team-a's annotated Gateway gets no Certificate in team-b's namespace, and team-b's Secret stays", func(t *testing.T) {
		c.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-b", Name: "b-tls"}, Data: map[string][]byte{"tls.crt": []byte("team-b's")}})
		gw := &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "grab", Annotations: map[string]string{
			"cert-manager.io/issuer": "shared", "cert-manager.io/issuer-kind": "ACMEClusterIssuer", "cert-manager.io/issuer-group": "istio-acme.io",
		}}}
		gw.Spec.Selector = map[string]string{"istio": "ingressgateway"}
		gw.Spec.Servers = []*istioapi.Server{{
			Port: &istioapi.Port{Number: 443, Name: "https", Protocol: "HTTPS"}, Hosts: []string{"./grab.a.tenants.example"},
			Tls: &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: "team-b/b-tls"},
		}}
		c.create(gw)
		c.waitGatewayEvent(gw, "ServerSkipped", "credentialName team-b/b-tls names namespace team-b, which is neither the Gateway's (team-a) nor its gateway pods' (istio-system)")
		if err := c.cl.Get(ctx, client.ObjectKey{Namespace: "team-b", Name: "b-tls"}, &cmapi.Certificate{}); err == nil {
			t.Error("a Certificate was created in team-b for team-a's Gateway")
		}
		sec := &corev1.Secret{}
		if err := c.cl.Get(ctx, client.ObjectKey{Namespace: "team-b", Name: "b-tls"}, sec); err != nil || string(sec.Data["tls.crt"]) != "team-b's" {
			t.Errorf("team-b's Secret changed: %v %q", err, sec.Data["tls.crt"])
		}
	})

	t.Run("team-a's annotated ./host Gateway gets its Certificate in the gateway pods' namespace, judged for team-a", func(t *testing.T) {
		const host = "shim.a.tenants.example"
		gw := &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "own-shim", Annotations: map[string]string{
			"cert-manager.io/issuer": "shared", "cert-manager.io/issuer-kind": "ACMEClusterIssuer", "cert-manager.io/issuer-group": "istio-acme.io",
		}}}
		gw.Spec.Selector = map[string]string{"istio": "ingressgateway"}
		gw.Spec.Servers = []*istioapi.Server{
			httpServer("./" + host),
			{Port: &istioapi.Port{Number: 443, Name: "https", Protocol: "HTTPS"}, Hosts: []string{"./" + host},
				Tls: &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: "shim-a-tls"}},
		}
		c.create(gw)
		crt := &cmapi.Certificate{}
		c.eventually("the shim's Certificate", 30*time.Second, func() (bool, string) {
			err := c.cl.Get(ctx, client.ObjectKey{Namespace: gatewayNamespace, Name: "shim-a-tls"}, crt)
			return err == nil, fmt.Sprint(err)
		})
		var challengeVS string
		c.eventually("the Certificate to be Ready, its challenge routed from team-a", 60*time.Second, func() (bool, string) {
			var vss istionet.VirtualServiceList
			if err := c.cl.List(ctx, &vss, client.MatchingLabels{solver.LabelManagedBy: solver.ManagedByValue}); err == nil {
				for _, v := range vss.Items {
					if slices.Contains(v.Spec.Hosts, host) {
						challengeVS = v.Namespace + "/" + v.Name
					}
				}
			}
			got := &cmapi.Certificate{}
			if err := c.cl.Get(ctx, client.ObjectKeyFromObject(crt), got); err != nil {
				return false, err.Error()
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == cmapi.CertificateConditionReady && cond.Status == cmmeta.ConditionTrue {
					return true, ""
				}
			}
			return false, c.requestState(got)
		})
		if !strings.HasPrefix(challengeVS, "team-a/") {
			t.Errorf("the challenge's VirtualService was %q, want one in team-a, the Gateway's namespace", challengeVS)
		}
	})

	t.Run("team-a's annotated Gateway for team-b's name gets a Certificate judged for team-a, and refused", func(t *testing.T) {
		gw := &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "borrow", Annotations: map[string]string{
			"cert-manager.io/issuer": "shared", "cert-manager.io/issuer-kind": "ACMEClusterIssuer", "cert-manager.io/issuer-group": "istio-acme.io",
		}}}
		gw.Spec.Selector = map[string]string{"istio": "ingressgateway"}
		// A bare host: the Gateway itself admits every namespace, the
		// platform's server for the name admits team-b only.
		gw.Spec.Servers = []*istioapi.Server{{Port: &istioapi.Port{Number: 443, Name: "https", Protocol: "HTTPS"}, Hosts: []string{shop},
			Tls: &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: "borrow-tls"}}}
		c.create(gw)
		crt := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: gatewayNamespace, Name: "borrow-tls"}}
		c.eventually("the shim's Certificate", 30*time.Second, func() (bool, string) {
			err := c.cl.Get(ctx, client.ObjectKeyFromObject(crt), crt)
			return err == nil, fmt.Sprint(err)
		})
		c.waitRequestMessage(crt, "namespace team-a may not get "+shop, "Gateway istio-system/team-b-shop")
		c.wantNoRouteFor(t, shop)
	})

	t.Run("a granted namespace gets a name another team serves only on 443", func(t *testing.T) {
		c.create(&v1alpha1.HostnameGrant{
			ObjectMeta: metav1.ObjectMeta{Name: "team-a-secure"},
			Spec:       v1alpha1.HostnameGrantSpec{Namespaces: []string{"team-a"}, DNSNames: []string{secure}},
		})
		crt := c.teamCertificate("team-a", "secure-granted", shared, secure)
		c.waitReady(crt, 60*time.Second)
		c.verifySecret(crt, secure)
	})

	t.Run("a Certificate that claims a Gateway it is not kept for is judged for its own namespace", func(t *testing.T) {
		// team-c writes what the shim would write, for team-a's Gateway.
		c.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-c"}})
		forged := &cmapi.Certificate{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-c", Name: "shim-a-tls",
				Labels:      map[string]string{shim.LabelGateway: "x"},
				Annotations: map[string]string{shim.AnnotationGateway: "team-a/own-shim"}},
			Spec: cmapi.CertificateSpec{SecretName: "shim-a-tls", DNSNames: []string{"shim.a.tenants.example"}, IssuerRef: shared},
		}
		c.create(forged)
		c.waitRequestMessage(forged, "namespace team-c may not get shim.a.tenants.example", "whose gateway pods are not in team-c")
	})

	t.Run("a namespaced ACMEIssuer naming another team's gateway namespace is not Ready", func(t *testing.T) {
		sol := v1alpha1.DefaultIstioHTTP01Solver()
		sol.GatewayNamespace = "team-b"
		c.create(&v1alpha1.ACMEIssuer{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "wide"},
			Spec: v1alpha1.ACMEIssuerSpec{Server: c.pebble.DirectoryURL, CABundle: c.pebble.ServerCAPEM,
				PrivateKeySecretRef: v1alpha1.SecretKeySelector{Name: "wide-account"}, Solver: v1alpha1.ACMESolver{Istio: sol}},
		})
		c.eventually("ACMEIssuer team-a/wide to be refused", 30*time.Second, func() (bool, string) {
			got := &v1alpha1.ACMEIssuer{}
			if err := c.cl.Get(ctx, client.ObjectKey{Namespace: "team-a", Name: "wide"}, got); err != nil {
				return false, err.Error()
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == "Ready" {
					return cond.Status == metav1.ConditionFalse && strings.Contains(cond.Message, `spec.solver.istio.gatewayNamespace "team-b" is not one the platform allows`), cond.Message
				}
			}
			return false, "no Ready condition"
		})
	})

	t.Run("team-b gets its names and team-a its own, and users' traffic stays", func(t *testing.T) {
		for _, tc := range []struct{ ns, name, host, app string }{{"team-b", "shop", shop, "shop-b"}, {"team-b", "secure", secure, ""}, {"team-a", "app", app, "app-a"}} {
			crt := c.teamCertificate(tc.ns, tc.name+"-own", shared, tc.host)
			c.waitReady(crt, 60*time.Second)
			c.verifySecret(crt, tc.host)
			if tc.app == "" {
				continue
			}
			code, body, err := c.gateway.Get(tc.host, "/")
			if err != nil || code != http.StatusOK || !strings.Contains(body, "user app "+tc.host) {
				t.Errorf("GET http://%s/ after issuance: %d %q %v, want %s's app", tc.host, code, body, err, tc.ns)
			}
		}
	})
}

// teamGateway creates a Gateway of a team's on the ingress gateway.
func (c *cluster) teamGateway(namespace, name string, servers ...*istioapi.Server) {
	c.t.Helper()
	gw := &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	gw.Spec.Selector = map[string]string{"istio": "ingressgateway"}
	gw.Spec.Servers = servers
	c.create(gw)
}

// teamRoute sends all of host's traffic through gateway to app, from a
// VirtualService of the team's.
func (c *cluster) teamRoute(namespace, name, gateway, host, app string) {
	c.t.Helper()
	vs := &istionet.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	vs.Spec.Hosts, vs.Spec.Gateways = []string{host}, []string{gateway}
	vs.Spec.Http = []*istioapi.HTTPRoute{{Route: []*istioapi.HTTPRouteDestination{{Destination: &istioapi.Destination{Host: app, Port: &istioapi.PortSelector{Number: 8080}}}}}}
	c.create(vs)
}

// teamCertificate creates a Certificate in a namespace, its Secret named
// after it, issued by issuer.
func (c *cluster) teamCertificate(namespace, name string, issuer cmmeta.IssuerReference, dnsNames ...string) *cmapi.Certificate {
	c.t.Helper()
	crt := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       cmapi.CertificateSpec{SecretName: name + "-tls", DNSNames: dnsNames, IssuerRef: issuer},
	}
	c.created[crt.Namespace+"/"+crt.Name] = time.Now()
	c.create(crt)
	return crt
}

// wantNoRouteFor checks that no Gateway or VirtualService of ours names
// any of the hosts.
func (c *cluster) wantNoRouteFor(t *testing.T, hosts ...string) {
	t.Helper()
	sel := client.MatchingLabels{solver.LabelManagedBy: solver.ManagedByValue}
	var gws istionet.GatewayList
	var vss istionet.VirtualServiceList
	if err := c.cl.List(context.Background(), &gws, sel); err != nil {
		t.Fatal(err)
	}
	if err := c.cl.List(context.Background(), &vss, sel); err != nil {
		t.Fatal(err)
	}
	names := func(list []string) string { return strings.Join(list, " ") }
	for _, h := range hosts {
		for _, g := range gws.Items {
			for _, s := range g.Spec.Servers {
				if strings.Contains(names(s.Hosts), h) {
					t.Errorf("Gateway %s/%s of ours serves %s", g.Namespace, g.Name, h)
				}
			}
		}
		for _, v := range vss.Items {
			if strings.Contains(names(v.Spec.Hosts), h) {
				t.Errorf("VirtualService %s/%s of ours routes %s", v.Namespace, v.Name, h)
			}
		}
	}
}
