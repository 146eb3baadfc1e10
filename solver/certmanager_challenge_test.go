package solver

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	cmacme "github.com/cert-manager/cert-manager/pkg/apis/acme/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// TestDefaultSettingsMatchTheCRD: an IngressClass without spec.parameters
// gets the same settings an empty IstioSolverClass gets from the API
// server's defaulting.
func TestDefaultSettingsMatchTheCRD(t *testing.T) {
	api := testenv.StartAPIServer(t)
	sc := &v1alpha1.IstioSolverClass{ObjectMeta: metav1.ObjectMeta{Name: "empty"}}
	if err := api.Client.Create(context.Background(), sc); err != nil {
		t.Fatal(err)
	}
	if want := v1alpha1.DefaultIstioHTTP01Solver(); !reflect.DeepEqual(sc.Spec, want) {
		t.Errorf("the CRD defaults an empty IstioSolverClass to\n%+v\nDefaultIstioHTTP01Solver is\n%+v", sc.Spec, want)
	}
}

// TestCertManagerChallenges runs the challenge controllers against a real
// API server, with the Challenges written as cert-manager's controller
// writes them: a Challenge of our IngressClass gets an ACMEChallenge while
// cert-manager works on it or will next, whose routes are published and whose token is
// served; its progress and diagnoses are Events on the Challenge; other
// classes are left alone; and everything goes when the Challenge is final
// or deleted.
func TestCertManagerChallenges(t *testing.T) {
	api := testenv.StartAPIServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl := api.Client
	api.CreateNamespaces(t, "apps", "istio-system", "edge")
	gwLabels := map[string]string{"istio": "ingressgateway", "app": "istio-ingressgateway"}
	gatewayAddr := createGatewayService(ctx, t, cl, gwLabels)
	createGatewayPod(ctx, t, cl, gwLabels)
	tokenService := v1alpha1.TokenServiceReference{Namespace: "platform", Name: "acme", Port: 9000}
	startChallengeControllerWith(ctx, t, api, gatewayAddr, true, true, func(mgr manager.Manager) error {
		return (&CertManagerChallengeReconciler{Client: mgr.GetClient(), Events: mgr.GetEventRecorder("test"), TokenService: tokenService}).SetupWithManager(mgr)
	})
	for _, ic := range []*networkingv1.IngressClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "istio-acme"}, Spec: networkingv1.IngressClassSpec{Controller: v1alpha1.SolverIngressController}},
		{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}, Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "edge"}, Spec: networkingv1.IngressClassSpec{Controller: v1alpha1.SolverIngressController, Parameters: &networkingv1.IngressClassParametersReference{
			APIGroup: ptr.To(v1alpha1.GroupVersion.Group), Kind: "IstioSolverClass", Name: "edge-gateways", Scope: ptr.To("Cluster"),
		}}},
	} {
		if err := cl.Create(ctx, ic); err != nil {
			t.Fatal(err)
		}
	}

	shop := cmChallenge("shop-1-2-3", "shop.example.com", "tok-shop", "istio-acme")
	other := cmChallenge("blog-1-2-3", "blog.example.com", "tok-blog", "nginx")
	for _, ch := range []*cmacme.Challenge{shop, other} {
		if err := cl.Create(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	// Not scheduled yet, but next for its name: published before
	// cert-manager processes it, so its first self-check finds the route.
	mirror := &v1alpha1.ACMEChallenge{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: shop.Name}}
	waitChallenge(t, cl, mirror, "the ACMEChallenge to be presented before cert-manager schedules the Challenge", func(got *v1alpha1.ACMEChallenge) bool {
		*mirror = *got
		return got.Status.Presented
	})
	// A second Challenge of the same name waits its turn, as cert-manager
	// validates one per name at a time.
	later := cmChallenge("shop-9-9-9", "shop.example.com", "tok-shop-later", "istio-acme")
	if err := cl.Create(ctx, later); err != nil {
		t.Fatal(err)
	}
	consistently(t, "no ACMEChallenge for a Challenge queued behind another of its name", func() (bool, string) {
		err := cl.Get(ctx, client.ObjectKeyFromObject(later), &v1alpha1.ACMEChallenge{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	setProcessing(ctx, t, cl, shop, other)
	if !metav1.IsControlledBy(mirror, shop) || mirror.Labels[LabelCertManagerChallenge] != string(shop.UID) {
		t.Errorf("ACMEChallenge owners %v labels %v, want controlled by and labelled with Challenge %s", mirror.OwnerReferences, mirror.Labels, shop.UID)
	}
	wantSettings := v1alpha1.DefaultIstioHTTP01Solver()
	wantSettings.TokenService = tokenService
	if s := mirror.Spec; s.DNSName != "shop.example.com" || s.Token != "tok-shop" || s.Key != "tok-shop.thumb" || s.Order != "" ||
		s.IngressClass != "istio-acme" || s.SolverClass != "" || !reflect.DeepEqual(s.Solver, wantSettings) {
		t.Errorf("ACMEChallenge spec %+v, want the Challenge's host, token and key with the default settings and the controller's token Service", s)
	}
	var vss istionet.VirtualServiceList
	if err := cl.List(ctx, &vss, client.MatchingLabels{LabelCertManagerChallenge: string(shop.UID)}); err != nil || len(vss.Items) != 1 {
		t.Fatalf("VirtualServices labelled with the Challenge's UID: %d (%v), want 1", len(vss.Items), err)
	}
	if d := vss.Items[0].Spec.Http[0].Route[0].Destination; d.Host != "acme.platform.svc.cluster.local" || d.Port.GetNumber() != 9000 {
		t.Errorf("route destination %v, want the controller's token Service", d)
	}
	waitEvent(ctx, t, cl, shop, "RoutesPublished", "self-check passed")
	if code, body := getToken(gatewayAddr, "shop.example.com", "tok-shop"); code != http.StatusOK || body != "tok-shop.thumb" {
		t.Errorf("token answer %d %q, want the Challenge's key", code, body)
	}

	// Another controller's class: left alone.
	if err := cl.Get(ctx, client.ObjectKeyFromObject(other), &v1alpha1.ACMEChallenge{}); !apierrors.IsNotFound(err) {
		t.Errorf("a Challenge of IngressClass nginx got an ACMEChallenge: %v", err)
	}

	// A class whose IstioSolverClass is missing says so; once it exists,
	// its settings are used, and a diagnosis names its fields.
	edge := cmChallenge("edge-1-2-3", "edge.example.com", "tok-edge", "edge")
	if err := cl.Create(ctx, edge); err != nil {
		t.Fatal(err)
	}
	setProcessing(ctx, t, cl, edge)
	waitEvent(ctx, t, cl, edge, "SolverClassInvalid", "IngressClass edge spec.parameters names IstioSolverClass edge-gateways, which does not exist")
	if err := cl.Create(ctx, &v1alpha1.IstioSolverClass{
		ObjectMeta: metav1.ObjectMeta{Name: "edge-gateways"},
		Spec: v1alpha1.IstioHTTP01Solver{
			Gateways:         []v1alpha1.GatewayWorkloadSelector{{Selector: map[string]string{"istio": "edge-gateway"}}},
			GatewayNamespace: "edge",
		},
	}); err != nil {
		t.Fatal(err)
	}
	edgeMirror := &v1alpha1.ACMEChallenge{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: edge.Name}}
	waitChallenge(t, cl, edgeMirror, "the edge ACMEChallenge to report the missing gateway", func(got *v1alpha1.ACMEChallenge) bool {
		*edgeMirror = *got
		return strings.Contains(got.Status.Message, "IstioSolverClass edge-gateways spec.gateways[0]: no pod has the labels istio=edge-gateway")
	})
	if s := edgeMirror.Spec; s.SolverClass != "edge-gateways" || s.Solver.GatewayNamespace != "edge" || s.Solver.TokenService.Name != "istio-acme-issuer" {
		t.Errorf("edge ACMEChallenge settings %+v from %q, want IstioSolverClass edge-gateways with its defaults", s.Solver, s.SolverClass)
	}
	waitEvent(ctx, t, cl, edge, "NotPresented", "IstioSolverClass edge-gateways spec.gateways[0]")

	// An IngressClass deleted while its Challenge is open: the routes go.
	temp := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "temp"}, Spec: networkingv1.IngressClassSpec{Controller: v1alpha1.SolverIngressController}}
	if err := cl.Create(ctx, temp); err != nil {
		t.Fatal(err)
	}
	orphan := cmChallenge("temp-1-2-3", "temp.example.com", "tok-temp", "temp")
	if err := cl.Create(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	setProcessing(ctx, t, cl, orphan)
	waitFor(t, "the ACMEChallenge of the temp class", func() (bool, string) {
		err := cl.Get(ctx, client.ObjectKeyFromObject(orphan), &v1alpha1.ACMEChallenge{})
		return err == nil, fmt.Sprint(err)
	})
	if err := cl.Delete(ctx, temp); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the ACMEChallenge of the deleted class to be gone", func() (bool, string) {
		err := cl.Get(ctx, client.ObjectKeyFromObject(orphan), &v1alpha1.ACMEChallenge{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})

	// The CA judged the Challenge: its routes go, the Challenge stays.
	shop.Status.State = cmacme.Valid
	if err := cl.Status().Update(ctx, shop); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the valid Challenge's ACMEChallenge and routes to be gone", func() (bool, string) {
		err := cl.Get(ctx, client.ObjectKeyFromObject(mirror), &v1alpha1.ACMEChallenge{})
		var left istionet.VirtualServiceList
		if err := cl.List(ctx, &left, client.MatchingLabels{LabelCertManagerChallenge: string(shop.UID)}); err != nil {
			return false, err.Error()
		}
		return apierrors.IsNotFound(err) && len(left.Items) == 0, fmt.Sprint(err, len(left.Items))
	})
	// ... and the one queued behind it is next: published at once, before
	// cert-manager schedules it.
	waitChallenge(t, cl, &v1alpha1.ACMEChallenge{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: later.Name}},
		"the next Challenge of the name to be presented once the first is valid", func(got *v1alpha1.ACMEChallenge) bool { return got.Status.Presented })
	// A deleted Challenge takes its ACMEChallenge along.
	if err := cl.Delete(ctx, edge); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deleted Challenge's ACMEChallenge to be gone", func() (bool, string) {
		err := cl.Get(ctx, client.ObjectKeyFromObject(edgeMirror), &v1alpha1.ACMEChallenge{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	var left cmacme.Challenge
	if err := cl.Get(ctx, client.ObjectKeyFromObject(shop), &left); err != nil || len(left.Finalizers) != 0 || left.Status.State != cmacme.Valid {
		t.Errorf("the Challenge was changed: finalizers %v, state %q (%v)", left.Finalizers, left.Status.State, err)
	}
}

func cmChallenge(name, host, token, class string) *cmacme.Challenge {
	return &cmacme.Challenge{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: name},
		Spec: cmacme.ChallengeSpec{
			URL: "https://ca.example/chall/" + name, AuthorizationURL: "https://ca.example/authz/" + name,
			DNSName: host, Token: token, Key: token + ".thumb", Type: cmacme.ACMEChallengeTypeHTTP01,
			Solver: cmacme.ACMEChallengeSolver{HTTP01: &cmacme.ACMEChallengeSolverHTTP01{
				Ingress: &cmacme.ACMEChallengeSolverHTTP01Ingress{IngressClassName: ptr.To(class)},
			}},
			IssuerRef: cmmeta.IssuerReference{Name: "letsencrypt", Kind: "ClusterIssuer"},
		},
	}
}

// setProcessing marks Challenges as scheduled, as cert-manager does.
func setProcessing(ctx context.Context, t *testing.T, cl client.Client, chs ...*cmacme.Challenge) {
	t.Helper()
	for _, ch := range chs {
		ch.Status.Processing, ch.Status.State = true, cmacme.Pending
		if err := cl.Status().Update(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
}

// waitEvent waits for an Event with reason on the Challenge whose note
// contains text.
func waitEvent(ctx context.Context, t *testing.T, cl client.Client, ch *cmacme.Challenge, reason, text string) {
	t.Helper()
	waitFor(t, "Event "+reason+" on Challenge "+ch.Name, func() (bool, string) {
		return testenv.FindEvent(ctx, cl, ch.Namespace, func(r corev1.ObjectReference) bool { return r.Kind == "Challenge" && r.UID == ch.UID }, reason, text)
	})
}

func getToken(gatewayAddr, host, token string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+gatewayAddr+ChallengePathPrefix+token, nil)
	req.Host = host
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// consistently fails the test if cond stops holding within a second: long
// enough for a controller that would act to have acted.
func consistently(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if ok, state := cond(); !ok {
			t.Fatalf("expected %s: %s", what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNoCertManagerCRDs: without cert-manager's ACME CRDs the controller
// says what is missing and how to turn the feature off.
func TestNoCertManagerCRDs(t *testing.T) {
	api := testenv.StartAPIServerWith(t, testenv.APIServerOptions{WithoutCertManagerCRDs: true})
	mgr := testenv.NewManager(t, api, cache.Options{})
	err := (&CertManagerChallengeReconciler{Client: mgr.GetClient(), Events: mgr.GetEventRecorder("test")}).SetupWithManager(mgr)
	if err == nil || !strings.Contains(err.Error(), "install cert-manager with its CRDs, or turn this off with --cert-manager-challenges=false") {
		t.Errorf("setup without cert-manager's CRDs: %v, want an error naming the CRDs and the flag", err)
	}
}
