package charts

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// TestReleasePackage packages the chart as the release workflow does and
// checks the package: it runs the pushed image by digest, carries the
// release's versions, its alerts, dashboard and README, and lints.
func TestReleasePackage(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	cmd := exec.Command(filepath.Join(testenv.RepoRoot(t), "hack/package-chart.sh"), "v1.2.3", digest, t.TempDir())
	cmd.Env = append(cmd.Environ(), "HELM="+testenv.Tool(t, "helm"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/package-chart.sh: %v\n%s", err, out)
	}
	pkg := strings.TrimSpace(string(out))
	if !strings.HasSuffix(pkg, "istio-acme-issuer-1.2.3.tgz") {
		t.Fatalf("packaged %s, want istio-acme-issuer-1.2.3.tgz", pkg)
	}
	if out, err := testenv.HelmResult(t, "lint", "--strict", pkg, "--kube-version", testenv.KubeVersion); err != nil {
		t.Errorf("helm lint --strict of the package: %v\n%s", err, out)
	}
	for _, o := range testenv.DecodeObjects(t, testenv.Helm(t, "template", "x", pkg, "--kube-version", testenv.KubeVersion)) {
		if o.GetKind() != "Deployment" {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		if img := containers[0].(map[string]any)["image"]; img != "ghcr.io/istio-acme/istio-acme-issuer@"+digest {
			t.Errorf("the packaged chart runs %v, want the pushed image by its digest", img)
		}
		if v := o.GetLabels()["app.kubernetes.io/version"]; v != "v1.2.3" {
			t.Errorf("app.kubernetes.io/version %q, want the release's v1.2.3", v)
		}
	}
	readme := testenv.Helm(t, "show", "readme", pkg)
	if !strings.Contains(readme, "| `prometheusRule.enabled` |") {
		t.Errorf("helm show readme of the package lacks the values table:\n%.500s", readme)
	}
	files, err := exec.Command("tar", "tzf", pkg).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"istio-acme-issuer/files/alerts.yaml", "istio-acme-issuer/dashboards/istio-acme-issuer.json", "istio-acme-issuer/README.md", "istio-acme-issuer/values.schema.json"} {
		if !strings.Contains(string(files), want+"\n") {
			t.Errorf("the package lacks %s", want)
		}
	}

	for _, bad := range [][]string{{"1.2.3", digest}, {"v1.2.3", "sha256:abc"}} {
		if err := exec.Command(filepath.Join(testenv.RepoRoot(t), "hack/package-chart.sh"), bad[0], bad[1], t.TempDir()).Run(); err == nil {
			t.Errorf("hack/package-chart.sh %s %s succeeded", bad[0], bad[1])
		}
	}
}
