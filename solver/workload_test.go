package solver

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

func TestNewGatewayWorkload(t *testing.T) {
	pod := func(ns string, l map[string]string, ports ...corev1.ContainerPort) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gw", Labels: l},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "istio-proxy", Ports: ports}}}}
	}
	type port struct {
		port   int32
		target intstr.IntOrString
	}
	svc := func(ns, ip string, sel map[string]string, ports ...port) corev1.Service {
		s := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "svc-" + ip}, Spec: corev1.ServiceSpec{ClusterIP: ip, Selector: sel}}
		for _, p := range ports {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Port: p.port, TargetPort: p.target})
		}
		return s
	}
	istioLabels := map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway", "pod-template-hash": "abc"}
	istioSelector := map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway"}
	// Istio's default install: 80 -> 8080, 443 -> 8443, status 15021.
	defaultPorts := []port{{15021, intstr.FromInt32(15021)}, {80, intstr.FromInt32(8080)}, {443, intstr.FromInt32(8443)}}
	tests := []struct {
		name        string
		pods        []corev1.Pod
		services    []corev1.Service
		addresses   []string
		http, https []uint32
		listen      map[uint32][]uint32 // Gateway server port -> pod ports
	}{
		{
			name:      "Istio's default ingress gateway Service",
			pods:      []corev1.Pod{pod("istio-system", istioLabels)},
			services:  []corev1.Service{svc("istio-system", "10.0.0.10", istioSelector, defaultPorts...)},
			addresses: []string{"10.0.0.10:80"},
			http:      []uint32{8080}, https: []uint32{8443},
			// A server on 80 binds to 8080; one on 8080 (the container
			// port, written as is) too; 8081 stays 8081.
			listen: map[uint32][]uint32{80: {8080}, 8080: {8080}, 443: {8443}, 8081: {8081}},
		},
		{
			name: "named target ports are looked up in the pods",
			pods: []corev1.Pod{pod("istio-system", istioLabels, corev1.ContainerPort{Name: "http2", ContainerPort: 8080}, corev1.ContainerPort{Name: "https", ContainerPort: 8443})},
			services: []corev1.Service{svc("istio-system", "10.0.0.10", istioSelector,
				port{80, intstr.FromString("http2")}, port{443, intstr.FromString("https")})},
			addresses: []string{"10.0.0.10:80"},
			http:      []uint32{8080}, https: []uint32{8443},
		},
		{
			name:      "no target port: the port itself",
			pods:      []corev1.Pod{pod("istio-system", istioLabels)},
			services:  []corev1.Service{svc("istio-system", "10.0.0.10", istioSelector, port{port: 80}, port{port: 443})},
			addresses: []string{"10.0.0.10:80"},
			http:      []uint32{80}, https: []uint32{443},
			listen: map[uint32][]uint32{80: {80}, 443: {443}},
		},
		{
			name:     "a Service without port 80 is no way in for the CA",
			pods:     []corev1.Pod{pod("istio-system", istioLabels)},
			services: []corev1.Service{svc("istio-system", "10.0.0.10", istioSelector, port{443, intstr.FromInt32(8443)})},
			https:    []uint32{8443},
		},
		{
			name:     "a Service in another namespace does not select the pods",
			pods:     []corev1.Pod{pod("istio-system", istioLabels)},
			services: []corev1.Service{svc("default", "10.0.0.11", map[string]string{"istio": "ingressgateway"}, port{port: 80})},
			listen:   map[uint32][]uint32{80: {80}},
		},
		{
			name:     "a Service selecting other pods",
			pods:     []corev1.Pod{pod("istio-system", istioLabels)},
			services: []corev1.Service{svc("istio-system", "10.0.0.12", map[string]string{"app": "shop"}, port{80, intstr.FromInt32(9090)})},
		},
		{
			name: "headless and selectorless Services are skipped; two gateway Services both count",
			pods: []corev1.Pod{pod("istio-system", istioLabels), pod("edge", map[string]string{"istio": "ingressgateway", "app": "edge"})},
			services: []corev1.Service{
				svc("istio-system", "None", map[string]string{"istio": "ingressgateway"}, port{port: 80}),
				svc("istio-system", "10.0.0.13", nil, port{80, intstr.FromInt32(9999)}),
				svc("istio-system", "10.0.0.14", map[string]string{"istio": "ingressgateway"}, port{80, intstr.FromInt32(8080)}),
				svc("edge", "10.0.0.15", map[string]string{"app": "edge"}, port{port: 80}),
			},
			addresses: []string{"10.0.0.14:80", "10.0.0.15:80"},
			http:      []uint32{80, 8080},
			listen:    map[uint32][]uint32{80: {80, 8080}},
		},
		{
			// istiod orders the pod's Services by creation time, then
			// hostname, and binds a server's port to the first one's
			// target port only.
			name: "two Services in front of the same pods map port 80 to different pod ports: the older binds",
			pods: []corev1.Pod{pod("istio-system", istioLabels)},
			services: []corev1.Service{
				func() corev1.Service {
					s := svc("istio-system", "10.0.0.20", istioSelector, port{80, intstr.FromInt32(8080)})
					s.CreationTimestamp = metav1.Unix(200, 0)
					return s
				}(),
				func() corev1.Service {
					s := svc("istio-system", "10.0.0.21", istioSelector, port{80, intstr.FromInt32(9080)})
					s.CreationTimestamp = metav1.Unix(100, 0)
					return s
				}(),
			},
			addresses: []string{"10.0.0.20:80", "10.0.0.21:80"},
			http:      []uint32{8080, 9080},
			listen:    map[uint32][]uint32{80: {9080}},
		},
		{
			name: "a LoadBalancer Service and an internal one: the CA arrives through the LoadBalancer's ports only",
			pods: []corev1.Pod{pod("istio-system", istioLabels)},
			services: []corev1.Service{
				func() corev1.Service {
					s := svc("istio-system", "10.0.0.30", istioSelector, defaultPorts...)
					s.Spec.Type = corev1.ServiceTypeLoadBalancer
					return s
				}(),
				svc("istio-system", "10.0.0.31", istioSelector, port{80, intstr.FromInt32(9080)}),
			},
			addresses: []string{"10.0.0.30:80"},
			http:      []uint32{8080}, https: []uint32{8443},
			listen: map[uint32][]uint32{80: {8080}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewGatewayWorkload(v1alpha1.GatewayWorkloadSelector{Selector: map[string]string{"istio": "ingressgateway"}}, tt.pods, tt.services)
			sorted := func(p []uint32) []uint32 { return slices.Sorted(slices.Values(p)) }
			if !slices.Equal(w.Addresses, tt.addresses) {
				t.Errorf("addresses %v, want %v", w.Addresses, tt.addresses)
			}
			if !slices.Equal(sorted(w.HTTPPorts), tt.http) || !slices.Equal(sorted(w.HTTPSPorts), tt.https) {
				t.Errorf("pod ports behind 80 %v and 443 %v, want %v and %v", w.HTTPPorts, w.HTTPSPorts, tt.http, tt.https)
			}
			for number, want := range tt.listen {
				if got := sorted(w.ListenPorts(number)); !slices.Equal(got, want) {
					t.Errorf("a Gateway server on port %d binds to %v, want %v", number, got, want)
				}
			}
		})
	}
}

func TestPortTranslationCanBeDisabled(t *testing.T) {
	pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "gw", Labels: map[string]string{"istio": "ingressgateway"}}}
	svc := corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "gw", Labels: map[string]string{disablePortTranslationLabel: "true"}},
		Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.10", Selector: map[string]string{"istio": "ingressgateway"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	w := NewGatewayWorkload(v1alpha1.GatewayWorkloadSelector{}, []corev1.Pod{pod}, []corev1.Service{svc})
	if got := w.ListenPorts(80); !slices.Equal(got, []uint32{80}) {
		t.Errorf("with translation disabled a server on port 80 binds to %v, want [80]", got)
	}
	if !slices.Equal(w.HTTPPorts, []uint32{8080}) {
		t.Errorf("the CA's requests still arrive on %v, want [8080]", w.HTTPPorts)
	}
}
