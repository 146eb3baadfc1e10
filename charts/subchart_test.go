package charts

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// umbrella writes an umbrella chart that depends on ours from the clone, as
// a platform team's chart of charts does, with values, and vendors the
// dependency with helm dependency build.
func umbrella(t *testing.T, values string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "platform")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	chart := fmt.Sprintf(`apiVersion: v2
name: platform
version: 1.0.0
dependencies:
  - name: istio-acme-issuer
    version: ">= 0.0.0-0"
    repository: file://%s
    condition: istio-acme-issuer.enabled
`, chartDir(t))
	for name, content := range map[string]string{"Chart.yaml": chart, "values.yaml": values} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Helm(t, "dependency", "build", dir)
	return dir
}

// TestChartWorksAsADependency renders the chart as a dependency of an
// umbrella chart: Helm passes it global values and the umbrella's enabled
// toggle, which its schema must admit, and the umbrella's values for it.
func TestChartWorksAsADependency(t *testing.T) {
	dir := umbrella(t, `global:
  imageRegistry: registry.example.com
  labels: {team: platform}
istio-acme-issuer:
  enabled: true
  replicaCount: 3
  commonLabels: {owner: platform}
`)
	if out, err := testenv.HelmResult(t, "lint", "--strict", dir, "--kube-version", testenv.KubeVersion); err != nil {
		t.Fatalf("helm lint --strict of the umbrella chart: %v", err)
	} else if !strings.Contains(out, "0 chart(s) failed") {
		t.Fatalf("helm lint --strict of the umbrella chart:\n%s", out)
	}
	objs := testenv.DecodeObjects(t, testenv.Helm(t, "template", "platform", dir, "--namespace", namespace, "--kube-version", testenv.KubeVersion))
	var deployment *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			deployment = o
		}
		if o.GetLabels()["owner"] != "platform" {
			t.Errorf("%s/%s lacks the umbrella's commonLabels: %v", o.GetKind(), o.GetName(), o.GetLabels())
		}
	}
	if deployment == nil {
		t.Fatalf("the umbrella chart renders no Deployment of ours: %v", kinds(objs))
	}
	if r, _, _ := unstructured.NestedFieldNoCopy(deployment.Object, "spec", "replicas"); fmt.Sprint(r) != "3" {
		t.Errorf("the umbrella's replicaCount 3 gave %v replicas", r)
	}

	// The umbrella's toggle leaves the chart out.
	off := testenv.DecodeObjects(t, testenv.Helm(t, "template", "platform", dir, "--namespace", namespace, "--kube-version", testenv.KubeVersion,
		"--set", "istio-acme-issuer.enabled=false"))
	if len(off) != 0 {
		t.Errorf("istio-acme-issuer.enabled=false still renders %v", kinds(off))
	}

	// A typo in the umbrella's values for it is still refused.
	if _, err := testenv.HelmResult(t, "template", "platform", dir, "--kube-version", testenv.KubeVersion, "--set", "istio-acme-issuer.replicaCont=3"); err == nil || !strings.Contains(err.Error(), "replicaCont") {
		t.Errorf("a misspelled value through the umbrella chart: got %v, want the schema's refusal", err)
	}
}

// TestHardenedValues renders the chart with a hardened platform's values
// and checks each reaches the objects.
func TestHardenedValues(t *testing.T) {
	objs := testenv.DecodeObjects(t, testenv.Helm(t, "template", "istio-acme-issuer", chartDir(t), "--namespace", namespace,
		"--kube-version", testenv.KubeVersion, "-f", "testdata/hardened-values.yaml"))
	got := kinds(objs)
	for _, want := range []string{"ServiceAccount/acme-controller", "NetworkPolicy/istio-acme-issuer", "PodDisruptionBudget/istio-acme-issuer"} {
		if !slices.Contains(got, want) {
			t.Errorf("hardened values do not render %s (have %v)", want, got)
		}
	}
	for _, o := range objs {
		if o.GetLabels()["cost-center"] != "platform" {
			t.Errorf("%s/%s lacks commonLabels", o.GetKind(), o.GetName())
		}
		for _, kind := range []string{"RoleBinding", "ClusterRoleBinding"} {
			if o.GetKind() != kind || strings.Contains(o.GetName(), "approve-requests") {
				continue
			}
			subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
			if s := subjects[0].(map[string]any); s["name"] != "acme-controller" {
				t.Errorf("%s %s binds %v, want the ServiceAccount acme-controller", kind, o.GetName(), s["name"])
			}
		}
		switch o.GetKind() {
		case "Deployment":
			spec, _, _ := unstructured.NestedMap(o.Object, "spec", "template", "spec")
			if spec["serviceAccountName"] != "acme-controller" || spec["automountServiceAccountToken"] != true {
				t.Errorf("pods run as %v (automount %v), want acme-controller with a token", spec["serviceAccountName"], spec["automountServiceAccountToken"])
			}
			if fmt.Sprint(spec["nodeSelector"]) != "map[kubernetes.io/os:linux node-role.example.com/system:true]" || spec["dnsPolicy"] != "ClusterFirst" || spec["dnsConfig"] == nil || spec["volumes"] == nil {
				t.Errorf("pod spec lacks the node selector, DNS settings or volumes: %v", spec)
			}
			containers := spec["containers"].([]any)
			if mounts := containers[0].(map[string]any)["volumeMounts"]; mounts == nil {
				t.Error("the controller container lacks volumeMounts")
			}
			if r, _, _ := unstructured.NestedFieldNoCopy(o.Object, "spec", "revisionHistoryLimit"); fmt.Sprint(r) != "3" {
				t.Errorf("revisionHistoryLimit %v, want 3", r)
			}
		case "ServiceAccount":
			if v, _, _ := unstructured.NestedBool(o.Object, "automountServiceAccountToken"); v || o.GetLabels()["team"] != "platform" {
				t.Errorf("ServiceAccount automount %v labels %v, want false and team=platform", v, o.GetLabels())
			}
		case "PodDisruptionBudget":
			spec, _, _ := unstructured.NestedMap(o.Object, "spec")
			if fmt.Sprint(spec["maxUnavailable"]) != "1" || spec["minAvailable"] != nil {
				t.Errorf("PodDisruptionBudget %v, want maxUnavailable 1 alone", spec)
			}
		case "NetworkPolicy":
			types, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "policyTypes")
			ingress, _, _ := unstructured.NestedSlice(o.Object, "spec", "ingress")
			if !slices.Equal(types, []string{"Ingress", "Egress"}) || len(ingress) != 3 {
				t.Errorf("NetworkPolicy types %v with %d ingress rules, want Ingress and Egress, 3 rules", types, len(ingress))
			}
		}
	}

	// Without a ServiceAccount of its own, the chart needs its name.
	_, err := testenv.HelmResult(t, "template", "istio-acme-issuer", chartDir(t), "--kube-version", testenv.KubeVersion, "--set", "serviceAccount.create=false")
	if err == nil || !strings.Contains(err.Error(), "serviceAccount.name") {
		t.Errorf("serviceAccount.create=false without a name: got %v, want an error naming serviceAccount.name", err)
	}
	for _, o := range render(t, "serviceAccount.create=false", "serviceAccount.name=platform-sa") {
		if o.GetKind() == "ServiceAccount" {
			t.Errorf("serviceAccount.create=false still renders ServiceAccount %s", o.GetName())
		}
	}
}
