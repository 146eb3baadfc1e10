package issuer

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
	"github.com/istio-acme/istio-acme-issuer/solver"
)

// The order state cases that apply to any CA, against Smallstep's step-ca
// (external account binding required, no renewal information), so that
// the order state machine is not only proven on Pebble's answers. Its
// validator resolves every name to this machine and fetches the token from
// the controller's own token server, which answers from the ACMEChallenges
// in the API server.
func TestOrderStatesStepCA(t *testing.T) {
	b := &orderBench{t: t, api: testenv.StartAPIServer(t)}
	// Pebble's DNS server answers 127.0.0.1 for every name.
	dns := testenv.StartPebble(t, testenv.PebbleOptions{})
	tokenPort := testenv.FreePort(t)
	ca := testenv.StartStepCA(t, testenv.StepCAOptions{HTTPPort: tokenPort, DNSAddr: dns.DNSAddr})
	b.api.CreateNamespaces(t, "istio-acme-issuer", orderNamespace)
	b.cl = &flakyClient{Client: b.api.Client}
	b.events = events.NewFakeRecorder(100)
	b.signer = b.newSigner(nil)

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	tokens := &solver.TokenServer{Addr: testenv.Addr(tokenPort), Log: log.FromContext(ctx), Lookup: func(ctx context.Context, token string) ([]v1alpha1.ACMEChallenge, error) {
		var list v1alpha1.ACMEChallengeList
		if err := b.api.Client.List(ctx, &list); err != nil {
			return nil, err
		}
		var out []v1alpha1.ACMEChallenge
		for _, ch := range list.Items {
			if ch.Spec.Token == token {
				out = append(out, ch)
			}
		}
		return out, nil
	}}
	done := make(chan error, 1)
	go func() { done <- tokens.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	mustCreate(t, b.api.Client, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-acme-issuer", Name: "step-ca-eab"},
		Data:       map[string][]byte{"secret": []byte(ca.EABHMACKey)},
	})
	iss := clusterIssuer(t, b.api.Client, "step-ca", v1alpha1.ACMEIssuerSpec{
		Server: ca.DirectoryURL, CABundle: ca.RootPEM,
		ExternalAccountBinding: &v1alpha1.ExternalAccountBinding{KeyID: ca.EABKeyID, KeySecretRef: v1alpha1.SecretKeySelector{Name: "step-ca-eab"}},
	})
	if err := b.signer.Check(context.Background(), iss); err != nil {
		t.Fatalf("registering an account with external account binding at step-ca: %v", err)
	}
	if err := b.api.Client.Get(context.Background(), client.ObjectKeyFromObject(iss), iss); err != nil {
		t.Fatal(err)
	}
	b.valid = iss

	b.run(t, "a new order publishes one challenge per name, and nothing is asked of the CA until they are presented", func(t *testing.T) {
		cr := b.request(t, iss, "new", "a.new.example.com", "b.new.example.com")
		_, err := b.sign(cr)
		wantPending(t, err, "a.new.example.com: publishing routes", "b.new.example.com: publishing routes")
		order := b.order(t, cr)
		if order.Status.URL == "" || order.Status.State != "pending" {
			t.Errorf("ACMEOrder status %+v, want the order's URL and state pending", order.Status)
		}
		if n := len(b.challenges(t, cr)); n != 2 {
			t.Errorf("%d ACMEChallenges, want 2", n)
		}
		_, err = b.sign(cr)
		wantPending(t, err, "publishing routes")
		if again := b.order(t, cr); again.Status.URL != order.Status.URL {
			t.Errorf("a second pass placed order %s, want the first, %s", again.Status.URL, order.Status.URL)
		}
	})

	b.run(t, "presented challenges are validated, the order finalized and the certificate returned, chained to step-ca's root", func(t *testing.T) {
		cr := b.placed(t, "issue", "issue.example.com", "www.issue.example.com")
		b.present(t, cr)
		bundle := b.signUntilDone(t, cr)
		leaf := verifyChain(t, bundle.ChainPEM, ca.RootPEM, "issue.example.com", "www.issue.example.com")
		if order := b.order(t, cr); order.Status.State != "valid" {
			t.Errorf("order state %q, want valid", order.Status.State)
		}
		if n := len(b.challenges(t, cr)); n != 0 {
			t.Errorf("%d ACMEChallenges left after issuance", n)
		}
		t.Logf("step-ca issued serial %x for %v", leaf.SerialNumber, leaf.DNSNames)
	})

	b.run(t, "a controller that restarts mid-order resumes the same order", func(t *testing.T) {
		cr := b.placed(t, "resume", "resume.example.com")
		url := b.order(t, cr).Status.URL
		b.signer = b.newSigner(nil)
		b.present(t, cr)
		verifyChain(t, b.signUntilDone(t, cr).ChainPEM, ca.RootPEM, "resume.example.com")
		if got := b.order(t, cr).Status.URL; got != url {
			t.Errorf("the restarted controller finished order %s, want the one placed before, %s", got, url)
		}
	})

	// step-ca marks the challenge invalid but leaves the authorization and
	// the order pending, where RFC 8555 (and Pebble) make them invalid.
	b.run(t, "a token the CA cannot match fails the request with the CA's problem, though step-ca leaves the order pending", func(t *testing.T) {
		cr := b.placed(t, "mismatch", "mismatch.example.com")
		for _, ch := range b.challenges(t, cr) {
			// The token server then answers another key authorization.
			ch.Spec.Key = "not-the-key-authorization"
			if err := b.api.Client.Update(context.Background(), &ch); err != nil {
				t.Fatal(err)
			}
		}
		url := b.order(t, cr).Status.URL
		b.present(t, cr)
		_, err := b.signUntilSettled(t, cr)
		if err == nil {
			t.Fatal("the request was signed although the CA could not validate its name")
		}
		// step-ca tells the client only the problem type.
		for _, want := range []string{"mismatch.example.com", "the CA found its http-01 challenge invalid", "rejectedIdentifier"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the failure %q does not name %q", err, want)
			}
		}
		if got := b.order(t, cr).Status.URL; got != url {
			t.Errorf("the failed request placed order %s, want only %s", got, url)
		}
		if n := len(b.challenges(t, cr)); n != 0 {
			t.Errorf("%d ACMEChallenges left after the request failed", n)
		}
		b.wantEvent(t, "OrderFailed", "mismatch.example.com")
	})

	if failed := ca.FailedValidations(); len(failed) != 1 {
		t.Errorf("step-ca failed %d validations, want only the mismatched one:\n%s", len(failed), strings.Join(failed, "\n"))
	}
}

// verifyChain checks that chainPEM is a leaf for names chained to rootPEM,
// and returns the leaf.
func verifyChain(t *testing.T, chainPEM, rootPEM []byte, names ...string) *x509.Certificate {
	t.Helper()
	var chain []*x509.Certificate
	for rest := chainPEM; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	if len(chain) < 2 {
		t.Fatalf("%d certificates returned, want the leaf and step-ca's intermediate", len(chain))
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	for _, n := range names {
		if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: n, Roots: roots, Intermediates: inter, CurrentTime: time.Now()}); err != nil {
			t.Fatalf("the certificate does not verify for %s against step-ca's root: %v", n, err)
		}
	}
	return chain[0]
}
