package solver

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/dnsname"
)

// grantsName reports whether the grant covers the name: one of its exact
// names, or one of its zones or a name below it on a label boundary
// (zone a.example.com covers x.a.example.com, not evila.example.com).
func grantsName(spec v1alpha1.HostnameGrantSpec, name string) bool {
	name = dnsname.Canonical(name)
	if slices.Contains(spec.DNSNames, name) {
		return true
	}
	for _, z := range spec.Zones {
		z = strings.ToLower(strings.Trim(z, "."))
		if z != "" && (name == z || strings.HasSuffix(name, "."+z)) {
			return true
		}
	}
	return false
}

// grantsNamespace reports whether the grant is for the namespace, by name
// or by its labels; nsLabels is called only when a selector must be read.
func grantsNamespace(spec v1alpha1.HostnameGrantSpec, namespace string, nsLabels func() (map[string]string, error)) (bool, error) {
	if slices.Contains(spec.Namespaces, namespace) {
		return true, nil
	}
	if spec.NamespaceSelector == nil {
		return false, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(spec.NamespaceSelector)
	if err != nil {
		return false, fmt.Errorf("spec.namespaceSelector: %w", err)
	}
	if sel.Empty() {
		return true, nil
	}
	l, err := nsLabels()
	if err != nil {
		return false, err
	}
	return sel.Matches(labels.Set(l)), nil
}
