package solver

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// TestChallengeLifecycle runs the challenge controller and the token server
// against a real API server: a challenge gets its Gateway and VirtualService,
// its token is served from the cache, and deleting it removes its routes.
func TestChallengeLifecycle(t *testing.T) {
	api := testenv.StartAPIServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl := api.Client
	api.CreateNamespaces(t, "apps", "istio-system")
	// The ingress gateway's Service; the token server itself listens on its
	// (loopback) cluster IP, standing for a gateway that routes every
	// request to it.
	gwLabels := map[string]string{"istio": "ingressgateway", "app": "istio-ingressgateway"}
	gatewayAddr := createGatewayService(ctx, t, cl, gwLabels)

	startChallengeController(ctx, t, api, gatewayAddr, true)

	ch := testChallenge()
	if err := cl.Create(ctx, ch); err != nil {
		t.Fatal(err)
	}
	want := BuildRoutes(ch, []WorkloadRoute{{Index: 0, OwnHTTP: true}}, false, nil)
	wantGateway := want.Gateways[0]
	// A Gateway this challenge had on a second workload before (a user's
	// Gateway has since taken over there): it must go.
	stale := BuildRoutes(ch, []WorkloadRoute{{Index: 1, OwnHTTP: true}}, false, nil).Gateways[0]
	if err := cl.Create(ctx, stale); err != nil {
		t.Fatal(err)
	}

	// No gateway pod has the selector's labels yet: the self-check says so.
	waitChallenge(t, cl, ch, "the self-check to report the missing gateway", func(got *v1alpha1.ACMEChallenge) bool {
		return !got.Status.Presented && strings.Contains(got.Status.Message, "the issuer's spec.solver.istio.gateways[0]: no pod has the labels istio=ingressgateway")
	})
	createGatewayPod(ctx, t, cl, gwLabels)

	waitChallenge(t, cl, ch, "the challenge to be presented", func(got *v1alpha1.ACMEChallenge) bool {
		return got.Status.Presented && len(got.Status.Routes) == 2 && strings.Contains(got.Status.Message, "self-check passed through the ingress gateway at "+gatewayAddr)
	})
	// Its own Gateway lives in the gateway namespace, where the challenge
	// cannot own it: the finalizer removes it.
	if err := cl.Get(ctx, client.ObjectKeyFromObject(ch), ch); err != nil || !slices.Contains(ch.Finalizers, v1alpha1.ChallengeRoutesFinalizer) {
		t.Errorf("a challenge with a Gateway in another namespace has finalizers %v, want %s (%v)", ch.Finalizers, v1alpha1.ChallengeRoutesFinalizer, err)
	}
	gw := &istionet.Gateway{}
	if err := cl.Get(ctx, client.ObjectKeyFromObject(wantGateway), gw); err != nil {
		t.Fatalf("Gateway: %v", err)
	}
	vs := &istionet.VirtualService{}
	if err := cl.Get(ctx, client.ObjectKeyFromObject(want.VirtualServices[0]), vs); err != nil {
		t.Fatalf("VirtualService: %v", err)
	}
	if !sameRoute(wantGateway, gw) || !sameRoute(want.VirtualServices[0], vs) {
		t.Fatalf("stored routes differ from the built ones:\n%v\n%v", gw.Spec.String(), vs.Spec.String())
	}
	if err := cl.Get(ctx, client.ObjectKeyFromObject(stale), &istionet.Gateway{}); !apierrors.IsNotFound(err) {
		t.Errorf("the challenge's stale Gateway %s is still there: %v", stale.Name, err)
	}

	// Someone deletes the route while the CA may be validating: it comes back.
	if err := cl.Delete(ctx, vs); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deleted VirtualService to be published again", func() (bool, string) {
		again := &istionet.VirtualService{}
		err := cl.Get(ctx, client.ObjectKeyFromObject(want.VirtualServices[0]), again)
		return err == nil && again.UID != vs.UID && sameRoute(want.VirtualServices[0], again), fmt.Sprint(err)
	})

	// Every replica serves the token from the API server's state.
	get := func(host string) (int, string) { return getToken(gatewayAddr, host, "tok-123") }
	waitFor(t, "the token to be served", func() (bool, string) {
		code, body := get("shop.example.com")
		return code == 200 && body == "tok-123.thumbprint", fmt.Sprint(code, body)
	})
	if code, _ := get("other.example.com"); code != http.StatusNotFound {
		t.Errorf("token served for another host: %d", code)
	}

	if err := cl.Delete(ctx, ch); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the routes and the challenge to be gone", func() (bool, string) {
		gwErr := cl.Get(ctx, client.ObjectKeyFromObject(wantGateway), &istionet.Gateway{})
		vsErr := cl.Get(ctx, client.ObjectKeyFromObject(want.VirtualServices[0]), &istionet.VirtualService{})
		chErr := cl.Get(ctx, client.ObjectKeyFromObject(ch), &v1alpha1.ACMEChallenge{})
		return apierrors.IsNotFound(gwErr) && apierrors.IsNotFound(vsErr) && apierrors.IsNotFound(chErr),
			fmt.Sprintf("gateway: %v, virtual service: %v, challenge: %v", gwErr, vsErr, chErr)
	})
	waitFor(t, "the token to stop being served", func() (bool, string) {
		code, _ := get("shop.example.com")
		return code == http.StatusNotFound, fmt.Sprint(code)
	})
}

// TestChallengeRoutesInItsNamespaceGoWithIt: a host a user's Gateway
// already serves on port 80 needs only a VirtualService, in the challenge's
// namespace. The challenge owns it, carries no finalizer (no round trip to
// add and remove one), and the garbage collector removes the route when the
// challenge goes.
func TestChallengeRoutesInItsNamespaceGoWithIt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	api, gatewayAddr := startIngress(ctx, t)
	cl := api.Client
	createHTTPGateway(ctx, t, cl, "shop", "apps/shop.example.com")
	startChallengeController(ctx, t, api, gatewayAddr, true)

	ch := testChallenge()
	if err := cl.Create(ctx, ch); err != nil {
		t.Fatal(err)
	}
	waitChallenge(t, cl, ch, "the challenge to be presented", func(got *v1alpha1.ACMEChallenge) bool {
		return got.Status.Presented
	})
	if err := cl.Get(ctx, client.ObjectKeyFromObject(ch), ch); err != nil {
		t.Fatal(err)
	}
	if len(ch.Finalizers) != 0 {
		t.Errorf("a challenge whose routes all live in its namespace has finalizers %v, want none", ch.Finalizers)
	}
	var routes []client.Object
	for _, ref := range ch.Status.Routes {
		if ref.Kind != "VirtualService" || ref.Namespace != ch.Namespace {
			t.Errorf("route %s %s/%s, want only VirtualServices in %s binding the user's Gateway", ref.Kind, ref.Namespace, ref.Name, ch.Namespace)
			continue
		}
		vs := &istionet.VirtualService{}
		if err := cl.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, vs); err != nil {
			t.Fatal(err)
		}
		if owners := vs.OwnerReferences; len(owners) != 1 || owners[0].UID != ch.UID || owners[0].Kind != "ACMEChallenge" {
			t.Errorf("VirtualService %s is owned by %v, want the challenge %s", vs.Name, owners, ch.UID)
		}
		routes = append(routes, vs)
	}
	if len(routes) == 0 {
		t.Fatalf("the presented challenge records no VirtualService: %v", ch.Status.Routes)
	}

	if err := cl.Delete(ctx, ch); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the garbage collector to remove the challenge's VirtualServices", func() (bool, string) {
		for _, obj := range routes {
			if err := cl.Get(ctx, client.ObjectKeyFromObject(obj), &istionet.VirtualService{}); !apierrors.IsNotFound(err) {
				return false, fmt.Sprintf("%s: %v", obj.GetName(), err)
			}
		}
		return true, ""
	})
}

// startChallengeController runs the challenge controller (and, with
// tokens, the token server listening on gatewayAddr) against the API
// server until the test ends.
func startChallengeController(ctx context.Context, t *testing.T, api *testenv.APIServer, gatewayAddr string, tokens bool, more ...func(manager.Manager) error) {
	t.Helper()
	startChallengeControllerWith(ctx, t, api, gatewayAddr, tokens, false, more...)
}

// startChallengeControllerWith also checks the challenges' provenance, as
// the controller does in a cluster, when provenance is set: the routing
// tests write their challenges by hand.
func startChallengeControllerWith(ctx context.Context, t *testing.T, api *testenv.APIServer, gatewayAddr string, tokens, provenance bool, more ...func(manager.Manager) error) {
	t.Helper()
	startChallengeControllerPresenting(ctx, t, api, gatewayAddr, tokens, provenance, nil, more...)
}

// startChallengeControllerPresenting also hands presented challenges of
// orders to presentations, when set, as the controller does for its signer.
func startChallengeControllerPresenting(ctx context.Context, t *testing.T, api *testenv.APIServer, gatewayAddr string, tokens, provenance bool, presentations *Presentations, more ...func(manager.Manager) error) {
	t.Helper()
	mgr := testenv.NewManager(t, api, cache.Options{ByObject: IstioCacheOptions()})
	// As the controller reads them: only kinds registered before the
	// cache started, or the answers are 503s.
	tokenPath, err := NewTokenPathReader(ctx, mgr.GetCache(), mgr.GetScheme())
	if err != nil {
		t.Fatal(err)
	}
	var prov *Provenance
	var proven func(context.Context, *v1alpha1.ACMEChallenge) (bool, error)
	if provenance {
		prov = &Provenance{Client: tokenPath}
		proven = prov.Proven
	}
	if tokens {
		if err := mgr.Add(&TokenServer{Addr: gatewayAddr, Lookup: CacheLookup(tokenPath), Proven: proven, Log: logr.Discard()}); err != nil {
			t.Fatal(err)
		}
	}
	// As a platform grants its app team a zone: the routing tests' names
	// need no Gateway to list them first. The tenancy tests use other
	// namespaces and zones.
	if err := api.Client.Create(ctx, &v1alpha1.HostnameGrant{
		ObjectMeta: metav1.ObjectMeta{Name: "apps-example-com"},
		Spec:       v1alpha1.HostnameGrantSpec{Namespaces: []string{"apps"}, Zones: []string{"example.com"}},
	}); err != nil {
		t.Fatal(err)
	}
	discovery := &GatewayDiscovery{Reader: mgr.GetAPIReader()}
	if err := (&ChallengeReconciler{
		Client:        mgr.GetClient(),
		APIReader:     mgr.GetAPIReader(),
		Events:        mgr.GetEventRecorder("test"),
		Discovery:     discovery,
		SelfCheck:     &SelfCheck{},
		Authorizer:    &HostAuthorizer{Client: mgr.GetClient(), Discovery: discovery},
		Provenance:    prov,
		Presentations: presentations,
	}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	for _, setup := range more {
		if err := setup(mgr); err != nil {
			t.Fatal(err)
		}
	}
	testenv.RunManager(ctx, t, mgr)
}

// startIngress starts an API server with namespaces apps, istio-system and
// more, and Istio's default ingress gateway in it (a pod labelled
// istio=ingressgateway and its Service); it returns the Service's address,
// where a test may listen in the gateway's place.
func startIngress(ctx context.Context, t *testing.T, more ...string) (*testenv.APIServer, string) {
	t.Helper()
	api := testenv.StartAPIServer(t)
	api.CreateNamespaces(t, append([]string{"apps", "istio-system"}, more...)...)
	gwLabels := map[string]string{"istio": "ingressgateway"}
	addr := createGatewayService(ctx, t, api.Client, gwLabels)
	createGatewayPod(ctx, t, api.Client, gwLabels)
	return api, addr
}

// createGatewayService creates the ingress gateway's Service (port 80) for
// pods with labels and returns its cluster IP address and port, a loopback
// address the test may listen on.
func createGatewayService(ctx context.Context, t *testing.T, cl client.Client, labels map[string]string) string {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio-ingressgateway"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http2", Port: 80}}},
	}
	if err := cl.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	return svc.Spec.ClusterIP + ":80"
}

// createHTTPGateway creates a user's Gateway in istio-system with a port-80
// server for hosts on the ingress gateway pods.
func createHTTPGateway(ctx context.Context, t *testing.T, cl client.Client, name string, hosts ...string) {
	t.Helper()
	gw := gateway("istio-system", name, map[string]string{"istio": "ingressgateway"}, server(80, "HTTP", nil, hosts...))
	if err := cl.Create(ctx, gw); err != nil {
		t.Fatal(err)
	}
}

// createGatewayPod creates an ingress gateway pod with labels.
func createGatewayPod(ctx context.Context, t *testing.T, cl client.Client, labels map[string]string) {
	t.Helper()
	if err := cl.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio-ingressgateway-1", Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "istio-proxy", Image: "istio/proxyv2"}}},
	}); err != nil {
		t.Fatal(err)
	}
}

// testChallenge is a challenge for shop.example.com on the pods labelled
// istio=ingressgateway.
func testChallenge() *v1alpha1.ACMEChallenge {
	return &v1alpha1.ACMEChallenge{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "shop-1-abc"},
		Spec: v1alpha1.ACMEChallengeSpec{
			Order: "shop-1", DNSName: "shop.example.com", Token: "tok-123", Key: "tok-123.thumbprint",
			URL: "https://ca.example/chall/1", AuthorizationURL: "https://ca.example/authz/1",
			Solver: v1alpha1.IstioHTTP01Solver{
				Gateways:         []v1alpha1.GatewayWorkloadSelector{{Selector: map[string]string{"istio": "ingressgateway"}}},
				GatewayNamespace: "istio-system",
				TokenService:     v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: "istio-acme-issuer", Port: 8089},
			},
		},
	}
}

// waitChallenge waits until the stored challenge satisfies cond.
func waitChallenge(t *testing.T, cl client.Client, ch *v1alpha1.ACMEChallenge, what string, cond func(*v1alpha1.ACMEChallenge) bool) {
	t.Helper()
	waitFor(t, what, func() (bool, string) {
		got := &v1alpha1.ACMEChallenge{}
		if err := cl.Get(context.Background(), client.ObjectKeyFromObject(ch), got); err != nil {
			return false, err.Error()
		}
		return cond(got), got.Status.Message
	})
}

func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	testenv.WaitFor(t, what, cond)
}

// TestFailingSelfCheckWaitsForItsBackoff: a gateway that gives a wrong
// answer of another length every time makes every self-check message new, so every
// attempt writes the challenge's status. Those writes must not wake the
// controller: the attempts keep to the backoff (a few a second at most once
// the challenge is a few seconds old), not as fast as the API server
// answers.
func TestFailingSelfCheckWaitsForItsBackoff(t *testing.T) {
	ctx := context.Background()
	api, gatewayAddr := startIngress(ctx, t)
	cl := api.Client
	var gets atomic.Int64
	gateway := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// A body one byte longer each time: the message gives its length.
		fmt.Fprint(w, strings.Repeat("x", int(gets.Add(1))))
	})}
	ln, err := net.Listen("tcp", gatewayAddr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gateway.Serve(ln) }() // ends with Close below
	t.Cleanup(func() { _ = gateway.Close() })
	startChallengeController(ctx, t, api, "", false)

	ch := testChallenge()
	if err := cl.Create(ctx, ch); err != nil {
		t.Fatal(err)
	}
	waitChallenge(t, cl, ch, "the self-check failure to be reported", func(got *v1alpha1.ACMEChallenge) bool {
		return strings.Contains(got.Status.Message, "self-check failed") && strings.Contains(got.Status.Message, "-byte body")
	})
	from := gets.Load()
	const window = 3 * time.Second
	time.Sleep(window)
	n := gets.Load() - from
	// The backoff allows about 8 attempts in these 3 seconds (a fifth of
	// the challenge's age between attempts); a loop driven by its own
	// status writes makes hundreds.
	if n > 20 {
		t.Errorf("%d self-check requests in %s once the failure was reported: the retries do not wait for their backoff", n, window)
	}
	t.Logf("%d self-check requests in %s once the failure was reported", n, window)
}
