package solver

import (
	"context"
	"slices"
	"testing"

	istionet "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

// TestChallengesOfOneOrderShareOneVirtualService: the challenges of one
// order whose routes bind the same Gateway are published in one
// VirtualService owned by both, each with its own route; a sibling whose
// route binds another Gateway goes alone; a member that leaves is
// taken out, and the VirtualService goes with the last one.
func TestChallengesOfOneOrderShareOneVirtualService(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	api, gatewayAddr := startIngress(ctx, t)
	cl := api.Client
	createHTTPGateway(ctx, t, cl, "shop", "apps/*.example.com")
	createHTTPGateway(ctx, t, cl, "other", "apps/c.example.net")
	startChallengeController(ctx, t, api, gatewayAddr, true)

	// The order lists its authorizations: the challenges know their
	// siblings by them.
	hosts := []string{"a.example.com", "b.example.com", "c.example.net"}
	order := &v1alpha1.ACMEOrder{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "shop-1"},
		Spec:       v1alpha1.ACMEOrderSpec{Request: "shop-1", IssuerRef: v1alpha1.IssuerReference{Kind: "ACMEClusterIssuer", Name: "public"}, DNSNames: hosts},
	}
	if err := cl.Create(ctx, order); err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		order.Status.Authorizations = append(order.Status.Authorizations, "https://ca.example/authz/"+h)
	}
	if err := cl.Status().Update(ctx, order); err != nil {
		t.Fatal(err)
	}
	var chs []*v1alpha1.ACMEChallenge
	for i, host := range hosts {
		ch := testChallenge()
		ch.Name = "shop-1-" + string(rune('a'+i))
		ch.Labels = map[string]string{v1alpha1.LabelOrder: ch.Spec.Order}
		ch.Spec.DNSName, ch.Spec.Token, ch.Spec.Key = host, "tok-"+ch.Name, "tok-"+ch.Name+".thumbprint"
		ch.Spec.AuthorizationURL = order.Status.Authorizations[i]
		if err := cl.Create(ctx, ch); err != nil {
			t.Fatal(err)
		}
		chs = append(chs, ch)
	}
	for _, ch := range chs {
		waitChallenge(t, cl, ch, "challenge "+ch.Name+" to be presented", func(got *v1alpha1.ACMEChallenge) bool { return got.Status.Presented })
		if err := cl.Get(ctx, client.ObjectKeyFromObject(ch), ch); err != nil {
			t.Fatal(err)
		}
	}

	var vss istionet.VirtualServiceList
	if err := cl.List(ctx, &vss, client.InNamespace("apps"), client.MatchingLabels{LabelManagedBy: ManagedByValue}); err != nil {
		t.Fatal(err)
	}
	var shared *istionet.VirtualService
	var alone []string
	for _, v := range vss.Items {
		if isShared(v) {
			shared = v
		} else {
			alone = append(alone, v.Name)
		}
	}
	if shared == nil {
		t.Fatalf("no shared VirtualService; ours: %v", alone)
	}
	if !slices.Equal(shared.Spec.Hosts, []string{"a.example.com", "b.example.com"}) || len(shared.Spec.Http) != 2 || !slices.Equal(shared.Spec.Gateways, []string{"istio-system/shop"}) {
		t.Errorf("shared VirtualService binds %v to %v with %d routes, want a and b's hosts on istio-system/shop, one route each", shared.Spec.Hosts, shared.Spec.Gateways, len(shared.Spec.Http))
	}
	var owners []string
	for _, o := range shared.OwnerReferences {
		owners = append(owners, o.Name)
	}
	if !slices.Equal(owners, []string{"shop-1-a", "shop-1-b"}) {
		t.Errorf("shared VirtualService owned by %v, want shop-1-a and shop-1-b", owners)
	}
	// c's host is served by another Gateway: its own VirtualService.
	if want := []string{objectName(chs[2], 0)}; !slices.Equal(alone, want) {
		t.Errorf("VirtualServices of single challenges %v, want only c's %v", alone, want)
	}
	for _, ch := range chs[:2] {
		if !slices.ContainsFunc(ch.Status.Routes, func(r v1alpha1.ObjectReference) bool { return r.Name == shared.Name }) {
			t.Errorf("challenge %s records routes %v, not the shared VirtualService", ch.Name, ch.Status.Routes)
		}
	}

	// Leaving: a's route goes, b's stays; then the VirtualService goes.
	// On another order's VirtualService built from the same parts: the
	// running controller would publish shop-1's again when it goes, as
	// for any route deleted under an open challenge.
	leaving := func(ch *v1alpha1.ACMEChallenge) *v1alpha1.ACMEChallenge {
		c := ch.DeepCopy()
		c.Spec.Order = "leave-1"
		return c
	}
	members := sharedMembers(shared)
	leave := BuildSharedVirtualService("apps", "leave-1", members)
	if err := cl.Create(ctx, leave); err != nil {
		t.Fatal(err)
	}
	r := &ChallengeReconciler{Client: cl}
	if err := r.leaveShared(ctx, leaving(chs[0])); err != nil {
		t.Fatal(err)
	}
	after := &istionet.VirtualService{}
	if err := cl.Get(ctx, client.ObjectKeyFromObject(leave), after); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(after.Spec.Hosts, []string{"b.example.com"}) || len(after.Spec.Http) != 1 || len(after.OwnerReferences) != 1 || after.OwnerReferences[0].Name != "shop-1-b" {
		t.Errorf("after a left: hosts %v, %d routes, owners %v; want b's alone", after.Spec.Hosts, len(after.Spec.Http), after.OwnerReferences)
	}
	if err := r.leaveShared(ctx, leaving(chs[1])); err != nil {
		t.Fatal(err)
	}
	if err := cl.Get(ctx, client.ObjectKeyFromObject(leave), after); !apierrors.IsNotFound(err) {
		t.Errorf("after its last member left, the shared VirtualService is still there: %v", err)
	}
}
