package kubeutil_test

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/kubeutil"
	"github.com/istio-acme/istio-acme-issuer/internal/testenv"
)

// TestUpdateStatus runs against a real API server: an unchanged status is
// not written, and a stale copy is re-read and the change re-applied.
func TestUpdateStatus(t *testing.T) {
	api := testenv.StartAPIServer(t)
	ctx := context.Background()
	api.CreateNamespaces(t, "apps")
	order := &v1alpha1.ACMEOrder{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "req-1"},
		Spec:       v1alpha1.ACMEOrderSpec{Request: "req-1", IssuerRef: v1alpha1.IssuerReference{Kind: "ACMEClusterIssuer", Name: "x"}, DNSNames: []string{"a.example.com"}},
	}
	if err := api.Client.Create(ctx, order); err != nil {
		t.Fatal(err)
	}
	stale := order.DeepCopy()

	if err := kubeutil.UpdateStatus(ctx, api.Client, order, func(o *v1alpha1.ACMEOrder) { o.Status.URL = "https://ca/order/1" }); err != nil {
		t.Fatal(err)
	}
	rv := order.ResourceVersion
	if err := kubeutil.UpdateStatus(ctx, api.Client, order, func(o *v1alpha1.ACMEOrder) { o.Status.URL = "https://ca/order/1" }); err != nil {
		t.Fatal(err)
	}
	if order.ResourceVersion != rv {
		t.Errorf("an unchanged status was written (resourceVersion %s -> %s)", rv, order.ResourceVersion)
	}

	// The stale copy predates the URL; its change must not erase it.
	if err := kubeutil.UpdateStatus(ctx, api.Client, stale, func(o *v1alpha1.ACMEOrder) { o.Status.State = v1alpha1.OrderPending }); err != nil {
		t.Fatalf("conflict not retried: %v", err)
	}
	got := &v1alpha1.ACMEOrder{}
	if err := api.Client.Get(ctx, client.ObjectKeyFromObject(order), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.URL != "https://ca/order/1" || got.Status.State != v1alpha1.OrderPending {
		t.Errorf("status %+v, want both the URL and the state", got.Status)
	}
}
