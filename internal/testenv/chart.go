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
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

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

// Apply server-side applies objs as a cluster administrator, stopping the
// test at the first object the API server rejects.
func (a *APIServer) Apply(t testing.TB, namespace string, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		if err := a.ApplyObject(namespace, o); err != nil {
			t.Fatal(err)
		}
	}
}

// ApplyObject server-side applies one object as a cluster administrator
// (opts such as client.DryRunAll added); an object without a namespace
// gets namespace unless its kind is cluster-scoped.
func (a *APIServer) ApplyObject(namespace string, o *unstructured.Unstructured, opts ...client.ApplyOption) error {
	namespaced, err := a.Client.IsObjectNamespaced(o)
	if err != nil {
		namespaced = !clusterScoped(o.GetKind())
	}
	if o.GetNamespace() == "" && namespaced {
		o.SetNamespace(namespace)
	}
	opts = append([]client.ApplyOption{client.FieldOwner("test"), client.ForceOwnership}, opts...)
	if err := a.Client.Apply(context.Background(), client.ApplyConfigurationFromUnstructured(o), opts...); err != nil {
		return fmt.Errorf("the API server rejects %s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
	}
	return nil
}

func clusterScoped(kind string) bool {
	return kind == "CustomResourceDefinition" || kind == "Namespace" || strings.HasPrefix(kind, "Cluster")
}

// ServiceAccountUser is the user name of a ServiceAccount.
func ServiceAccountUser(namespace, serviceAccount string) string {
	return "system:serviceaccount:" + namespace + ":" + serviceAccount
}

// ServiceAccountGroups are the groups the API server puts a ServiceAccount
// in.
func ServiceAccountGroups(namespace string) []string {
	return []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
}

// ConfigAs connects as the ServiceAccount (the administrator impersonating
// it, with its groups), with exactly the ServiceAccount's RBAC permissions.
func (a *APIServer) ConfigAs(namespace, serviceAccount string) *rest.Config {
	cfg := rest.CopyConfig(a.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: ServiceAccountUser(namespace, serviceAccount), Groups: ServiceAccountGroups(namespace)}
	return cfg
}

// KubeconfigAs writes a kubeconfig for ConfigAs, for processes.
func (a *APIServer) KubeconfigAs(t testing.TB, namespace, serviceAccount string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(a.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	as := a.ConfigAs(namespace, serviceAccount).Impersonate
	for _, auth := range cfg.AuthInfos {
		auth.Impersonate, auth.ImpersonateGroups = as.UserName, as.Groups
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
