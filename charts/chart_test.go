// Package charts tests the Helm chart: it lints and renders it with the
// pinned helm, and has the real API server accept every rendered object
// (server-side dry-run).
package charts

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	cmacme "github.com/cert-manager/cert-manager/pkg/apis/acme/v1"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

const namespace = "istio-acme-issuer"

func chartDir(t *testing.T) string {
	return filepath.Join(testenv.RepoRoot(t), "charts/istio-acme-issuer")
}

func render(t *testing.T, set ...string) []*unstructured.Unstructured {
	t.Helper()
	return testenv.RenderChart(t, chartDir(t), "istio-acme-issuer", namespace, set...)
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
	out := testenv.Helm(t, "lint", "--strict", chartDir(t), "--kube-version", testenv.KubeVersion)
	if !strings.Contains(out, "0 chart(s) failed") {
		t.Fatalf("helm lint:\n%s", out)
	}
}

func TestChartRenders(t *testing.T) {
	defaults := kinds(render(t))
	for _, want := range []string{
		"CustomResourceDefinition/acmeclusterissuers.istio-acme.io", "CustomResourceDefinition/acmeissuers.istio-acme.io",
		"CustomResourceDefinition/acmeorders.istio-acme.io", "CustomResourceDefinition/acmechallenges.istio-acme.io",
		"CustomResourceDefinition/hostnamegrants.istio-acme.io",
		"Deployment/istio-acme-issuer", "Service/istio-acme-issuer", "ServiceAccount/istio-acme-issuer",
		"ClusterRole/istio-acme-issuer", "ClusterRoleBinding/istio-acme-issuer",
		"ClusterRole/istio-acme-issuer:approve-requests", "ClusterRoleBinding/istio-acme-issuer:approve-requests",
		"Role/istio-acme-issuer:leader-election", "RoleBinding/istio-acme-issuer:leader-election",
	} {
		if !slices.Contains(defaults, want) {
			t.Errorf("default render lacks %s (has %v)", want, defaults)
		}
	}

	// A platform that uses cert-manager's approver-policy leaves out the
	// default approver's right to approve our requests.
	for _, k := range kinds(render(t, "certManager.approveRequests=false")) {
		if strings.Contains(k, "approve-requests") {
			t.Errorf("certManager.approveRequests=false still renders %s", k)
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

	// Production shape: a PodDisruptionBudget, spread over nodes, no
	// sidecar; a ServiceMonitor only when asked for.
	for _, want := range []string{"PodDisruptionBudget/istio-acme-issuer"} {
		if !slices.Contains(defaults, want) {
			t.Errorf("default render lacks %s", want)
		}
	}
	if slices.Contains(defaults, "ServiceMonitor/istio-acme-issuer") {
		t.Error("a ServiceMonitor is rendered by default; it needs prometheus-operator's CRDs")
	}
	for _, o := range render(t) {
		if o.GetKind() != "Deployment" {
			continue
		}
		if v, _, _ := unstructured.NestedString(o.Object, "spec", "template", "metadata", "labels", "sidecar.istio.io/inject"); v != "false" {
			t.Errorf("sidecar injection label %q, want \"false\" by default", v)
		}
		spread, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "topologySpreadConstraints")
		if len(spread) != 1 || fmt.Sprint(spread[0].(map[string]any)["labelSelector"]) != "map[matchLabels:map[app.kubernetes.io/instance:istio-acme-issuer app.kubernetes.io/name:istio-acme-issuer]]" {
			t.Errorf("topology spread %v, want one constraint selecting the controller's pods", spread)
		}
	}
	for _, o := range render(t, "extraEnv[0].name=GOMEMLIMIT", "extraEnv[0].value=200MiB") {
		if o.GetKind() != "Deployment" {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		env := fmt.Sprint(containers[0].(map[string]any)["env"])
		if !strings.Contains(env, "map[name:GOMEMLIMIT value:200MiB]") || !strings.Contains(env, "POD_NAMESPACE") {
			t.Errorf("extraEnv: container env %s, want GOMEMLIMIT=200MiB next to POD_NAMESPACE", env)
		}
	}
	monitored := kinds(render(t, "metrics.serviceMonitor.enabled=true", "replicaCount=1", "sidecarInjection=true", "extraArgs={--workers=40}"))
	for _, want := range []string{"ServiceMonitor/istio-acme-issuer", "Service/istio-acme-issuer-metrics"} {
		if !slices.Contains(monitored, want) {
			t.Errorf("metrics.serviceMonitor.enabled=true does not render %s", want)
		}
	}
	if slices.Contains(monitored, "PodDisruptionBudget/istio-acme-issuer") {
		t.Error("a PodDisruptionBudget with a single replica would block node drains")
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

// TestValuesSchemaRejectsTypos checks that values.schema.json turns a
// misspelled or mistyped value into an error instead of a silent default.
func TestValuesSchemaRejectsTypos(t *testing.T) {
	for set, want := range map[string]string{
		"replicaCont=3":                  "additional properties 'replicaCont' not allowed",
		"rbac.gatewayNamespace={a}":      "additional properties 'gatewayNamespace' not allowed",
		"image.pullPolicy=Sometimes":     "pullPolicy",
		"tokenServer.port=80000":         "port",
		"rbac.issuerNamespaces={Team_A}": "issuerNamespaces",
		// --set makes 100 a number; the API server would refuse it.
		"extraEnv[0].name=GOGC,extraEnv[0].value=100": "value",
	} {
		_, err := testenv.HelmResult(t, "template", "istio-acme-issuer", chartDir(t), "--kube-version", testenv.KubeVersion, "--set", set)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: got %v, want an error mentioning %q", set, err, want)
		}
	}
}

// TestChartIsAcceptedByTheAPIServer applies every rendered object, with
// default and non-default values, with a server-side dry-run to a real API
// server that has cert-manager's and Istio's CRDs.
func TestChartIsAcceptedByTheAPIServer(t *testing.T) {
	api := testenv.StartAPIServer(t)
	api.CreateNamespaces(t, namespace, "istio-system", "istio-ingress", "team-a")
	install, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "deploy/install.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range testenv.DecodeObjects(t, string(install)) {
		if err := api.ApplyObject(namespace, o, client.DryRunAll); err != nil {
			t.Errorf("deploy/install.yaml: %v", err)
		}
	}
	for _, values := range [][]string{
		nil,
		{"rbac.issuerNamespaces={team-a}", "rbac.gatewayNamespaces={istio-system,istio-ingress}", "rbac.temporaryHTTPSNamespaces={istio-ingress}",
			"podLabels.team=platform", "extraArgs={--workers=40}", "selfCheckNameservers={10.0.0.10:53}", "sidecarInjection=true", "podDisruptionBudget.minAvailable=50%",
			"extraEnv[0].name=GOMEMLIMIT", "extraEnv[0].value=200MiB"},
		{"rbac.secretsClusterWide=true", "crds.enabled=false"},
	} {
		for _, o := range render(t, values...) {
			if err := api.ApplyObject(namespace, o, client.DryRunAll); err != nil {
				t.Errorf("with %v: %v", values, err)
			}
		}
	}
	hardened := testenv.DecodeObjects(t, testenv.Helm(t, "template", "istio-acme-issuer", chartDir(t), "--namespace", namespace,
		"--kube-version", testenv.KubeVersion, "-f", "testdata/hardened-values.yaml"))
	for _, o := range hardened {
		if err := api.ApplyObject(namespace, o, client.DryRunAll); err != nil {
			t.Errorf("with testdata/hardened-values.yaml: %v", err)
		}
	}
}

// TestChartRBACIsLeastPrivilege installs the chart's RBAC and checks, as
// the controller's ServiceAccount, what it may and may not do.
func TestChartRBACIsLeastPrivilege(t *testing.T) {
	api := testenv.StartAPIServer(t)
	ctx := context.Background()
	api.CreateNamespaces(t, namespace, "istio-system", "istio-ingress", "team-a", "team-b")
	api.Apply(t, namespace, testenv.RBACObjects(render(t, "rbac.issuerNamespaces={team-a}", "rbac.temporaryHTTPSNamespaces={istio-ingress}")))
	cl, err := client.New(api.ConfigAs(namespace, "istio-acme-issuer"), client.Options{Scheme: api.Env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	secret := func(ns string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe"}}
	}
	gateway := func(ns string) *istionet.Gateway {
		return &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe"}}
	}
	tests := []struct {
		what    string
		do      func() error
		allowed bool
	}{
		{"create an account key Secret in the cluster resource namespace", func() error { return cl.Create(ctx, secret(namespace)) }, true},
		{"read it back", func() error {
			return cl.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "probe"}, &corev1.Secret{})
		}, true},
		{"create an account key Secret in an issuer namespace (rbac.issuerNamespaces)", func() error { return cl.Create(ctx, secret("team-a")) }, true},
		{"create a temporary HTTPS Secret in a gateway namespace (rbac.temporaryHTTPSNamespaces)", func() error { return cl.Create(ctx, secret("istio-ingress")) }, true},
		{"create a challenge Gateway in istio-system (rbac.gatewayNamespaces)", func() error { return cl.Create(ctx, gateway("istio-system")) }, true},
		{"delete it", func() error { return cl.Delete(ctx, gateway("istio-system")) }, true},
		{"list Gateways everywhere (discovery)", func() error { return cl.List(ctx, &istionet.GatewayList{}) }, true},
		{"list Pods everywhere (gateway discovery)", func() error { return cl.List(ctx, &corev1.PodList{}) }, true},

		{"list cert-manager's Challenges everywhere", func() error { return cl.List(ctx, &cmacme.ChallengeList{}) }, true},
		{"list IngressClasses and IstioSolverClasses", func() error {
			return errors.Join(cl.List(ctx, &networkingv1.IngressClassList{}), cl.List(ctx, &v1alpha1.IstioSolverClassList{}))
		}, true},
		{"create an ACMEChallenge for a Challenge", func() error {
			return cl.Create(ctx, &v1alpha1.ACMEChallenge{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "probe"}, Spec: v1alpha1.ACMEChallengeSpec{DNSName: "a.example", Token: "t", Key: "k", URL: "u", AuthorizationURL: "a"}})
		}, true},

		{"create a Certificate for an annotated Gateway (the Gateway shim)", func() error {
			return cl.Create(ctx, &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "probe"},
				Spec: cmapi.CertificateSpec{SecretName: "probe", DNSNames: []string{"a.example.com"}, IssuerRef: cmmeta.IssuerReference{Name: "x"}}})
		}, true},

		{"ask cert-manager to renew a Certificate (its status; renewals from the CA's renewal information)", func() error {
			crt := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "probe"}}
			return cl.Status().Patch(ctx, crt, client.RawPatch(types.MergePatchType, []byte(`{"status":{}}`)))
		}, true},

		{"update a cert-manager Challenge's status", func() error {
			return cl.Status().Update(ctx, &cmacme.Challenge{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "probe"}})
		}, false},
		{"delete a cert-manager Challenge (or its finalizers)", func() error {
			return cl.Delete(ctx, &cmacme.Challenge{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "probe"}})
		}, false},
		{"read Ingresses", func() error { return cl.List(ctx, &networkingv1.IngressList{}) }, false},
		{"create an IstioSolverClass", func() error {
			return cl.Create(ctx, &v1alpha1.IstioSolverClass{ObjectMeta: metav1.ObjectMeta{Name: "probe"}})
		}, false},
		{"read Secrets in an unrelated namespace", func() error {
			return cl.Get(ctx, client.ObjectKey{Namespace: "team-b", Name: "probe"}, &corev1.Secret{})
		}, false},
		{"list Secrets anywhere", func() error { return cl.List(ctx, &corev1.SecretList{}, client.InNamespace(namespace)) }, false},
		{"delete an account key Secret", func() error { return cl.Delete(ctx, secret(namespace)) }, false},
		{"create Secrets in istio-system without rbac.temporaryHTTPSNamespaces", func() error { return cl.Create(ctx, secret("istio-system")) }, false},
		{"create a Gateway outside rbac.gatewayNamespaces", func() error { return cl.Create(ctx, gateway("team-b")) }, false},
		{"delete Pods", func() error {
			return cl.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace("istio-system"))
		}, false},
		{"create CertificateRequests", func() error {
			return cl.Create(ctx, &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "probe"}})
		}, false},
		{"edit an issuer's spec", func() error {
			return cl.Create(ctx, &v1alpha1.ACMEClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "probe"}})
		}, false},
	}
	for _, tt := range tests {
		err := tt.do()
		switch {
		case tt.allowed && err != nil:
			t.Errorf("the controller may not %s: %v", tt.what, err)
		case !tt.allowed && !apierrors.IsForbidden(err):
			t.Errorf("the controller may %s (got %v, want Forbidden)", tt.what, err)
		}
	}
}

// TestRenewalsRBACFollowsTheValue: without renewalInfo.enabled the chart
// grants nothing on Certificates' status, and tells the controller so.
func TestRenewalsRBACFollowsTheValue(t *testing.T) {
	for _, enabled := range []bool{true, false} {
		objs := render(t, fmt.Sprintf("renewalInfo.enabled=%t", enabled))
		granted := slices.ContainsFunc(objs, func(o *unstructured.Unstructured) bool {
			return o.GetKind() == "ClusterRole" && strings.HasSuffix(o.GetName(), ":renewals")
		})
		if granted != enabled {
			t.Errorf("renewalInfo.enabled=%t: the ClusterRole for renewals rendered: %t (%v)", enabled, granted, kinds(objs))
		}
		flag := fmt.Sprintf("--renewal-info=%t", enabled)
		if !slices.ContainsFunc(objs, func(o *unstructured.Unstructured) bool {
			return o.GetKind() == "Deployment" && strings.Contains(fmt.Sprint(o.Object), flag)
		}) {
			t.Errorf("renewalInfo.enabled=%t: the Deployment does not pass %s", enabled, flag)
		}
	}
}

// TestCertManagerMayApproveOurRequests asks the API server the question
// cert-manager's webhook asks before it lets its approver approve a
// CertificateRequest (may the approver "approve" the "signers" resource
// named <resource>.<group>/*), with cert-manager's own chart RBAC installed:
// denied for our issuers until this chart is installed, allowed after.
func TestCertManagerMayApproveOurRequests(t *testing.T) {
	api := testenv.StartAPIServer(t)
	ctx := context.Background()
	api.CreateNamespaces(t, namespace, "cert-manager", "istio-system")
	certManagerChart := filepath.Join(testenv.CertManagerDir(t), "deploy/charts/cert-manager")
	api.Apply(t, "cert-manager", testenv.RBACObjects(testenv.RenderChart(t, certManagerChart, "cert-manager", "cert-manager")))

	mayApprove := func(signer string) bool {
		t.Helper()
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   testenv.ServiceAccountUser("cert-manager", "cert-manager"),
			Groups: testenv.ServiceAccountGroups("cert-manager"),
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Group: "cert-manager.io", Resource: "signers", Verb: "approve", Name: signer,
			},
		}}
		if err := api.Client.Create(ctx, sar); err != nil {
			t.Fatal(err)
		}
		return sar.Status.Allowed
	}
	signers := []string{"acmeclusterissuers.istio-acme.io/*", "acmeissuers.istio-acme.io/*"}
	if !mayApprove("clusterissuers.cert-manager.io/*") {
		t.Fatal("cert-manager's chart RBAC does not let it approve its own issuers' requests: the test setup is wrong")
	}
	for _, s := range signers {
		if mayApprove(s) {
			t.Errorf("cert-manager may approve %s before this chart is installed: the check proves nothing", s)
		}
	}
	api.Apply(t, namespace, testenv.RBACObjects(render(t)))
	for _, s := range signers {
		if !mayApprove(s) {
			t.Errorf("with this chart installed cert-manager may still not approve requests for %s", s)
		}
	}
	if mayApprove("acmeclusterissuers.other.example/*") {
		t.Error("the chart lets cert-manager approve requests of other signers")
	}
}

// TestHelmInstall installs, upgrades and uninstalls the chart with the
// pinned helm on an API server that has cert-manager's and Istio's CRDs but
// not ours, as a platform team's first install does.
func TestHelmInstall(t *testing.T) {
	api := testenv.StartAPIServerWith(t, testenv.APIServerOptions{WithoutOurCRDs: true})
	api.CreateNamespaces(t, "istio-system")
	helm := func(args ...string) string {
		t.Helper()
		out, err := testenv.HelmResult(t, append(args, "--kubeconfig", api.Kubeconfig)...)
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	ingressClasses := func() map[string]*networkingv1.IngressClassParametersReference {
		t.Helper()
		var list networkingv1.IngressClassList
		if err := api.Client.List(context.Background(), &list); err != nil {
			t.Fatal(err)
		}
		out := map[string]*networkingv1.IngressClassParametersReference{}
		for _, ic := range list.Items {
			if ic.Spec.Controller != v1alpha1.SolverIngressController {
				t.Errorf("IngressClass %s has controller %q, want %s", ic.Name, ic.Spec.Controller, v1alpha1.SolverIngressController)
			}
			out[ic.Name] = ic.Spec.Parameters
		}
		return out
	}

	notes := helm("install", "istio-acme-issuer", chartDir(t), "--namespace", namespace, "--create-namespace")
	checkNotes(t, api, notes)
	if got := ingressClasses(); len(got) != 1 || got["istio-acme"] != nil {
		t.Errorf("IngressClasses after install: %v, want istio-acme without parameters", got)
	}
	helm("upgrade", "istio-acme-issuer", chartDir(t), "--namespace", namespace, "--set", "ingressClasses[0].name=istio-acme,ingressClasses[1].name=internal,ingressClasses[1].solverClass=internal-gateways")
	got := ingressClasses()
	if p := got["internal"]; len(got) != 2 || p == nil || p.Kind != "IstioSolverClass" || p.Name != "internal-gateways" || ptr.Deref(p.APIGroup, "") != v1alpha1.GroupVersion.Group || ptr.Deref(p.Scope, "") != "Cluster" {
		t.Errorf("IngressClasses after the upgrade: %v, want istio-acme and internal naming IstioSolverClass internal-gateways", got)
	}
	helm("uninstall", "istio-acme-issuer", "--namespace", namespace)
	if got := ingressClasses(); len(got) != 0 {
		t.Errorf("IngressClasses after uninstall: %v, want none", got)
	}
}

// checkNotes checks what helm install prints: the image the release runs,
// how to check the install, and examples the API server accepts.
func checkNotes(t *testing.T, api *testenv.APIServer, notes string) {
	t.Helper()
	for _, want := range []string{"running\nimage ghcr.io/istio-acme/istio-acme-issuer:v0.1.0", "no image is published there yet", "rollout status deployment/istio-acme-issuer"} {
		if !strings.Contains(notes, want) {
			t.Errorf("the install's notes lack %q:\n%s", want, notes)
		}
	}
	heredocs := regexp.MustCompile(`(?s)<<YAML\n(.*?)\n  YAML`).FindAllStringSubmatch(notes, -1)
	if len(heredocs) < 3 {
		t.Fatalf("%d YAML examples in the install's notes, want the issuer, the grant and the Certificate:\n%s", len(heredocs), notes)
	}
	for _, h := range heredocs {
		var lines []string
		for _, l := range strings.Split(h[1], "\n") {
			lines = append(lines, strings.TrimPrefix(l, "  "))
		}
		for _, o := range testenv.DecodeObjects(t, strings.Join(lines, "\n")) {
			// The CRDs the chart just installed may take a moment to be served.
			var err error
			for range 50 {
				if err = api.ApplyObject(namespace, o, client.DryRunAll); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				t.Errorf("the install's notes show %s %s, which the API server refuses: %v", o.GetKind(), o.GetName(), err)
			}
		}
	}
}
