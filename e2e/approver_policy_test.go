package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// TestApproverPolicy: a platform that lets cert-manager's approver-policy
// decide leaves out the chart's approver binding and cert-manager's own
// approver. A CertificateRequestPolicy allows team-a the names of its zone
// through the shared ACMEClusterIssuer; team-a's request for another
// team's zone is denied by approver-policy, and our issuer follows: the
// allowed one is issued, the denied one is never ordered.
func TestApproverPolicy(t *testing.T) {
	c := startClusterWith(t, clusterOptions{
		controller:      true,
		certManagerArgs: []string{"--disable-approver"},
		chartValues:     []string{"certManager.approveRequests=false"},
	})
	ctx := context.Background()
	c.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}})
	c.startApproverPolicy()
	c.clusterIssuer("shared", v1alpha1.ACMESolver{})
	// The tenancy rule admits both names (a grant): approver-policy is
	// what tells them apart here.
	c.create(&v1alpha1.HostnameGrant{
		ObjectMeta: metav1.ObjectMeta{Name: "team-a-policy"},
		Spec:       v1alpha1.HostnameGrantSpec{Namespaces: []string{"team-a"}, Zones: []string{"a.policy.test", "b.policy.test"}},
	})
	policy := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "policy.cert-manager.io/v1alpha1", "kind": "CertificateRequestPolicy",
		"metadata": map[string]any{"name": "team-a"},
		"spec": map[string]any{
			"allowed": map[string]any{"dnsNames": map[string]any{"values": []any{"*.a.policy.test"}}},
			"selector": map[string]any{
				"issuerRef": map[string]any{"group": "istio-acme.io", "kind": "ACMEClusterIssuer", "name": "shared"},
				"namespace": map[string]any{"matchNames": []any{"team-a"}},
			},
		},
	}}
	if err := c.cl.Create(ctx, policy); err != nil {
		t.Fatal(err)
	}
	// approver-policy applies a policy to requests whose requester may use
	// it: cert-manager's ServiceAccount creates the requests.
	c.create(&rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "use-team-a-policy"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"policy.cert-manager.io"}, Resources: []string{"certificaterequestpolicies"}, Verbs: []string{"use"}, ResourceNames: []string{"team-a"}}},
	})
	c.create(&rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "use-team-a-policy"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "use-team-a-policy"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "cert-manager", Name: "cert-manager"}},
	})

	shared := cmmeta.IssuerReference{Group: "istio-acme.io", Kind: "ACMEClusterIssuer", Name: "shared"}
	allowed := c.teamCertificate("team-a", "allowed", shared, "shop.a.policy.test")
	denied := c.teamCertificate("team-a", "denied", shared, "shop.b.policy.test")
	c.waitReady(allowed, 90*time.Second)
	c.verifySecret(allowed, "shop.a.policy.test")

	c.eventually("approver-policy to deny team-a's request for team-b's zone", 60*time.Second, func() (bool, string) {
		state := c.requestState(denied)
		return strings.Contains(state, "Denied=True"), state
	})
	time.Sleep(time.Second)
	var crs cmapi.CertificateRequestList
	if err := c.cl.List(ctx, &crs, client.InNamespace("team-a")); err != nil {
		t.Fatal(err)
	}
	for _, cr := range crs.Items {
		if !metav1.IsControlledBy(&cr, denied) {
			continue
		}
		if err := c.cl.Get(ctx, client.ObjectKeyFromObject(&cr), &v1alpha1.ACMEOrder{}); !apierrors.IsNotFound(err) {
			t.Errorf("the denied request %s has an ACMEOrder (%v): an order was placed", cr.Name, err)
		}
	}
	c.wantNoRouteFor(t, "shop.b.policy.test")
}

// startApproverPolicy runs cert-manager's approver-policy against the API
// server with its CRD and its own chart's RBAC, allowed to approve our
// signers.
func (c *cluster) startApproverPolicy() {
	c.t.Helper()
	dir := testenv.ModuleDir(c.t, "hack/tools/approver-policy", "github.com/cert-manager/approver-policy")
	raw, err := os.ReadFile(filepath.Join(dir, "deploy/crds/policy.cert-manager.io_certificaterequestpolicies.yaml"))
	if err != nil {
		c.t.Fatal(err)
	}
	crd := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(raw, &crd.Object); err != nil {
		c.t.Fatal(err)
	}
	c.api.Apply(c.t, "", []*unstructured.Unstructured{crd})
	c.eventually("the CertificateRequestPolicy CRD to be served", 30*time.Second, func() (bool, string) {
		var list unstructured.UnstructuredList
		list.SetAPIVersion("policy.cert-manager.io/v1alpha1")
		list.SetKind("CertificateRequestPolicyList")
		err := c.cl.List(context.Background(), &list)
		return err == nil, fmt.Sprint(err)
	})
	objs := testenv.RenderChart(c.t, filepath.Join(dir, "deploy/charts/approver-policy"), "approver-policy", "cert-manager",
		"app.approveSignerNames={acmeclusterissuers.istio-acme.io/*,acmeissuers.istio-acme.io/*}")
	c.api.Apply(c.t, "cert-manager", testenv.RBACObjects(objs))
	probe := testenv.Addr(testenv.FreePort(c.t))
	testenv.StartProcess(c.t, "approver-policy", testenv.Tool(c.t, "approver-policy"), []string{
		"--kubeconfig", c.api.KubeconfigAs(c.t, "cert-manager", "cert-manager-approver-policy"),
		"--leader-election-namespace", "cert-manager",
		"--metrics-bind-address", "0",
		"--readiness-probe-bind-address", probe,
		"--webhook-host", "127.0.0.1", "--webhook-port", strconv.Itoa(testenv.FreePort(c.t)),
		"--webhook-ca-secret-namespace", "cert-manager", "-v", "2"})
}
