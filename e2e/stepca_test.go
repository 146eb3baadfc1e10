package e2e

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
	"github.com/istio-acme/istio-acme-issuer/solver"
)

// TestStepCA issues through Smallstep's step-ca, an ACME server that
// nobody here wrote and that requires external account binding, so the
// ACME client is not only proven against Pebble's answers. Its validator
// resolves names through the test DNS to the Istio gateway, as Pebble's
// does.
func TestStepCA(t *testing.T) {
	c := startCluster(t)
	ca := testenv.StartStepCA(t, testenv.StepCAOptions{DNSAddr: c.pebble.DNSAddr})
	c.create(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: controllerNamespace, Name: "step-ca-eab"},
		Data:       map[string][]byte{"secret": []byte(ca.EABHMACKey)},
	})
	atStepCA := func(withEAB bool) func(*v1alpha1.ACMEIssuerSpec) {
		return func(s *v1alpha1.ACMEIssuerSpec) {
			s.CABundle = ca.RootPEM
			if withEAB {
				s.ExternalAccountBinding = &v1alpha1.ExternalAccountBinding{
					KeyID: ca.EABKeyID, KeySecretRef: v1alpha1.SecretKeySelector{Name: "step-ca-eab"},
				}
			}
		}
	}

	t.Run("an account without external account binding is refused, and the issuer says so", func(t *testing.T) {
		c.create(&v1alpha1.ACMEClusterIssuer{
			ObjectMeta: metav1.ObjectMeta{Name: "step-ca-no-eab"},
			Spec: v1alpha1.ACMEIssuerSpec{
				Server: ca.DirectoryURL, Email: "platform@example.org", CABundle: ca.RootPEM,
				PrivateKeySecretRef: v1alpha1.SecretKeySelector{Name: "step-ca-no-eab-account"},
			},
		})
		c.eventually("ACMEClusterIssuer step-ca-no-eab to say why it is not Ready", 30*time.Second, func() (bool, string) {
			_, ready, why := c.issuerReady("step-ca-no-eab")
			return ready != nil && ready.Status == metav1.ConditionFalse && strings.Contains(why, "externalAccountBinding"), why
		})
		_, _, why := c.issuerReady("step-ca-no-eab")
		t.Logf("step-ca-no-eab: %s", why)
	})

	names := []string{"step.example.com", "www.step.example.com"}
	t.Run("a Certificate for two names becomes Ready through Istio routes", func(t *testing.T) {
		c.clusterIssuerAt("step-ca", ca.DirectoryURL, v1alpha1.ACMESolver{}, atStepCA(true))
		crt := c.certificate("smallstep", "step-ca", names...)
		elapsed := c.waitReady(crt, 90*time.Second)
		leaf := c.verifySecretTo(crt, ca.RootPEM, names...)
		t.Logf("step-ca issued serial %x for %v; Certificate creation to Ready: %s", leaf.SerialNumber, leaf.DNSNames, elapsed.Round(time.Millisecond))
		for _, host := range names {
			if n := c.gateway.Served("Go-http-client", host, solver.ChallengePathPrefix); n == 0 {
				t.Errorf("step-ca never fetched a token for %s through the Istio gateway", host)
			}
		}
		if failed := ca.FailedValidations(); len(failed) > 0 {
			t.Errorf("step-ca failed %d validations:\n%s", len(failed), strings.Join(failed, "\n"))
		}
		c.eventually("no Istio objects or challenges of ours left", 30*time.Second, func() (bool, string) {
			left := c.ourObjectsLeft()
			return len(left) == 0, strings.Join(left, ", ")
		})
	})
}
