package solver

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// Every HostnameGrant the README shows is one the API server takes, and
// one the CRD's validation refuses is refused with the message the README
// would lead a user to.
func TestReadmeHostnameGrantsApply(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	api := testenv.StartAPIServer(t)
	ctx := context.Background()
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	applied := 0
	for _, b := range blocks {
		if !strings.Contains(b[1], "kind: HostnameGrant") {
			continue
		}
		var g v1alpha1.HostnameGrant
		if err := yaml.UnmarshalStrict([]byte(b[1]), &g); err != nil {
			t.Fatalf("README's HostnameGrant does not decode: %v\n%s", err, b[1])
		}
		if err := api.Client.Create(ctx, &g); err != nil {
			t.Errorf("README's HostnameGrant %s is refused: %v", g.Name, err)
		}
		applied++
	}
	if applied < 2 {
		t.Errorf("%d HostnameGrant examples found in the README, want the quick start's and the security section's", applied)
	}
	for name, spec := range map[string]v1alpha1.HostnameGrantSpec{
		"no-namespaces": {DNSNames: []string{"shop.example.com"}},
		"no-names":      {Namespaces: []string{"team-a"}},
		"wildcard":      {Namespaces: []string{"team-a"}, DNSNames: []string{"*.example.com"}},
		"upper-case":    {Namespaces: []string{"team-a"}, Zones: []string{"Example.com"}},
	} {
		err := api.Client.Create(ctx, &v1alpha1.HostnameGrant{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec})
		if err == nil {
			t.Errorf("a HostnameGrant with %s was accepted", name)
		}
	}
}
