package e2e

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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
// allowed one is signed, the denied one is never ordered.
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
			"allowed": map[string]any{
				"dnsNames": map[string]any{"values": []any{"*.a.policy.test"}},
				"usages":   []any{"digital signature", "server auth"},
			},
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
	// it. cert-manager's webhook, which does not run here, records the
	// requester of each CertificateRequest; the requests are written here
	// as team-a's deployer would, with that user.
	const deployer = "system:serviceaccount:team-a:deployer"
	c.create(&rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "use-team-a-policy"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"policy.cert-manager.io"}, Resources: []string{"certificaterequestpolicies"}, Verbs: []string{"use"}, ResourceNames: []string{"team-a"}}},
	})
	c.create(&rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "use-team-a-policy"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "use-team-a-policy"},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: deployer}},
	})
	request := func(name, host string) *cmapi.CertificateRequest {
		cr := &cmapi.CertificateRequest{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: name},
			Spec: cmapi.CertificateRequestSpec{
				Request:   csrFor(t, &x509.CertificateRequest{DNSNames: []string{host}}),
				IssuerRef: cmmeta.IssuerReference{Group: "istio-acme.io", Kind: "ACMEClusterIssuer", Name: "shared"},
				Username:  deployer,
				Usages:    []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageServerAuth},
			},
		}
		c.create(cr)
		return cr
	}
	allowed := request("allowed", "shop.a.policy.test")
	denied := request("denied", "shop.b.policy.test")
	condition := func(cr *cmapi.CertificateRequest, kind cmapi.CertificateRequestConditionType) (bool, string) {
		got := &cmapi.CertificateRequest{}
		if err := c.cl.Get(ctx, client.ObjectKeyFromObject(cr), got); err != nil {
			return false, err.Error()
		}
		for _, cond := range got.Status.Conditions {
			if cond.Type == kind && cond.Status == cmmeta.ConditionTrue {
				return len(got.Status.Certificate) > 0 || kind != cmapi.CertificateRequestConditionReady, cond.Message
			}
		}
		return false, fmt.Sprint(got.Status.Conditions)
	}
	c.eventually("approver-policy to approve team-a's request for its zone, and our issuer to sign it", 90*time.Second, func() (bool, string) {
		return condition(allowed, cmapi.CertificateRequestConditionReady)
	})
	c.eventually("approver-policy to deny team-a's request for team-b's zone", 60*time.Second, func() (bool, string) {
		return condition(denied, cmapi.CertificateRequestConditionDenied)
	})
	time.Sleep(time.Second) // a pass that would order has had its chance
	if err := c.cl.Get(ctx, client.ObjectKeyFromObject(denied), &v1alpha1.ACMEOrder{}); !apierrors.IsNotFound(err) {
		t.Errorf("the denied request has an ACMEOrder (%v): an order was placed", err)
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
	// Its chart grants the webhook's CA Secret by name, which RBAC cannot
	// grant for create: the Secret exists, as after a first install.
	c.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "cert-manager", Name: "cert-manager-approver-policy-tls"}})
	probe := testenv.Addr(testenv.FreePort(c.t))
	testenv.StartProcess(c.t, "approver-policy", testenv.Tool(c.t, "approver-policy"), []string{
		"--kubeconfig", c.api.KubeconfigAs(c.t, "cert-manager", "cert-manager-approver-policy"),
		"--leader-election-namespace", "cert-manager",
		"--metrics-bind-address", "0",
		"--readiness-probe-bind-address", probe,
		"--webhook-host", "127.0.0.1", "--webhook-port", strconv.Itoa(testenv.FreePort(c.t)),
		"--webhook-ca-secret-namespace", "cert-manager", "-v", "2"})
}
