package solver

import (
	"reflect"
	"testing"

	istionet "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestTrimKeepsCertManagerAnnotations(t *testing.T) {
	gw := &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
		"kubectl.kubernetes.io/last-applied-configuration": "{...}",
		"cert-manager.io/cluster-issuer":                   "letsencrypt",
	}, ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}}
	var transform func(any) (any, error)
	for obj, o := range IstioCacheOptions() {
		if _, ok := obj.(*istionet.Gateway); ok {
			transform = o.Transform
		}
	}
	out, err := transform(gw)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*istionet.Gateway)
	if want := map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"}; !reflect.DeepEqual(got.Annotations, want) || got.ManagedFields != nil {
		t.Errorf("trimmed annotations %v, managedFields %v; want only %v", got.Annotations, got.ManagedFields, want)
	}
	plain := &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"a": "b"}}}
	if out, _ := transform(plain); out.(*istionet.Gateway).Annotations != nil {
		t.Errorf("a Gateway without cert-manager annotations keeps %v", out.(*istionet.Gateway).Annotations)
	}
}
