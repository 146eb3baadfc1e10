package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the API group and version of every kind in this package.
	GroupVersion = schema.GroupVersion{Group: "istio-acme.io", Version: "v1alpha1"}

	// kinds collects the package's kinds; each kind's file registers its own.
	kinds = &kindList{}

	// AddToScheme adds this package's kinds to a runtime.Scheme.
	AddToScheme = kinds.addToScheme
)

// kindList is the package's kinds, with only apimachinery behind it, so the
// API package stays light to import.
type kindList struct{ objects []runtime.Object }

func (k *kindList) register(objs ...runtime.Object) { k.objects = append(k.objects, objs...) }

func (k *kindList) addToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, k.objects...)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
