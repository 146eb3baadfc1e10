package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/cert-manager/cert-manager/third_party/forked/acme"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// renewalCheckInterval is the controller's wait between two readings of
// the CA's renewal information in this scenario (1-24 h in a cluster).
const renewalCheckInterval = 2 * time.Second

// Renewals the CA asks for (RFC 9773), end to end: Pebble's management
// endpoint moves a certificate's window, as a CA does before revoking, and
// cert-manager renews the Certificate when the controller asks it to,
// through an order that names the certificate it replaces.
func TestRenewalInfo(t *testing.T) {
	c := startClusterWith(t, clusterOptions{controller: true, controllerArgs: []string{
		"--renewal-info-min-interval=" + renewalCheckInterval.String(), "--renewal-info-max-interval=" + renewalCheckInterval.String(),
	}})
	c.clusterIssuer("pebble", v1alpha1.ACMESolver{})
	ctx := context.Background()
	// Every version of the ACMERenewals, from before the first issuance.
	wcl, err := client.NewWithWatch(c.api.Config, client.Options{Scheme: c.cl.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch, err := wcl.Watch(watchCtx, &v1alpha1.ACMERenewalList{})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Stop()
	names := []string{"ari.example.com"}
	crt := c.certificate("ari", "pebble", names...)
	c.waitReady(crt, 60*time.Second)
	first := c.verifySecret(crt, names...)

	t.Run("the controller reads the CA's window at once and shows it", func(t *testing.T) {
		ren := c.renewalRead(crt, first)
		// The first reading is written with the certificate it is for: no
		// version of the object records the certificate without its window
		// (one status write per issuance, not two).
		recorded := 0
		for drained := false; !drained; {
			select {
			case ev := <-watch.ResultChan():
				r, ok := ev.Object.(*v1alpha1.ACMERenewal)
				if !ok || r.Status.CertID == "" {
					continue
				}
				recorded++
				if r.Status.SuggestedWindow == nil {
					t.Errorf("ACMERenewal %s/%s recorded certificate %s without the CA's window (resourceVersion %s): the first reading took a second write", r.Namespace, r.Name, r.Status.Serial, r.ResourceVersion)
				}
			case <-time.After(time.Second):
				drained = true
			}
		}
		if recorded == 0 {
			t.Error("no version of the ACMERenewal that records the certificate was seen")
		}
		if ren.Status.SuggestedWindow == nil || ren.Status.RenewAt == nil || ren.Status.RenewAt.Before(&ren.Status.SuggestedWindow.Start) {
			t.Errorf("ACMERenewal status %+v, want the window and a renewal time inside it", ren.Status)
		}
		table, err := testenv.GetTable(ctx, c.api.Config, "/apis/istio-acme.io/v1alpha1/namespaces/"+crt.Namespace+"/acmerenewals")
		if err != nil {
			t.Fatal(err)
		}
		if len(table.Rows) != 1 || table.Cell(0, "Certificate") != crt.Name || table.Cell(0, "Window Start") == "" || table.Cell(0, "Renew At") == "" || table.Cell(0, "Next Check") == "" {
			t.Errorf("kubectl get acmerenewals shows %v (columns %v), want the Certificate, its window, renewal time and next check", table.Rows, table.Columns)
		}
	})

	var second *x509.Certificate
	t.Run("a window the CA opens early renews the Certificate inside it, long before its renewal time, replacing the old certificate", func(t *testing.T) {
		opens := time.Now().Add(3 * time.Second)
		closes := opens.Add(5 * time.Second)
		if err := c.pebble.SetRenewalWindow(leafPEM(first), opens, closes, "https://ca.example/early"); err != nil {
			t.Fatal(err)
		}
		second = c.waitRenewed(crt, first, 60*time.Second)
		got := c.getCertificate(crt)
		readyAt := time.Now()
		t.Logf("window opened %s, closed %s; renewed certificate Ready %s after the window opened (cert-manager's own renewal time was %s)",
			opens.Format(time.RFC3339), closes.Format(time.RFC3339), readyAt.Sub(opens).Round(time.Millisecond), first.NotBefore.Add(first.NotAfter.Sub(first.NotBefore)*2/3).Format(time.RFC3339))
		if second.NotBefore.Before(opens.Add(-time.Second)) {
			t.Errorf("the new certificate dates from %s, before the window opened at %s", second.NotBefore, opens)
		}
		if got.Status.RenewalTime == nil || !got.Status.RenewalTime.After(closes.Add(24*time.Hour)) {
			t.Errorf("the Certificate's own renewal time is %v: the scenario needs one long after the window", got.Status.RenewalTime)
		}
		c.eventually("the RenewalWindow Event on the Certificate", 10*time.Second, func() (bool, string) {
			return testenv.FindEvent(ctx, c.cl, crt.Namespace, isCertificate(crt), "RenewalWindow", "https://ca.example/early")
		})
		if n := len(c.pebble.Replacements()); n != 1 {
			t.Errorf("Pebble accepted %d orders as replacements, want 1:\n%s", n, strings.Join(c.pebble.Replacements(), "\n"))
		}
		if n := c.metricSum("istio_acme_replaces_total", `outcome="accepted"`); n != 1 {
			t.Errorf("replaces accepted counted %v, want 1", n)
		}
		if n := c.metricSum("istio_acme_early_renewals_total"); n != 1 {
			t.Errorf("early renewals counted %v, want 1", n)
		}
	})

	var third *x509.Certificate
	t.Run("a window moved into the past renews within one check interval", func(t *testing.T) {
		c.renewalRead(crt, second)
		moved := time.Now()
		if err := c.pebble.SetRenewalWindow(leafPEM(second), moved.Add(-2*time.Hour), moved.Add(-time.Hour), "https://ca.example/revoking"); err != nil {
			t.Fatal(err)
		}
		c.eventually("the renewal asked for the moved window", renewalCheckInterval+10*time.Second, func() (bool, string) {
			return testenv.FindEvent(ctx, c.cl, crt.Namespace, isCertificate(crt), "RenewalWindow", "https://ca.example/revoking")
		})
		asked := time.Since(moved)
		third = c.waitRenewed(crt, second, 60*time.Second)
		t.Logf("window moved into the past: renewal asked %s later (check interval %s), certificate Ready %s later",
			asked.Round(time.Millisecond), renewalCheckInterval, time.Since(moved).Round(time.Millisecond))
		if n := len(c.pebble.Replacements()); n != 2 {
			t.Errorf("Pebble accepted %d orders as replacements, want 2", n)
		}
	})

	t.Run("a CA refusing the replacement still renews, and says so", func(t *testing.T) {
		ren := c.renewalRead(crt, third)
		// As if the record of the third certificate was lost: the
		// controller names the first, which the CA counts as replaced.
		firstID, err := acme.CertificateARIID(first)
		if err != nil {
			t.Fatal(err)
		}
		ren.Status.CertID = firstID
		if err := c.cl.Update(ctx, ren); err != nil {
			t.Fatal(err)
		}
		c.cmctl("renew", crt.Name, "-n", crt.Namespace)
		c.waitRenewed(crt, third, 60*time.Second)
		c.eventually("the ReplacesRefused Event", 10*time.Second, func() (bool, string) {
			return testenv.FindEvent(ctx, c.cl, crt.Namespace, func(r corev1.ObjectReference) bool {
				return r.Kind == cmapi.CertificateRequestKind && strings.HasPrefix(r.Name, crt.Name+"-")
			}, "ReplacesRefused", "alreadyReplaced")
		})
		if n := c.metricSum("istio_acme_replaces_total", `outcome="refused"`); n != 1 {
			t.Errorf("replaces refused counted %v, want 1", n)
		}
	})

	t.Run("the ACMERenewal goes with its Certificate", func(t *testing.T) {
		if err := c.cl.Delete(ctx, c.getCertificate(crt)); err != nil {
			t.Fatal(err)
		}
		c.eventually("the ACMERenewal to be collected", 30*time.Second, func() (bool, string) {
			err := c.cl.Get(ctx, client.ObjectKeyFromObject(crt), &v1alpha1.ACMERenewal{})
			return client.IgnoreNotFound(err) == nil && err != nil, "still there"
		})
	})
}

// renewalRead waits until the Certificate's ACMERenewal records cert and
// the CA's window for it, and returns it.
func (c *cluster) renewalRead(crt *cmapi.Certificate, cert *x509.Certificate) *v1alpha1.ACMERenewal {
	c.t.Helper()
	id, err := acme.CertificateARIID(cert)
	if err != nil {
		c.t.Fatal(err)
	}
	ren := &v1alpha1.ACMERenewal{}
	c.eventually("the ACMERenewal to read the window of "+cert.SerialNumber.Text(16), 30*time.Second, func() (bool, string) {
		if err := c.cl.Get(context.Background(), client.ObjectKeyFromObject(crt), ren); err != nil {
			return false, err.Error()
		}
		return ren.Status.CertID == id && ren.Status.SuggestedWindow != nil, ren.Status.Message
	})
	return ren
}

// waitRenewed waits until the Certificate is Ready and its Secret holds a
// certificate other than old, and returns it. Serials tell them apart:
// two certificates issued within one second share notBefore.
func (c *cluster) waitRenewed(crt *cmapi.Certificate, old *x509.Certificate, timeout time.Duration) *x509.Certificate {
	c.t.Helper()
	c.eventually("the renewed certificate", timeout, func() (bool, string) {
		got := c.getCertificate(crt)
		leaf, err := c.secretLeaf(crt)
		if err != nil {
			return false, err.Error()
		}
		if !isReady(got) || leaf.SerialNumber.Cmp(old.SerialNumber) == 0 {
			return false, fmt.Sprintf("Secret serial %x (the old one's %x), revision %s, conditions %s; %s",
				leaf.SerialNumber, old.SerialNumber, ptrString(got.Status.Revision), certificateConditions(got), c.requestState(crt))
		}
		return true, ""
	})
	return c.verifySecret(crt, crt.Spec.DNSNames...)
}

// secretLeaf is the first certificate in the Certificate's Secret.
func (c *cluster) secretLeaf(crt *cmapi.Certificate) (*x509.Certificate, error) {
	sec := &corev1.Secret{}
	if err := c.cl.Get(context.Background(), client.ObjectKey{Namespace: crt.Namespace, Name: crt.Spec.SecretName}, sec); err != nil {
		return nil, err
	}
	block, _ := pem.Decode(sec.Data[corev1.TLSCertKey])
	if block == nil {
		return nil, fmt.Errorf("Secret %s/%s holds no certificate", crt.Namespace, crt.Spec.SecretName)
	}
	return x509.ParseCertificate(block.Bytes)
}

func (c *cluster) getCertificate(crt *cmapi.Certificate) *cmapi.Certificate {
	c.t.Helper()
	got := &cmapi.Certificate{}
	if err := c.cl.Get(context.Background(), client.ObjectKeyFromObject(crt), got); err != nil {
		c.t.Fatal(err)
	}
	return got
}

func isCertificate(crt *cmapi.Certificate) func(corev1.ObjectReference) bool {
	return func(r corev1.ObjectReference) bool {
		return r.Kind == cmapi.CertificateKind && r.Name == crt.Name
	}
}

func leafPEM(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

func ptrString(p *int) string {
	if p == nil {
		return "none"
	}
	return fmt.Sprint(*p)
}

func certificateConditions(crt *cmapi.Certificate) string {
	var parts []string
	for _, cond := range crt.Status.Conditions {
		parts = append(parts, fmt.Sprintf("%s=%s (%s: %s)", cond.Type, cond.Status, cond.Reason, cond.Message))
	}
	return strings.Join(parts, ", ")
}
