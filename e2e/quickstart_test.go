package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// TestReadmeQuickStart follows the README's quick start on the local
// cluster, as a newcomer would after helm install: its issuer (with Pebble's
// directory and CA in place of Let's Encrypt's staging), its grant and its
// Certificate, with no grant of the platform's beside them. The Certificate
// becomes Ready with a certificate for the name.
func TestReadmeQuickStart(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	start := strings.Index(section, "## Quick start")
	if start < 0 {
		t.Fatal("the README has no Quick start section")
	}
	section = section[start+len("## Quick start"):]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}

	c := startClusterWith(t, clusterOptions{controller: true, noZoneGrant: true})
	ctx := context.Background()
	var crt *cmapi.Certificate
	kinds := map[string]int{}
	for _, block := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(section, -1) {
		for _, doc := range strings.Split(block[1], "\n---\n") {
			var meta metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("the quick start's YAML: %v\n%s", err, doc)
			}
			kinds[meta.Kind]++
			var obj client.Object
			switch meta.Kind {
			case "ACMEClusterIssuer":
				iss := &v1alpha1.ACMEClusterIssuer{}
				obj = iss
				decode(t, doc, iss)
				// The only change: Pebble in place of Let's Encrypt's staging.
				iss.Spec.Server, iss.Spec.CABundle = c.pebble.DirectoryURL, c.pebble.ServerCAPEM
			case "HostnameGrant":
				obj = &v1alpha1.HostnameGrant{}
				decode(t, doc, obj)
			case "Certificate":
				crt = &cmapi.Certificate{}
				obj = crt
				decode(t, doc, crt)
			default:
				t.Fatalf("the quick start shows a %s; this test applies issuers, grants and Certificates", meta.Kind)
			}
			if err := c.cl.Create(ctx, obj); err != nil {
				t.Fatalf("applying the quick start's %s %s: %v", meta.Kind, obj.GetName(), err)
			}
		}
	}
	if kinds["ACMEClusterIssuer"] != 1 || kinds["HostnameGrant"] != 1 || kinds["Certificate"] != 1 || crt == nil {
		t.Fatalf("the quick start shows %v, want an issuer, a grant and a Certificate", kinds)
	}
	elapsed := c.waitReady(crt, 90*time.Second)
	c.verifySecret(crt, crt.Spec.DNSNames...)
	t.Logf("the README's quick start: Certificate %s/%s Ready %s after it was applied", crt.Namespace, crt.Name, elapsed.Round(time.Millisecond))
}

func decode(t *testing.T, doc string, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
		t.Fatalf("the quick start's YAML does not decode: %v\n%s", err, doc)
	}
}
