package e2e

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// TestBadInput is the corpus of invalid and hostile inputs, through the
// real API server, cert-manager and our controller: each case's exact
// outcome is asserted (the API server's validation error, or the message
// the user reads, naming the object, the field and the fix), the
// controller never ends, the CA gets no order and Istio no object for what
// is refused.
func TestBadInput(t *testing.T) {
	c := startCluster(t)
	proxy := testenv.StartFaultProxy(t, c.pebble, 1) // only counts, injects nothing
	c.clusterIssuerAt("corpus", proxy.DirectoryURL, v1alpha1.ACMESolver{})
	// Pebble offers a profile of Let's Encrypt's shortlived name.
	c.clusterIssuerAt("corpus-shortlived", proxy.DirectoryURL, v1alpha1.ACMESolver{}, func(s *v1alpha1.ACMEIssuerSpec) { s.Profile = "shortlived" })

	t.Run("issuers", func(t *testing.T) { issuerCorpus(t, c, proxy) })
	t.Run("requests", func(t *testing.T) { requestCorpus(t, c, proxy) })
	t.Run("users' objects", func(t *testing.T) { userObjectCorpus(t, c) })

	if exited, err := c.controller.Exited(); exited {
		t.Fatalf("the controller ended during the corpus: %v", err)
	}
	c.waitNothingLeft()
}

// issuerCase is one ACMEClusterIssuer spec: either the API server refuses
// it (rejected), or the issuer is not Ready with a message (notReady).
type issuerCase struct {
	name string
	// spec is the issuer's spec in YAML; {{server}} and {{caBundle}} are
	// replaced by Pebble's (through the proxy).
	spec     string
	setup    func(t *testing.T, c *cluster)
	rejected []string
	notReady []string
}

func issuerCorpus(t *testing.T, c *cluster, proxy *testenv.FaultProxy) {
	html := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html><body>Welcome</body></html>")
	}))
	t.Cleanup(html.Close)
	htmlCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: html.Certificate().Raw})
	refused := "https://" + testenv.Addr(testenv.FreePort(t)) + "/dir"
	gateways17 := strings.Repeat("    - selector: {istio: ingressgateway}\n", 17)

	cases := []issuerCase{
		{name: "plain http server", spec: "server: http://ca.example/dir", rejected: []string{"spec.server", "https://", "RFC 8555 requires HTTPS"}},
		{name: "server with a space", spec: "server: https://ca.example/a dir", rejected: []string{"spec.server", "without spaces"}},
		{name: "server not a URL", spec: "server: ca.example", rejected: []string{"spec.server", "https://"}},
		{name: "unreachable directory", spec: "server: " + refused, notReady: []string{"cannot reach the ACME server", "connection refused", "check spec.server"}},
		{name: "an HTML page instead of a directory", spec: "server: " + html.URL + "/\ncaBundle: {{htmlCA}}", notReady: []string{"check that spec.server is the ACME directory URL"}},
		{name: "email without @", spec: "server: {{server}}\ncaBundle: {{caBundle}}\nemail: platform", rejected: []string{"spec.email"}},
		{name: "email with a space", spec: "server: {{server}}\ncaBundle: {{caBundle}}\nemail: a b@example.org", rejected: []string{"spec.email"}},
		{name: "garbage caBundle", spec: "server: {{server}}\ncaBundle: " + b64("not a certificate"), notReady: []string{"spec.caBundle holds no PEM certificate"}},
		{name: "caBundle of another CA", spec: "server: {{server}}\ncaBundle: {{htmlCA}}", notReady: []string{"TLS verification of the ACME server failed", "spec.caBundle"}},
		{name: "EAB without its Secret", spec: "server: {{server}}\ncaBundle: {{caBundle}}\nexternalAccountBinding: {keyID: kid, keySecretRef: {name: no-such-eab}}", notReady: []string{"Secret istio-acme-issuer/no-such-eab", "spec.externalAccountBinding.keySecretRef", "does not exist"}},
		{name: "EAB key not base64url", spec: "server: {{server}}\ncaBundle: {{caBundle}}\nexternalAccountBinding: {keyID: kid, keySecretRef: {name: eab-garbage}}",
			setup: secret("eab-garbage", "secret", "%%% not base64 %%%"), notReady: []string{"eab-garbage", "is not base64url"}},
		{name: "EAB without a key ID", spec: "server: {{server}}\ncaBundle: {{caBundle}}\nexternalAccountBinding: {keyID: '', keySecretRef: {name: eab}}", rejected: []string{"spec.externalAccountBinding.keyID"}},
		{name: "account key Secret holding garbage", spec: "server: {{server}}\ncaBundle: {{caBundle}}\nprivateKeySecretRef: {name: key-garbage}",
			setup: secret("key-garbage", "tls.key", "garbage"), notReady: []string{"Secret istio-acme-issuer/key-garbage", "is not a PEM private key", "left untouched"}},
		{name: "weak RSA account key", spec: "server: {{server}}\ncaBundle: {{caBundle}}\nprivateKeySecretRef: {name: key-weak}",
			setup: secret("key-weak", "tls.key", string(rsaKeyPEM(t, 1024))), notReady: []string{"key-weak", "RSA key of 1024 bits", "2048"}},
		{name: "account key on curve P-521", spec: "server: {{server}}\ncaBundle: {{caBundle}}\nprivateKeySecretRef: {name: key-p521}",
			setup: secret("key-p521", "tls.key", string(ecKeyPEM(t, elliptic.P521()))), notReady: []string{"key-p521", "curve P-521", "P-256"}},
		{name: "no privateKeySecretRef name", spec: "server: {{server}}\ncaBundle: {{caBundle}}\nprivateKeySecretRef: {name: ''}", rejected: []string{"spec.privateKeySecretRef.name"}},
		{name: "no gateway entries", spec: "server: {{server}}\ncaBundle: {{caBundle}}\nsolver: {istio: {gateways: []}}", rejected: []string{"spec.solver.istio.gateways", "at least 1"}},
		{name: "17 gateway entries", spec: "server: {{server}}\ncaBundle: {{caBundle}}\nsolver:\n  istio:\n    gateways:\n" + gateways17, rejected: []string{"spec.solver.istio.gateways", "at most 16"}},
		{name: "a gateway entry without a selector", spec: "server: {{server}}\ncaBundle: {{caBundle}}\nsolver: {istio: {gateways: [{selector: {}}]}}", rejected: []string{"spec.solver.istio.gateways[0].selector"}},
		{name: "an invalid gateway namespace", spec: "server: {{server}}\ncaBundle: {{caBundle}}\nsolver: {istio: {gatewayNamespace: Istio_System}}", rejected: []string{"spec.solver.istio.gatewayNamespace", "must be a Kubernetes name"}},
		{name: "an invalid gateway pods' namespace", spec: "server: {{server}}\ncaBundle: {{caBundle}}\nsolver: {istio: {gateways: [{selector: {istio: x}, namespace: -edge}]}}", rejected: []string{"spec.solver.istio.gateways[0].namespace", "must be a Kubernetes name"}},
		{name: "tokenService port 0", spec: "server: {{server}}\ncaBundle: {{caBundle}}\nsolver: {istio: {tokenService: {port: 0}}}", rejected: []string{"spec.solver.istio.tokenService.port", "greater than or equal to 1"}},
		{name: "tokenService port 70000", spec: "server: {{server}}\ncaBundle: {{caBundle}}\nsolver: {istio: {tokenService: {port: 70000}}}", rejected: []string{"spec.solver.istio.tokenService.port", "less than or equal to 65535"}},
		{name: "an invalid tokenService name", spec: "server: {{server}}\ncaBundle: {{caBundle}}\nsolver: {istio: {tokenService: {name: Token.Server}}}", rejected: []string{"spec.solver.istio.tokenService.name", "must be a Kubernetes name"}},
		{name: "an unknown profile", spec: "server: {{server}}\ncaBundle: {{caBundle}}\nprofile: everlasting", notReady: []string{`spec.profile "everlasting" is not offered`, "default, shortlived"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(t, c)
			}
			spec := strings.NewReplacer("{{server}}", proxy.DirectoryURL, "{{caBundle}}", b64(string(c.pebble.ServerCAPEM)), "{{htmlCA}}", b64(string(htmlCA))).Replace(tc.spec)
			if !strings.Contains(spec, "privateKeySecretRef") {
				spec += fmt.Sprintf("\nprivateKeySecretRef: {name: corpus-key-%d}", i)
			}
			obj := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte("apiVersion: istio-acme.io/v1alpha1\nkind: ACMEClusterIssuer\nmetadata: {name: bad-"+fmt.Sprint(i)+"}\nspec:\n"+indent(spec)), &obj.Object); err != nil {
				t.Fatalf("the case's YAML: %v", err)
			}
			err := c.cl.Create(context.Background(), obj)
			if tc.rejected != nil {
				if err == nil {
					t.Fatalf("the API server accepted the issuer; want it refused for %q", tc.rejected)
				}
				wantParts(t, err.Error(), tc.rejected)
				return
			}
			if err != nil {
				t.Fatalf("creating the issuer: %v", err)
			}
			msg := c.issuerNotReady(obj.GetName())
			wantParts(t, msg, tc.notReady)
		})
	}
}

// issuerNotReady waits until the issuer's Ready condition is False with a
// message from the controller and returns it.
func (c *cluster) issuerNotReady(name string) string {
	c.t.Helper()
	var msg string
	c.eventually("ACMEClusterIssuer "+name+" to report why it is not Ready", 30*time.Second, func() (bool, string) {
		_, ready, why := c.issuerReady(name)
		if ready == nil {
			return false, why
		}
		if ready.Status == metav1.ConditionTrue {
			c.t.Fatalf("ACMEClusterIssuer %s is Ready", name)
		}
		msg = ready.Message
		return ready.Reason != "Initializing" && msg != "" && !strings.Contains(msg, "not checked yet"), msg
	})
	return msg
}

// requestCase is one CertificateRequest: refused (failed) with a message, or
// issued (issued lists the certificate's names).
type requestCase struct {
	name string
	// issuer is the ACMEClusterIssuer asked, "corpus" when empty.
	issuer string
	csr    []byte
	failed []string
	issued []string
}

func requestCorpus(t *testing.T, c *cluster, proxy *testenv.FaultProxy) {
	long63 := strings.Repeat("a", 63)
	tooMany := make([]string, 101)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("n%d.many.example.com", i)
	}
	broken := csrFor(t, &x509.CertificateRequest{DNSNames: []string{"broken.example.com"}})
	broken = breakSignature(t, broken)
	cases := []requestCase{
		{name: "wildcard", csr: csrFor(t, &x509.CertificateRequest{DNSNames: []string{"*.wild.example.com"}}), failed: []string{"HTTP-01 cannot prove wildcard names (*.wild.example.com)", "DNS-01"}},
		{name: "IP address SAN", csr: csrFor(t, &x509.CertificateRequest{DNSNames: []string{"ip.example.com"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}}), failed: []string{"asks for an IP address", "Host header", "spec.dnsNames"}},
		{name: "URI SAN", csr: csrFor(t, &x509.CertificateRequest{DNSNames: []string{"uri.example.com"}, URIs: []*url.URL{{Scheme: "spiffe", Host: "td", Path: "/x"}}}), failed: []string{"IP, URI or email"}},
		{name: "email SAN", csr: csrFor(t, &x509.CertificateRequest{DNSNames: []string{"mail.example.com"}, EmailAddresses: []string{"a@example.com"}}), failed: []string{"IP, URI or email"}},
		{name: "no names", csr: csrFor(t, &x509.CertificateRequest{}), failed: []string{"no DNS names", "spec.dnsNames"}},
		{name: "an IP address as a DNS name", csr: csrFor(t, &x509.CertificateRequest{DNSNames: []string{"192.0.2.1"}}), failed: []string{`"192.0.2.1" is an IP address`, "Host header"}},
		{name: "more names than the profile takes", issuer: "corpus-shortlived", csr: csrFor(t, &x509.CertificateRequest{DNSNames: tooMany[:26]}), failed: []string{"26 DNS names", `spec.profile "shortlived"`, "at most 25"}},
		{name: "a request with a Common Name the profile leaves out", issuer: "corpus-shortlived", csr: csrFor(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "short.example.com"}, DNSNames: []string{"short.example.com"}}), issued: []string{"short.example.com"}},
		{name: "more names than CAs allow", csr: csrFor(t, &x509.CertificateRequest{DNSNames: tooMany}), failed: []string{"101 DNS names", "at most 100", "split the Certificate"}},
		{name: "an underscore", csr: csrFor(t, &x509.CertificateRequest{DNSNames: []string{"my_app.example.com"}}), failed: []string{`"my_app.example.com"`, "underscore", "spec.dnsNames"}},
		{name: "a label over 63 characters", csr: csrFor(t, &x509.CertificateRequest{DNSNames: []string{long63 + "a.example.com"}}), failed: []string{"64 characters long, the limit is 63"}},
		{name: "a name over 253 characters", csr: csrFor(t, &x509.CertificateRequest{DNSNames: []string{strings.Repeat(long63+".", 4) + "example.com"}}), failed: []string{"the limit is 253"}},
		{name: "a single label", csr: csrFor(t, &x509.CertificateRequest{DNSNames: []string{"intranet"}}), failed: []string{`"intranet"`, "single label"}},
		{name: "a space in a name", csr: csrFor(t, &x509.CertificateRequest{DNSNames: []string{"my app.example.com"}}), failed: []string{`holds ' '`}},
		{name: "a leading hyphen", csr: csrFor(t, &x509.CertificateRequest{DNSNames: []string{"-app.example.com"}}), failed: []string{"starts or ends with a hyphen"}},
		{name: "an empty label", csr: csrFor(t, &x509.CertificateRequest{DNSNames: []string{"app..example.com"}}), failed: []string{"empty label"}},
		{name: "a broken CSR signature", csr: broken, failed: []string{"CSR signature is invalid"}},
		{name: "a CSR that is not PEM", csr: []byte("hello"), failed: []string{"decoding the request's CSR"}},
		{name: "upper case", csr: csrFor(t, &x509.CertificateRequest{DNSNames: []string{"Upper.Example.com"}}), failed: []string{`"Upper.Example.com"`, `write it as "upper.example.com"`, "spec.dnsNames"}},
		{name: "a trailing dot", csr: csrFor(t, &x509.CertificateRequest{DNSNames: []string{"dot.example.com."}}), failed: []string{`"dot.example.com."`, `write it as "dot.example.com"`}},
		{name: "a name listed twice", csr: csrFor(t, &x509.CertificateRequest{DNSNames: []string{"twice.example.com", "twice.example.com"}}), failed: []string{`"twice.example.com"`, "once"}},
		{name: "an internationalized name in punycode", csr: csrFor(t, &x509.CertificateRequest{DNSNames: []string{"xn--bcher-kva.example.com"}}), issued: []string{"xn--bcher-kva.example.com"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cr := &cmapi.CertificateRequest{
				ObjectMeta: metav1.ObjectMeta{Namespace: appNamespace, Name: fmt.Sprintf("corpus-%d", i)},
				Spec: cmapi.CertificateRequestSpec{
					Request:   tc.csr,
					IssuerRef: cmmeta.IssuerReference{Group: "istio-acme.io", Kind: "ACMEClusterIssuer", Name: cmp.Or(tc.issuer, "corpus")},
				},
			}
			ordersBefore := newOrders(proxy)
			c.create(cr)
			reason, msg := c.requestSettled(cr)
			if tc.issued != nil {
				if reason != cmapi.CertificateRequestReasonIssued {
					t.Fatalf("request %s: %s, want it issued", reason, msg)
				}
				got := &cmapi.CertificateRequest{}
				if err := c.cl.Get(context.Background(), client.ObjectKeyFromObject(cr), got); err != nil {
					t.Fatal(err)
				}
				block, _ := pem.Decode(got.Status.Certificate)
				if block == nil {
					t.Fatal("no certificate in the request's status")
				}
				leaf, err := x509.ParseCertificate(block.Bytes)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Join(leaf.DNSNames, ",") != strings.Join(tc.issued, ",") {
					t.Errorf("issued for %v, want %v", leaf.DNSNames, tc.issued)
				}
				return
			}
			if reason != cmapi.CertificateRequestReasonFailed {
				t.Fatalf("request %s: %s, want it failed", reason, msg)
			}
			wantParts(t, msg, tc.failed)
			if n := newOrders(proxy) - ordersBefore; n > 0 {
				t.Errorf("the CA got %d orders for a refused request", n)
			}
			if left := c.ourObjectsLeft(); len(left) > 0 {
				t.Errorf("Istio objects or challenges exist for a refused request: %v", left)
			}
		})
	}
}

// newOrders counts the new-order requests the CA has received.
func newOrders(proxy *testenv.FaultProxy) int {
	n := 0
	for _, r := range proxy.Requests() {
		if r.Endpoint == testenv.EndpointNewOrder {
			n++
		}
	}
	return n
}

// requestSettled waits until the request is issued or failed and returns
// the Ready condition's reason and message.
func (c *cluster) requestSettled(cr *cmapi.CertificateRequest) (string, string) {
	c.t.Helper()
	var reason, msg string
	c.eventually("CertificateRequest "+cr.Name+" to be issued or failed", 60*time.Second, func() (bool, string) {
		got := &cmapi.CertificateRequest{}
		if err := c.cl.Get(context.Background(), client.ObjectKeyFromObject(cr), got); err != nil {
			return false, err.Error()
		}
		for _, cond := range got.Status.Conditions {
			if cond.Type == cmapi.CertificateRequestConditionReady {
				reason, msg = cond.Reason, cond.Message
				return reason == cmapi.CertificateRequestReasonIssued || reason == cmapi.CertificateRequestReasonFailed, cond.Message
			}
		}
		return false, "no Ready condition"
	})
	return reason, msg
}

// userObjectCorpus writes malformed Gateways and VirtualServices next to a
// Certificate: the controller keeps running and issues through what is
// valid.
func userObjectCorpus(t *testing.T, c *cluster) {
	app := c.userApp("corpus-app", appNamespace)
	gateway := func(name string, hosts ...string) {
		gw := &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: appNamespace, Name: name}}
		gw.Spec.Selector = map[string]string{"istio": "ingressgateway"}
		gw.Spec.Servers = []*istioapi.Server{{Port: &istioapi.Port{Number: 80, Name: "http", Protocol: "HTTP"}, Hosts: hosts}}
		c.create(gw)
	}
	t.Run("Gateways with malformed hosts", func(t *testing.T) {
		gateway("bad-hosts", "a/b/c.bad.example.com", "*foo.bad.example.com", "", "ns/", "*.*.bad.example.com", "UPPER.bad.example.com")
		crt := c.certificate("corpus-gw", "corpus", "ok.bad.example.com")
		c.waitReady(crt, 60*time.Second)
	})
	t.Run("a VirtualService with an invalid regex for the host", func(t *testing.T) {
		gateway("regex-gw", "regex.bad.example.com")
		vs := &istionet.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: appNamespace, Name: "bad-regex"}}
		vs.Spec.Hosts = []string{"regex.bad.example.com"}
		vs.Spec.Gateways = []string{"regex-gw"}
		vs.Spec.Http = []*istioapi.HTTPRoute{{
			Match: []*istioapi.HTTPMatchRequest{{Uri: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Regex{Regex: "/(unclosed"}}}},
			Route: []*istioapi.HTTPRouteDestination{{Destination: &istioapi.Destination{Host: app}}},
		}}
		c.create(vs)
		// Envoy refuses the route configuration (istiod's validation
		// webhook would have refused the VirtualService): the challenge's
		// route is not served, the self-check says so, and the CA is never
		// asked to validate.
		crt := c.certificate("corpus-regex", "corpus", "regex.bad.example.com")
		var state string
		c.eventually("the self-check to report the refused configuration", 60*time.Second, func() (bool, string) {
			state = c.requestState(crt)
			return strings.Contains(state, "self-check failed") && strings.Contains(state, "500"), state
		})
		// The answer's body (the test gateway says which route Envoy
		// rejects) is not quoted: the request's status is the requesting
		// namespace's to read, and the body is someone else's.
		wantParts(t, state, []string{"regex.bad.example.com: publishing routes", "Gateway apps/regex-gw", "returned 500 with a", "-byte body"})
		if n := c.gateway.Served("", "regex.bad.example.com", "/.well-known/acme-challenge/"); n > 0 {
			t.Errorf("the gateway served the token %d times", n)
		}
		// The refused configuration stops every new route on the port,
		// everybody's: remove it, as its owner would.
		for _, o := range []client.Object{crt, vs} {
			if err := c.cl.Delete(context.Background(), o); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("a thousand unrelated Gateways", func(t *testing.T) {
		for i := range 1000 {
			gateway(fmt.Sprintf("many-%d", i), fmt.Sprintf("h%d.many.example.org", i))
		}
		crt := c.certificate("corpus-many", "corpus", "after.many.example.com")
		elapsed := c.waitReady(crt, 120*time.Second)
		t.Logf("issued with 1,000 more Gateways in the cluster in %s", elapsed.Round(time.Millisecond))
	})
}

func wantParts(t *testing.T, msg string, parts []string) {
	t.Helper()
	t.Logf("message: %s", msg)
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("message %q lacks %q", msg, p)
		}
	}
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

func b64(s string) string {
	return base64.StdEncoding.EncodeToString([]byte(s))
}

// secret returns a setup that creates a Secret in the controller's
// namespace (an ACMEClusterIssuer's Secrets live there).
func secret(name, key, value string) func(t *testing.T, c *cluster) {
	return func(t *testing.T, c *cluster) {
		c.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: controllerNamespace, Name: name}, Data: map[string][]byte{key: []byte(value)}})
	}
}

func rsaKeyPEM(t *testing.T, bits int) []byte {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

func ecKeyPEM(t *testing.T, curve elliptic.Curve) []byte {
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

func csrFor(t *testing.T, tmpl *x509.CertificateRequest) []byte {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// breakSignature flips a bit in the CSR's signature.
func breakSignature(t *testing.T, csrPEM []byte) []byte {
	block, _ := pem.Decode(csrPEM)
	if block == nil {
		t.Fatal("not PEM")
	}
	der := append([]byte(nil), block.Bytes...)
	der[len(der)-1] ^= 0x01
	return pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: der})
}
