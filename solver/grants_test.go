package solver

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

func TestGrantsName(t *testing.T) {
	spec := v1alpha1.HostnameGrantSpec{DNSNames: []string{"shop.example.com"}, Zones: []string{"a.example.com"}}
	for name, want := range map[string]bool{
		"shop.example.com":     true,
		"SHOP.example.com.":    true,
		"www.shop.example.com": false,
		"a.example.com":        true,
		"x.a.example.com":      true,
		"y.x.a.example.com":    true,
		"evila.example.com":    false,
		"example.com":          false,
		"a.example.com.evil":   false,
	} {
		if got := grantsName(spec, name); got != want {
			t.Errorf("grantsName(%s) = %v, want %v", name, got, want)
		}
	}
}

func TestGrantsNamespace(t *testing.T) {
	labels := func(l map[string]string) func() (map[string]string, error) {
		return func() (map[string]string, error) { return l, nil }
	}
	tests := []struct {
		name   string
		spec   v1alpha1.HostnameGrantSpec
		labels map[string]string
		want   bool
	}{
		{name: "by name", spec: v1alpha1.HostnameGrantSpec{Namespaces: []string{"team-a"}}, want: true},
		{name: "another name", spec: v1alpha1.HostnameGrantSpec{Namespaces: []string{"team-b"}}},
		{name: "by label", spec: v1alpha1.HostnameGrantSpec{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}}, labels: map[string]string{"team": "a"}, want: true},
		{name: "another label", spec: v1alpha1.HostnameGrantSpec{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}}, labels: map[string]string{"team": "b"}},
		{name: "empty selector: every namespace", spec: v1alpha1.HostnameGrantSpec{NamespaceSelector: &metav1.LabelSelector{}}, want: true},
		{name: "no namespaces at all", spec: v1alpha1.HostnameGrantSpec{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := grantsNamespace(tt.spec, "team-a", labels(tt.labels))
			if err != nil || got != tt.want {
				t.Errorf("grantsNamespace = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
