package solver

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// Every HostnameGrant the README and the docs show is one the API server
// takes and this package reads as the docs say, and one the CRD's
// validation refuses is refused.
func TestDocsHostnameGrantsApply(t *testing.T) {
	root := testenv.RepoRoot(t)
	pages, err := filepath.Glob(filepath.Join(root, "docs/*.md"))
	if err != nil {
		t.Fatal(err)
	}
	api := testenv.StartAPIServer(t)
	ctx := context.Background()
	applied := map[string]v1alpha1.HostnameGrantSpec{}
	for _, page := range append([]string{filepath.Join(root, "README.md")}, pages...) {
		text, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(text), -1) {
			for _, doc := range strings.Split(b[1], "\n---\n") {
				if !strings.Contains(doc, "kind: HostnameGrant") {
					continue
				}
				var g v1alpha1.HostnameGrant
				if err := yaml.UnmarshalStrict([]byte(doc), &g); err != nil {
					t.Fatalf("%s: a HostnameGrant that does not decode: %v\n%s", page, err, doc)
				}
				if prev, ok := applied[g.Name]; ok {
					if !reflect.DeepEqual(prev, g.Spec) {
						t.Errorf("%s: HostnameGrant %s differs from another page's of that name", page, g.Name)
					}
					continue
				}
				written := *g.Spec.DeepCopy()
				if err := api.Client.Create(ctx, &g); err != nil {
					t.Errorf("%s: HostnameGrant %s is refused: %v", page, g.Name, err)
				}
				name := append(g.Spec.DNSNames, g.Spec.Zones...)[0]
				for _, ns := range g.Spec.Namespaces {
					ok, err := grantsNamespace(g.Spec, ns, func() (map[string]string, error) { return nil, nil })
					if err != nil || !ok || !grantsName(g.Spec, name) {
						t.Errorf("%s: HostnameGrant %s does not grant %s to namespace %s, which it names (%v)", page, g.Name, name, ns, err)
					}
				}
				applied[g.Name] = written
			}
		}
	}
	if len(applied) < 2 {
		t.Errorf("%d HostnameGrant examples found in the docs, want the quick start's and the security page's", len(applied))
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
