package solver

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// TestOrphanSweep runs the sweep against a real API server: routes whose
// challenge is gone are deleted, routes of a live challenge and objects that
// are not ours are kept, and young objects are spared.
func TestOrphanSweep(t *testing.T) {
	api := testenv.StartAPIServer(t)
	ctx := context.Background()
	cl := api.Client
	api.CreateNamespaces(t, "apps", "istio-system")
	solverSpec := v1alpha1.IstioHTTP01Solver{
		Gateways:         []v1alpha1.GatewayWorkloadSelector{{Selector: map[string]string{"istio": "ingressgateway"}}},
		GatewayNamespace: "istio-system",
		TokenService:     v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: "istio-acme-issuer", Port: 8089},
	}
	live := &v1alpha1.ACMEChallenge{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "live-1"},
		Spec:       v1alpha1.ACMEChallengeSpec{Order: "live", DNSName: "live.example.com", Token: "t1", Key: "k1", URL: "u", AuthorizationURL: "a", Solver: solverSpec},
	}
	if err := cl.Create(ctx, live); err != nil {
		t.Fatal(err)
	}
	gone := live.DeepCopy()
	// Never created: no UID, so its routes have no owner the garbage
	// collector could find missing, as when they live in another namespace.
	gone.Name, gone.UID, gone.Spec.DNSName = "gone-1", "", "gone.example.com"
	liveRoutes, goneRoutes := BuildRoutes(live, []WorkloadRoute{{Index: 0, OwnHTTP: true}}, false, nil), BuildRoutes(gone, []WorkloadRoute{{Index: 0, OwnHTTP: true}}, false, nil)
	// Shared VirtualServices of an order with a live challenge, and of
	// one whose challenges are all gone (restored from a backup: no
	// owners the garbage collector could find missing).
	shared := func(order, name string, uid types.UID) *istionet.VirtualService {
		return BuildSharedVirtualService("apps", order, []SharedMember{
			{Name: name, UID: uid, Hosts: []string{"a.example.com"}, Route: challengeRoute(live, "a.example.com"), Gateways: []string{"istio-system/public"}},
		})
	}
	liveShared, goneShared := shared("live", "live-1", live.UID), shared("gone", "gone-1", "5b8a1f6e-0000-4000-8000-000000000000")
	goneShared.OwnerReferences = nil
	users := &istionet.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "users-app"}}
	users.Spec.Hosts = []string{"app.example.com"}
	for _, obj := range []client.Object{liveRoutes.Gateways[0], liveRoutes.VirtualServices[0], goneRoutes.Gateways[0], goneRoutes.VirtualServices[0], liveShared, goneShared, users} {
		if err := cl.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}

	sweeper := &OrphanSweeper{Client: cl, MinAge: time.Hour, Log: logr.Discard()}
	if n, err := sweeper.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("young objects: deleted %d (%v), want none", n, err)
	}
	sweeper.MinAge = 0
	if n, err := sweeper.Sweep(ctx); err != nil || n != 3 {
		t.Fatalf("deleted %d (%v), want the orphaned Gateway and VirtualService, and the shared VirtualService of the order without challenges", n, err)
	}
	for _, obj := range []client.Object{goneRoutes.Gateways[0], goneRoutes.VirtualServices[0], goneShared} {
		if err := cl.Get(ctx, client.ObjectKeyFromObject(obj), obj); !apierrors.IsNotFound(err) {
			t.Errorf("orphan %s still there: %v", obj.GetName(), err)
		}
	}
	for _, obj := range []client.Object{liveRoutes.Gateways[0], liveRoutes.VirtualServices[0], liveShared, users} {
		if err := cl.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Errorf("%s was deleted: %v", obj.GetName(), err)
		}
	}
}
