package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	istioapi "istio.io/api/networking/v1alpha3"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
	"github.com/istio-acme/istio-acme-issuer/shim"
	"github.com/istio-acme/istio-acme-issuer/solver"
)

// TestGatewayShim: an Istio Gateway annotated with an issuer gets its
// Certificates, in the gateway pods' namespace, issued through its own
// redirect, and they follow the Gateway.
func TestGatewayShim(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	c.clusterIssuer("pebble", v1alpha1.ACMESolver{})
	ours := map[string]string{
		"cert-manager.io/issuer": "pebble", "cert-manager.io/issuer-kind": "ACMEClusterIssuer", "cert-manager.io/issuer-group": "istio-acme.io",
	}
	// A hand-written Certificate for a Secret a server will name.
	legacy := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: gatewayNamespace, Name: "legacy-tls"},
		Spec: cmapi.CertificateSpec{SecretName: "legacy-tls", DNSNames: []string{"legacy.shim.test"},
			IssuerRef: cmmeta.IssuerReference{Group: "istio-acme.io", Kind: "ACMEClusterIssuer", Name: "pebble"}},
	}
	c.create(legacy)

	// The platform's Gateway: port 80 redirects to HTTPS, where two
	// servers serve two Secrets that do not exist yet.
	platform := &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: gatewayNamespace, Name: "shop", Annotations: ours}}
	platform.Spec.Selector = map[string]string{"istio": "ingressgateway"}
	platform.Spec.Servers = []*istioapi.Server{
		{Port: &istioapi.Port{Number: 80, Name: "http", Protocol: "HTTP"}, Hosts: []string{"shop.shim.test", "www.shop.shim.test", "api.shim.test"}, Tls: &istioapi.ServerTLSSettings{HttpsRedirect: true}},
		shimHTTPS("https-shop", "shop-tls", "shop.shim.test", "www.shop.shim.test"),
		shimHTTPS("https-api", "api-tls", "api.shim.test"),
	}
	c.create(platform)
	shop, api := shimCertificate("shop-tls"), shimCertificate("api-tls")

	t.Run("two HTTPS servers: two Certificates, issued through the Gateway's own redirect", func(t *testing.T) {
		for _, tt := range []struct {
			crt   *cmapi.Certificate
			hosts []string
		}{{shop, []string{"shop.shim.test", "www.shop.shim.test"}}, {api, []string{"api.shim.test"}}} {
			elapsed := c.waitReady(tt.crt, 90*time.Second)
			issued := c.verifySecret(tt.crt, tt.hosts...)
			for _, host := range tt.hosts {
				if n := c.gateway.ServedTLS("LetsEncrypt-Pebble-VA", host, solver.ChallengePathPrefix); n == 0 {
					t.Errorf("the CA never fetched the token for %s over HTTPS after the Gateway's redirect", host)
				}
				if got, err := c.served(host); err != nil || !got.Equal(issued) {
					t.Errorf("the Gateway's HTTPS server for %s does not serve the issued certificate (%v)", host, err)
				}
			}
			got := &cmapi.Certificate{}
			if err := c.cl.Get(ctx, client.ObjectKeyFromObject(tt.crt), got); err != nil || !metav1.IsControlledBy(got, platform) {
				t.Errorf("Certificate %s is not owned by the Gateway in its namespace: %v (%v)", tt.crt.Name, got.OwnerReferences, err)
			}
			t.Logf("Certificate %s/%s Ready after %s", tt.crt.Namespace, tt.crt.Name, elapsed.Round(time.Millisecond))
		}
		c.waitNothingLeft()
	})

	t.Run("a server's hosts change: the certificate is issued again", func(t *testing.T) {
		c.updateGateway(platform, func(g *istionet.Gateway) {
			g.Spec.Servers[0].Hosts = append(g.Spec.Servers[0].Hosts, "v2.api.shim.test")
			g.Spec.Servers[2].Hosts = append(g.Spec.Servers[2].Hosts, "v2.api.shim.test")
		})
		c.eventually("the api Certificate to be issued for its new host", 90*time.Second, func() (bool, string) {
			got := &cmapi.Certificate{}
			if err := c.cl.Get(ctx, client.ObjectKeyFromObject(api), got); err != nil {
				return false, err.Error()
			}
			return slices.Contains(got.Spec.DNSNames, "v2.api.shim.test") && isReady(got) && got.Status.Revision != nil && *got.Status.Revision >= 2, c.requestState(api)
		})
		c.verifySecret(api, "api.shim.test", "v2.api.shim.test")
	})

	t.Run("a Gateway in an app namespace: the Certificate goes where the gateway pods read it", func(t *testing.T) {
		app := &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: appNamespace, Name: "team", Annotations: ours}}
		app.Spec.Selector = map[string]string{"istio": "ingressgateway"}
		app.Spec.Servers = []*istioapi.Server{
			{Port: &istioapi.Port{Number: 80, Name: "http", Protocol: "HTTP"}, Hosts: []string{"team.shim.test"}},
			shimHTTPS("https", "team-tls", "team.shim.test", "*.team.shim.test"),
			shimHTTPS("https-legacy", "legacy-tls", "legacy.shim.test"),
		}
		c.create(app)
		crt := shimCertificate("team-tls")
		c.waitReady(crt, 90*time.Second)
		c.verifySecret(crt, "team.shim.test")
		c.waitGatewayEvent(app, "CertificateCreated", "in the gateway pods' namespace "+gatewayNamespace)
		c.waitGatewayEvent(app, "ServerSkipped", "host *.team.shim.test left out: ACMEClusterIssuer pebble proves names with HTTP-01")
		c.waitGatewayEvent(app, "CertificateLeftAlone", "Certificate "+gatewayNamespace+"/legacy-tls exists and it was not created for this Gateway")
		got := &cmapi.Certificate{}
		if err := c.cl.Get(ctx, client.ObjectKeyFromObject(legacy), got); err != nil || got.Labels[shim.LabelGateway] != "" || !slices.Equal(got.Spec.DNSNames, []string{"legacy.shim.test"}) {
			t.Errorf("the hand-written Certificate was changed: %+v (%v)", got, err)
		}
		// Deleting the Gateway removes its Certificate in the other namespace.
		if err := c.cl.Delete(ctx, app); err != nil {
			t.Fatal(err)
		}
		c.waitCertificateGone(crt)
	})

	t.Run("the annotation goes: so do the Certificates", func(t *testing.T) {
		c.updateGateway(platform, func(g *istionet.Gateway) { g.Annotations = nil })
		c.waitCertificateGone(shop)
		c.waitCertificateGone(api)
		c.waitNothingLeft()
	})
}

// shimCertificate names the Certificate the shim keeps for a credential
// Secret in the gateway pods' namespace.
func shimCertificate(secret string) *cmapi.Certificate {
	return &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: gatewayNamespace, Name: secret}, Spec: cmapi.CertificateSpec{SecretName: secret}}
}

func shimHTTPS(name, credential string, hosts ...string) *istioapi.Server {
	return &istioapi.Server{
		Port:  &istioapi.Port{Number: 443, Name: name, Protocol: "HTTPS"},
		Hosts: hosts,
		Tls:   &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: credential},
	}
}

// updateGateway changes a Gateway, retrying on conflicts.
func (c *cluster) updateGateway(gw *istionet.Gateway, mutate func(*istionet.Gateway)) {
	c.t.Helper()
	c.eventually("Gateway "+gw.Name+" to be updated", 10*time.Second, func() (bool, string) {
		if err := c.cl.Get(context.Background(), client.ObjectKeyFromObject(gw), gw); err != nil {
			return false, err.Error()
		}
		mutate(gw)
		err := c.cl.Update(context.Background(), gw)
		return err == nil, fmt.Sprint(err)
	})
}

func (c *cluster) waitCertificateGone(crt *cmapi.Certificate) {
	c.t.Helper()
	c.eventually("Certificate "+crt.Namespace+"/"+crt.Name+" to be deleted", 30*time.Second, func() (bool, string) {
		err := c.cl.Get(context.Background(), client.ObjectKeyFromObject(crt), &cmapi.Certificate{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}

// waitGatewayEvent waits for an Event with reason on the Gateway whose
// note contains text.
func (c *cluster) waitGatewayEvent(gw *istionet.Gateway, reason, text string) {
	c.t.Helper()
	c.eventually("Event "+reason+" on Gateway "+gw.Name, 30*time.Second, func() (bool, string) {
		ok, found := testenv.FindEvent(context.Background(), c.cl, gw.Namespace, func(r corev1.ObjectReference) bool { return r.Kind == "Gateway" && r.Name == gw.Name }, reason, text)
		if ok {
			c.t.Logf("Event on Gateway %s/%s: %s", gw.Namespace, gw.Name, found)
		}
		return ok, found
	})
}
