package kubeutil

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestCacheTransformDropsManagedFieldsThenTrims(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}, Data: map[string]string{"k": "v"}}
	out, err := CacheTransform(func(o client.Object) { o.(*corev1.ConfigMap).Data = nil })(cm)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.ConfigMap)
	if got.ManagedFields != nil || got.Data != nil || got.Name != "a" {
		t.Errorf("transformed to managedFields %v, data %v, name %q; want both dropped and the rest kept", got.ManagedFields, got.Data, got.Name)
	}
	if out, err := CacheTransform(nil)(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{ManagedFields: []metav1.ManagedFieldsEntry{{}}}}); err != nil || out.(*corev1.ConfigMap).ManagedFields != nil {
		t.Errorf("without a trim: %v, %v; want managedFields dropped", out, err)
	}
	tombstone := toolscache.DeletedFinalStateUnknown{Key: "ns/a"}
	if out, err := CacheTransform(nil)(tombstone); err != nil || out != tombstone {
		t.Errorf("a deletion tombstone became %v, %v; want it passed through", out, err)
	}
}
