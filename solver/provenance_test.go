package solver

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/go-logr/logr"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// A hand-written ACMEChallenge gets no route and no answer from the token
// server, whatever it claims; one of a real request's order is routed and
// answered. A Secret a forged challenge lists in its status survives the
// challenge.
func TestForgedChallengesAreIgnored(t *testing.T) {
	ctx := context.Background()
	api, gatewayAddr := startIngress(ctx, t)
	cl := api.Client
	// The token server listens where the gateway would: every request
	// reaches it, so what it answers is what a route would get.
	startChallengeControllerWith(ctx, t, api, gatewayAddr, true, true)

	// Someone else's Secret where temporary HTTPS Secrets live.
	victim := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "shop-tls"}, Data: map[string][]byte{"tls.crt": []byte("x")}}
	mustCreateObject(t, cl, victim)

	forged := testChallenge()
	forged.Name, forged.Spec.Token, forged.Spec.Key = "forged", "tok-forged", "any text I like"
	forged.Finalizers = []string{v1alpha1.ChallengeRoutesFinalizer}
	mustCreateObject(t, cl, forged)
	forged.Status.Routes = []v1alpha1.ObjectReference{{APIVersion: "v1", Kind: "Secret", Namespace: "istio-system", Name: "shop-tls"}}
	if err := cl.Status().Update(ctx, forged); err != nil {
		t.Fatal(err)
	}

	// A challenge of a real, approved request's order, with its issuer's
	// settings (as the API server defaults them), for contrast.
	iss := &v1alpha1.ACMEClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "le"}, Spec: v1alpha1.ACMEIssuerSpec{
		Server: "https://ca.example/dir", PrivateKeySecretRef: v1alpha1.SecretKeySelector{Name: "le"}}}
	mustCreateObject(t, cl, iss)
	request := func(name string, approved bool) (*cmapi.CertificateRequest, *v1alpha1.ACMEOrder) {
		cr := &cmapi.CertificateRequest{
			ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: name},
			Spec:       cmapi.CertificateRequestSpec{Request: []byte("csr"), IssuerRef: cmmeta.IssuerReference{Group: "istio-acme.io", Kind: "ACMEClusterIssuer", Name: "le"}},
		}
		mustCreateObject(t, cl, cr)
		if approved {
			cr.Status.Conditions = []cmapi.CertificateRequestCondition{{Type: cmapi.CertificateRequestConditionApproved, Status: cmmeta.ConditionTrue, Reason: "test", Message: "approved"}}
			if err := cl.Status().Update(ctx, cr); err != nil {
				t.Fatal(err)
			}
		}
		order := &v1alpha1.ACMEOrder{
			ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: name, OwnerReferences: []metav1.OwnerReference{{
				APIVersion: cmapi.SchemeGroupVersion.String(), Kind: cmapi.CertificateRequestKind, Name: cr.Name, UID: cr.UID, Controller: ptr.To(true)}}},
			Spec: v1alpha1.ACMEOrderSpec{Request: cr.Name, IssuerRef: v1alpha1.IssuerReference{Kind: "ACMEClusterIssuer", Name: "le"}, DNSNames: []string{"shop.example.com"}},
		}
		mustCreateObject(t, cl, order)
		return cr, order
	}
	_, order := request("shop-1", true)
	ownedByOrder := func(ch *v1alpha1.ACMEChallenge, order *v1alpha1.ACMEOrder) {
		ch.OwnerReferences = []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: "ACMEOrder", Name: order.Name, UID: order.UID, Controller: ptr.To(true)}}
		ch.Spec.Order = order.Name
		ch.Spec.Solver = iss.Spec.Solver.Istio
	}
	ownedBy := func(ch *v1alpha1.ACMEChallenge) { ownedByOrder(ch, order) }
	real := testChallenge()
	ownedBy(real)
	mustCreateObject(t, cl, real)
	// Of the real order, but routed wherever its author likes: another
	// Service gets the token path.
	elsewhere := testChallenge()
	ownedBy(elsewhere)
	elsewhere.Name, elsewhere.Spec.Token, elsewhere.Spec.Key = "elsewhere", "tok-elsewhere", "tok-elsewhere.thumb"
	elsewhere.Spec.Solver.TokenService = v1alpha1.TokenServiceReference{Namespace: "team-b", Name: "admin", Port: 80}
	mustCreateObject(t, cl, elsewhere)
	// Of an order of a request nobody approved.
	_, unapprovedOrder := request("shop-2", false)
	unapproved := testChallenge()
	ownedByOrder(unapproved, unapprovedOrder)
	unapproved.Name, unapproved.Spec.Token, unapproved.Spec.Key = "unapproved", "tok-unapproved", "tok-unapproved.thumb"
	mustCreateObject(t, cl, unapproved)
	// Owned by the real order, for a name the order does not list.
	stray := testChallenge()
	stray.Name, stray.Spec.DNSName, stray.Spec.Token, stray.Spec.Key = "stray", "bank.example.com", "tok-stray", "tok-stray.thumb"
	ownedBy(stray)
	mustCreateObject(t, cl, stray)

	// Of the real order, but claiming to be judged for another namespace.
	claimed := testChallenge()
	claimed.Name, claimed.Spec.Token, claimed.Spec.Key, claimed.Spec.RequesterNamespace = "claimed", "tok-claimed", "tok-claimed.thumb", "team-b"
	ownedBy(claimed)
	mustCreateObject(t, cl, claimed)

	waitChallenge(t, cl, real, "the real challenge to be presented", func(got *v1alpha1.ACMEChallenge) bool { return got.Status.Presented })
	if code, body := getToken(gatewayAddr, "shop.example.com", real.Spec.Token); code != http.StatusOK || body != real.Spec.Key {
		t.Errorf("the real challenge's token: %d %q", code, body)
	}
	answeredWithoutAPIServer(t, api, gatewayAddr, real)
	for ch, why := range map[*v1alpha1.ACMEChallenge]string{
		forged: "it has no controller", stray: "does not list bank.example.com", claimed: "its spec.requesterNamespace team-b cannot be checked",
		elsewhere: "its spec.solver is not the spec.solver.istio of its issuer ACMEClusterIssuer le", unapproved: "CertificateRequest apps/shop-2 is not approved",
	} {
		waitChallenge(t, cl, ch, "the challenge "+ch.Name+" to be reported", func(got *v1alpha1.ACMEChallenge) bool {
			return strings.Contains(got.Status.Message, "is not answered: ") && strings.Contains(got.Status.Message, why)
		})
		if code, body := getToken(gatewayAddr, ch.Spec.DNSName, ch.Spec.Token); code != http.StatusNotFound {
			t.Errorf("the token server answered %s's token: %d %q", ch.Name, code, body)
		}
		var vss istionet.VirtualServiceList
		if err := cl.List(ctx, &vss, client.MatchingLabels{LabelChallenge: ChallengeKey(ch.Namespace, ch.Name)}); err != nil {
			t.Fatal(err)
		}
		var gws istionet.GatewayList
		if err := cl.List(ctx, &gws, client.MatchingLabels{LabelChallenge: ChallengeKey(ch.Namespace, ch.Name)}); err != nil {
			t.Fatal(err)
		}
		if len(vss.Items)+len(gws.Items) != 0 {
			t.Errorf("%s has %d VirtualServices and %d Gateways", ch.Name, len(vss.Items), len(gws.Items))
		}
	}

	// The forged challenge goes (its author set our finalizer): the Secret
	// it listed stays.
	if err := cl.Get(ctx, client.ObjectKeyFromObject(forged), forged); err != nil {
		t.Fatal(err)
	}
	if err := cl.Delete(ctx, forged); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the forged challenge to be gone", func() (bool, string) {
		err := cl.Get(ctx, client.ObjectKeyFromObject(forged), &v1alpha1.ACMEChallenge{})
		return err != nil, "still there"
	})
	time.Sleep(500 * time.Millisecond)
	if err := cl.Get(ctx, client.ObjectKeyFromObject(victim), &corev1.Secret{}); err != nil {
		t.Errorf("the Secret a forged challenge listed was deleted: %v", err)
	}
}

// answeredWithoutAPIServer asks for the challenge's token while the API
// server restarts, from the controller and from a standby replica that only
// answers tokens (it leads nothing, so no controller of it ever read an
// order) and is first asked once the API server is away: every answer is
// the key, including those given while no API server answered.
func answeredWithoutAPIServer(t *testing.T, api *testenv.APIServer, gatewayAddr string, ch *v1alpha1.ACMEChallenge) {
	t.Helper()
	ctx := context.Background()
	standby := testenv.NewManager(t, api, cache.Options{})
	tokenPath, err := NewTokenPathReader(ctx, standby.GetCache(), standby.GetScheme())
	if err != nil {
		t.Fatal(err)
	}
	standbyAddr := testenv.Addr(testenv.FreePort(t))
	tokens := &TokenServer{Addr: standbyAddr, Lookup: CacheLookup(tokenPath), Proven: (&Provenance{Client: tokenPath}).Proven, Log: logr.Discard()}
	if err := standby.Add(tokens); err != nil {
		t.Fatal(err)
	}
	testenv.RunManager(ctx, t, standby)
	waitFor(t, "the standby's token server to listen", func() (bool, string) {
		err := tokens.ReadyCheck(nil)
		return err == nil, fmt.Sprint(err)
	})

	restarted := make(chan error, 1)
	go func() {
		_, err := api.Restart(t)
		restarted <- err
	}()
	var withoutAPI int
	for {
		select {
		case err := <-restarted:
			if err != nil {
				t.Fatal(err)
			}
			if withoutAPI == 0 {
				t.Fatal("no token was asked for while the API server was away")
			}
			return
		default:
		}
		reqCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		apiErr := api.Client.Get(reqCtx, client.ObjectKey{Name: ch.Namespace}, &corev1.Namespace{})
		cancel()
		if apiErr != nil {
			withoutAPI++
		}
		ask := map[string]string{"the controller": gatewayAddr}
		if withoutAPI > 0 {
			// The standby's first answer comes while the API server
			// is away.
			ask["the standby"] = standbyAddr
		}
		for who, addr := range ask {
			if code, body := getToken(addr, ch.Spec.DNSName, ch.Spec.Token); code != http.StatusOK || body != ch.Spec.Key {
				t.Fatalf("%s's answer while the API server restarts (API: %v): %d %q", who, apiErr, code, body)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustCreateObject(t *testing.T, cl client.Client, obj client.Object) {
	t.Helper()
	if err := cl.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}
