package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	istioapi "istio.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
	"github.com/istio-acme/istio-acme-issuer/solver"
)

// TestFirstIssuanceBehindRedirect issues the first certificate of hosts
// whose port 80 redirects to an HTTPS server that cannot complete a
// handshake yet, because its credential Secret does not exist. The test
// gateway answers TLS as Istio does: with the credential of the server the
// SNI selects, and no handshake at all while that Secret is missing.
func TestFirstIssuanceBehindRedirect(t *testing.T) {
	c := startCluster(t)
	c.clusterIssuer("pebble", v1alpha1.ACMESolver{})
	app := c.userApp("first-app", appNamespace)

	t.Run("a wildcard HTTPS server whose Secret does not exist: issued through a temporary HTTPS server, the CA never meets a failing handshake", func(t *testing.T) {
		// The platform's Gateway: everything under *.first.test redirects
		// to HTTPS, whose wildcard certificate is not there yet.
		c.redirectingGateway("first", "*.first.test", "first-wildcard-tls")
		c.userRoute("shop-first", gatewayNamespace+"/first", "shop.first.test", app, "/")
		host := "shop.first.test"
		if code := c.getStatus(host); code != http.StatusMovedPermanently {
			t.Fatalf("GET http://%s/ = %d before issuance, want the user's redirect (301)", host, code)
		}
		if err := c.handshake(host); err == nil {
			t.Fatalf("a TLS handshake for %s succeeded although its server's credential Secret does not exist", host)
		}
		failedBefore := c.gateway.FailedHandshakes(host)

		elapsed := c.issue("shop-first", "pebble", host)
		if n := c.gateway.ServedTLS("LetsEncrypt-Pebble-VA", host, solver.ChallengePathPrefix); n == 0 {
			t.Error("the CA never fetched the token over HTTPS after the redirect")
		}
		if n := c.gateway.FailedHandshakes(host) - failedBefore; n != 0 {
			t.Errorf("%d TLS handshakes for %s failed during issuance: the CA or the self-check met the server without a certificate", n, host)
		}
		t.Logf("Ready after %s through a temporary HTTPS server for exactly %s", elapsed.Round(time.Millisecond), host)
		c.waitNothingLeft()
		// Nothing of the user's changed: port 80 still redirects, and the
		// wildcard server still has no certificate.
		if code := c.getStatus(host); code != http.StatusMovedPermanently {
			t.Errorf("GET http://%s/ = %d after issuance, want the user's redirect (301)", host, code)
		}
		if err := c.handshake(host); err == nil {
			t.Errorf("a TLS handshake for %s succeeded after the temporary server was removed", host)
		}
	})

	t.Run("an exact-host HTTPS server whose Secret is the one being issued: issued without a manual step, through that server with cert-manager's temporary certificate", func(t *testing.T) {
		host := "fresh.first.test"
		c.redirectingGateway("fresh", host, "fresh-tls")
		c.userRoute("fresh-first", gatewayNamespace+"/fresh", host, app, "/")
		failedBefore := len(c.pebble.FailedValidations())
		// The Certificate the platform writes for that server: in the
		// gateway pods' namespace, its Secret the server's credentialName,
		// and nothing else.
		crt := c.serverCertificate("fresh", host, nil)
		elapsed := c.waitReady(crt, 90*time.Second)
		c.verifySecret(crt, host)
		if n := c.gateway.ServedTLS("LetsEncrypt-Pebble-VA", host, solver.ChallengePathPrefix); n == 0 {
			t.Error("the CA never fetched the token over HTTPS through the user's server")
		}
		if n := c.gateway.FailedHandshakes(host); n != 0 {
			t.Errorf("%d TLS handshakes for %s failed", n, host)
		}
		if failed := c.pebble.FailedValidations()[failedBefore:]; len(failed) != 0 {
			t.Errorf("the CA failed %d validations: %v", len(failed), failed)
		}
		if c.createdGatewayFor(host) {
			t.Error("the controller created a Gateway of its own although the user's server works with the temporary certificate")
		}
		ctx := context.Background()
		c.eventually("cert-manager's temporary certificate Event", 10*time.Second, func() (bool, string) {
			return testenv.FindEvent(ctx, c.cl, crt.Namespace, isCertificate(crt), "Issuing", "Issued temporary certificate")
		})
		t.Logf("Ready %s after creation, through the user's HTTPS server", elapsed.Round(time.Millisecond))
		c.waitNothingLeft()
		c.eventually("the temporary-certificate annotation to be removed with the challenge", 10*time.Second, func() (bool, string) {
			got := c.getCertificate(crt)
			v, set := got.Annotations[cmapi.IssueTemporaryCertificateAnnotation]
			return !set, "annotation " + v
		})
		// The server now answers with the issued certificate.
		issued := c.verifySecret(crt, host)
		if got, err := c.served(host); err != nil || !got.Equal(issued) {
			t.Errorf("the user's HTTPS server for %s does not serve the issued certificate (%v)", host, err)
		}

		// A renewal goes through the user's own server, which now works.
		// The CA may reuse the first issuance's authorization instead of
		// validating again (Pebble does for about 1 % of orders even when
		// told never to): such a renewal fetches nothing and says nothing
		// about the route, so it is renewed again.
		const agent = "LetsEncrypt-Pebble-VA"
		for revision := 2; ; revision++ {
			servedBefore := c.gateway.ServedTLS(agent, host, solver.ChallengePathPrefix)
			askedBefore := c.gateway.Answered(agent, host, solver.ChallengePathPrefix)
			c.cmctl("renew", crt.Name, "-n", crt.Namespace)
			c.eventually("the renewed certificate", 60*time.Second, func() (bool, string) {
				got := &cmapi.Certificate{}
				if err := c.cl.Get(ctx, client.ObjectKeyFromObject(crt), got); err != nil {
					return false, err.Error()
				}
				return got.Status.Revision != nil && *got.Status.Revision >= revision && isReady(got), c.requestState(crt)
			})
			renewed := c.verifySecret(crt, host)
			if renewed.SerialNumber.Cmp(issued.SerialNumber) == 0 {
				t.Error("the renewal left the same certificate in the Secret")
			}
			issued = renewed
			if c.gateway.Answered(agent, host, solver.ChallengePathPrefix) == askedBefore {
				if revision == 4 {
					t.Fatalf("the CA reused its authorization for %s in three renewals in a row; no renewal was validated", host)
				}
				t.Logf("the CA reused its authorization for %s (nothing validated); renewing again", host)
				continue
			}
			if n := c.gateway.ServedTLS(agent, host, solver.ChallengePathPrefix) - servedBefore; n == 0 {
				t.Error("the CA did not fetch the renewal's token over HTTPS")
			}
			break
		}
		if c.createdGatewayFor(host) {
			t.Error("the renewal used a Gateway of our own instead of the user's working HTTPS server")
		}
		if n := c.gateway.FailedHandshakes(host); n != 0 {
			t.Errorf("%d TLS handshakes for %s failed", n, host)
		}
		c.waitNothingLeft()
	})

	t.Run("an exact-host HTTPS server whose Certificate asks for the temporary certificate itself: issued, and the annotation left as written", func(t *testing.T) {
		host := "asked.first.test"
		c.redirectingGateway("asked", host, "asked-tls")
		c.userRoute("asked-first", gatewayNamespace+"/asked", host, app, "/")
		crt := c.serverCertificate("asked", host, map[string]string{cmapi.IssueTemporaryCertificateAnnotation: "true"})
		c.waitReady(crt, 90*time.Second)
		c.verifySecret(crt, host)
		c.waitNothingLeft()
		got := c.getCertificate(crt)
		if v := got.Annotations[cmapi.IssueTemporaryCertificateAnnotation]; v != "true" {
			t.Errorf("the author's annotation is %q after issuance, want \"true\"", v)
		}
		for _, f := range got.ManagedFields {
			if f.Manager == "istio-acme-issuer-first-issuance" {
				t.Errorf("the controller applied the annotation the author had already set")
			}
		}
	})

	t.Run("a Certificate in another namespace whose secretName matches the server's credential gets no temporary certificate asked for", func(t *testing.T) {
		// The Secret the server serves lives in the gateway pods'
		// namespace; a team's Certificate of the same secretName fills
		// its own namespace's Secret, so the controller must not ask
		// cert-manager for anything on its behalf.
		host := "guard.first.test"
		c.redirectingGateway("guard", host, "guard-tls")
		c.userRoute("guard-first", gatewayNamespace+"/guard", host, app, "/")
		crt := c.teamCertificate(appNamespace, "guard", cmmeta.IssuerReference{Group: "istio-acme.io", Kind: "ACMEClusterIssuer", Name: "pebble"}, host)
		c.waitRequestMessage(crt, "a temporary HTTPS server cannot take over", "Secret "+gatewayNamespace+"/guard-tls does not exist yet")
		got := c.getCertificate(crt)
		if v, set := got.Annotations[cmapi.IssueTemporaryCertificateAnnotation]; set {
			t.Errorf("the team's Certificate was annotated %q", v)
		}
		if n := c.gateway.Served("", host, solver.ChallengePathPrefix); n != 0 {
			t.Errorf("the token was requested %d times although no route could reach it", n)
		}
		if err := c.cl.Delete(context.Background(), got); err != nil {
			t.Fatal(err)
		}
		c.waitNothingLeft()
	})

	t.Run("an exact-host HTTPS server whose Certificate turns the temporary certificate off: explained, and the annotation left as written", func(t *testing.T) {
		host := "off.first.test"
		c.redirectingGateway("off", host, "off-tls")
		c.userRoute("off-first", gatewayNamespace+"/off", host, app, "/")
		crt := c.serverCertificate("off", host, map[string]string{cmapi.IssueTemporaryCertificateAnnotation: "false"})
		c.waitRequestMessage(crt, `sets cert-manager.io/issue-temporary-certificate: "false"`,
			"http://off.first.test is redirected to HTTPS", "Secret "+gatewayNamespace+"/off-tls does not exist yet", "remove the annotation or set it to")
		if got := c.getCertificate(crt).Annotations[cmapi.IssueTemporaryCertificateAnnotation]; got != "false" {
			t.Errorf("the Certificate's annotation is %q, want the author's \"false\"", got)
		}
		if n := c.gateway.Served("", host, solver.ChallengePathPrefix); n != 0 {
			t.Errorf("the token was requested %d times although no route could reach it", n)
		}
		if err := c.cl.Delete(context.Background(), crt); err != nil {
			t.Fatal(err)
		}
		c.waitNothingLeft()
	})

	// The CA never judged a challenge invalid: every validation it made
	// was answered with the token.
	if n := c.metricSum("istio_acme_challenges_total", `outcome="invalid"`); n != 0 {
		t.Errorf("istio_acme_challenges_total{outcome=\"invalid\"} = %v, want 0", n)
	}
	if n := c.metricSum("istio_acme_challenges_total", `outcome="valid"`); n != 4 {
		t.Errorf("istio_acme_challenges_total{outcome=\"valid\"} = %v, want 4 (three first issuances and a renewal the CA validated)", n)
	}
}

// serverCertificate creates the platform's Certificate for its HTTPS
// server for host: in the gateway pods' namespace, its Secret name-tls (the
// server's credentialName), from the pebble ACMEClusterIssuer, with the
// annotations given.
func (c *cluster) serverCertificate(name, host string, annotations map[string]string) *cmapi.Certificate {
	c.t.Helper()
	crt := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: gatewayNamespace, Name: name, Annotations: annotations},
		Spec: cmapi.CertificateSpec{
			SecretName: name + "-tls",
			DNSNames:   []string{host},
			IssuerRef:  cmmeta.IssuerReference{Group: "istio-acme.io", Kind: "ACMEClusterIssuer", Name: "pebble"},
		},
	}
	c.created[crt.Namespace+"/"+crt.Name] = time.Now()
	c.create(crt)
	return crt
}

// served returns the leaf certificate the gateway presents for SNI host.
func (c *cluster) served(host string) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", c.gateway.TLSAddr, &tls.Config{ServerName: host, InsecureSkipVerify: true}) //nolint:gosec // the test compares what is served
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// redirectingGateway creates a platform Gateway: port 80 for host
// redirects to HTTPS, and port 443 for host serves the credential Secret
// named credential.
func (c *cluster) redirectingGateway(name, host, credential string) {
	c.t.Helper()
	redirect := httpServer(host)
	redirect.Tls = &istioapi.ServerTLSSettings{HttpsRedirect: true}
	c.platformGateway(name, redirect, &istioapi.Server{
		Port: &istioapi.Port{Number: 443, Name: "https", Protocol: "HTTPS"}, Hosts: []string{host},
		Tls: &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: credential},
	})
}

// getStatus is the status of GET http://host/ through the gateway.
func (c *cluster) getStatus(host string) int {
	c.t.Helper()
	code, _, err := c.gateway.Get(host, "/")
	if err != nil {
		c.t.Fatalf("GET http://%s/: %v", host, err)
	}
	return code
}

// handshake opens a TLS connection with SNI host to the gateway's port 443.
func (c *cluster) handshake(host string) error {
	_, err := c.served(host)
	return err
}
