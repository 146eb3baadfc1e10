// Package charts tests the Helm chart: it lints and renders it with the
// pinned helm, and has the real API server accept every rendered object
// (server-side dry-run).
package charts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

const (
	kubeVersion = "1.36.2"
	namespace   = "istio-acme-issuer"
)

func chartDir(t *testing.T) string {
	return filepath.Join(testenv.RepoRoot(t), "charts/istio-acme-issuer")
}

func helm(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(testenv.Tool(t, "helm"), args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), stderr.String())
	}
	return out.String()
}

func render(t *testing.T, set ...string) []*unstructured.Unstructured {
	t.Helper()
	args := []string{"template", "istio-acme-issuer", chartDir(t), "--namespace", namespace, "--kube-version", kubeVersion}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(helm(t, args...)), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("rendered chart is not YAML: %v", err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs
}

func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	slices.Sort(out)
	return out
}

func TestChartLints(t *testing.T) {
	out := helm(t, "lint", chartDir(t), "--kube-version", kubeVersion)
	if !strings.Contains(out, "0 chart(s) failed") {
		t.Fatalf("helm lint:\n%s", out)
	}
}

func TestChartRenders(t *testing.T) {
	defaults := kinds(render(t))
	for _, want := range []string{
		"CustomResourceDefinition/acmeclusterissuers.istio-acme.io", "CustomResourceDefinition/acmeissuers.istio-acme.io",
		"CustomResourceDefinition/acmeorders.istio-acme.io", "CustomResourceDefinition/acmechallenges.istio-acme.io",
		"Deployment/istio-acme-issuer", "Service/istio-acme-issuer", "ServiceAccount/istio-acme-issuer",
		"ClusterRole/istio-acme-issuer", "ClusterRoleBinding/istio-acme-issuer",
		"ClusterRole/istio-acme-issuer:approve-requests", "ClusterRoleBinding/istio-acme-issuer:approve-requests",
		"Role/istio-acme-issuer:leader-election", "RoleBinding/istio-acme-issuer:leader-election",
	} {
		if !slices.Contains(defaults, want) {
			t.Errorf("default render lacks %s (has %v)", want, defaults)
		}
	}

	noCRDs := render(t, "crds.enabled=false", "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "replicaCount=3")
	for _, o := range noCRDs {
		if o.GetKind() == "CustomResourceDefinition" {
			t.Errorf("crds.enabled=false still renders %s", o.GetName())
		}
		if o.GetKind() == "Deployment" {
			img, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			c := img[0].(map[string]any)
			if !strings.HasSuffix(c["image"].(string), "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef") {
				t.Errorf("image.digest not used: %v", c["image"])
			}
			if r, _, _ := unstructured.NestedFieldNoCopy(o.Object, "spec", "replicas"); fmt.Sprint(r) != "3" {
				t.Errorf("replicas %v, want 3", r)
			}
		}
	}

	for _, o := range render(t, "crds.keep=false") {
		if o.GetKind() == "CustomResourceDefinition" && o.GetAnnotations()["helm.sh/resource-policy"] != "" {
			t.Errorf("crds.keep=false still keeps %s", o.GetName())
		}
	}
	for _, o := range render(t) {
		if o.GetKind() == "CustomResourceDefinition" && o.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
			t.Errorf("CRD %s lacks the keep policy by default", o.GetName())
		}
	}
}

// TestChartIsAcceptedByTheAPIServer applies every rendered object with a
// server-side dry-run to a real API server that has cert-manager's and
// Istio's CRDs.
func TestChartIsAcceptedByTheAPIServer(t *testing.T) {
	api := testenv.StartAPIServer(t)
	ctx := context.Background()
	api.CreateNamespaces(t, namespace)
	for _, o := range render(t) {
		if o.GetNamespace() == "" && o.GetKind() != "CustomResourceDefinition" && !strings.HasPrefix(o.GetKind(), "Cluster") {
			o.SetNamespace(namespace)
		}
		err := api.Client.Patch(ctx, o, client.Apply, client.DryRunAll, client.FieldOwner("helm"), client.ForceOwnership)
		if err != nil {
			t.Errorf("the API server rejects %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
}
