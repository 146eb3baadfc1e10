package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// KubeVersion is the Kubernetes version charts are rendered for: the test
// API server's.
const KubeVersion = "1.36.2"

// Helm runs the pinned helm and returns its standard output.
func Helm(t testing.TB, args ...string) string {
	t.Helper()
	out, err := HelmResult(t, args...)
	if err != nil {
		t.Fatalf("helm %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// HelmResult runs the pinned helm and returns its standard output, or an
// error carrying what it printed.
func HelmResult(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(Tool(t, "helm"), args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%w\n%s%s", err, out.String(), stderr.String())
	}
	return out.String(), nil
}

// RenderChart renders the chart in dir as release name in namespace, with
// helm's --set arguments, and returns its objects.
func RenderChart(t testing.TB, dir, name, namespace string, set ...string) []*unstructured.Unstructured {
	t.Helper()
	args := []string{"template", name, dir, "--namespace", namespace, "--kube-version", KubeVersion}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return DecodeObjects(t, Helm(t, args...))
}

// DecodeObjects decodes a multi-document YAML stream.
func DecodeObjects(t testing.TB, manifests string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifests), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("manifests are not YAML: %v", err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs
}

// Apply server-side applies objs as a cluster administrator; objects
// without a namespace get namespace unless they are cluster-scoped kinds.
func (a *APIServer) Apply(t testing.TB, namespace string, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		if o.GetNamespace() == "" && !clusterScoped(o.GetKind()) {
			o.SetNamespace(namespace)
		}
		if err := a.Client.Patch(context.Background(), o, client.Apply, client.FieldOwner("test"), client.ForceOwnership); err != nil {
			t.Fatalf("applying %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
}

func clusterScoped(kind string) bool {
	return kind == "CustomResourceDefinition" || kind == "Namespace" || strings.HasPrefix(kind, "Cluster")
}

// KubeconfigAs writes a kubeconfig that acts as the ServiceAccount (the
// administrator impersonating it, with its groups), so a process using it
// has exactly the ServiceAccount's RBAC permissions.
func (a *APIServer) KubeconfigAs(t testing.TB, namespace, serviceAccount string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(a.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, auth := range cfg.AuthInfos {
		auth.Impersonate = ServiceAccountUser(namespace, serviceAccount)
		auth.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
	}
	path := filepath.Join(t.TempDir(), "kubeconfig-"+namespace+"-"+serviceAccount)
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// ServiceAccountUser is the user name of a ServiceAccount.
func ServiceAccountUser(namespace, serviceAccount string) string {
	return "system:serviceaccount:" + namespace + ":" + serviceAccount
}

// RBACObjects returns the ServiceAccounts, roles and bindings among objs.
func RBACObjects(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			out = append(out, o)
		}
	}
	return out
}
