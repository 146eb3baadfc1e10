package solver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestGatewayServiceAddresses(t *testing.T) {
	pod := func(ns string, l map[string]string) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gw", Labels: l}}
	}
	svc := func(ns, ip string, sel map[string]string, ports ...int32) corev1.Service {
		s := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "svc-" + ip}, Spec: corev1.ServiceSpec{ClusterIP: ip, Selector: sel}}
		for _, p := range ports {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Port: p})
		}
		return s
	}
	istioLabels := map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway", "pod-template-hash": "abc"}
	tests := []struct {
		name     string
		pods     []corev1.Pod
		services []corev1.Service
		want     []string
	}{
		{
			name:     "Istio's default ingress gateway Service",
			pods:     []corev1.Pod{pod("istio-system", istioLabels)},
			services: []corev1.Service{svc("istio-system", "10.0.0.10", map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway"}, 15021, 80, 443)},
			want:     []string{"10.0.0.10:80"},
		},
		{
			name:     "a Service without port 80 is no way in for the CA",
			pods:     []corev1.Pod{pod("istio-system", istioLabels)},
			services: []corev1.Service{svc("istio-system", "10.0.0.10", map[string]string{"istio": "ingressgateway"}, 443)},
		},
		{
			name:     "a Service in another namespace does not select the pods",
			pods:     []corev1.Pod{pod("istio-system", istioLabels)},
			services: []corev1.Service{svc("default", "10.0.0.11", map[string]string{"istio": "ingressgateway"}, 80)},
		},
		{
			name:     "a Service selecting other pods",
			pods:     []corev1.Pod{pod("istio-system", istioLabels)},
			services: []corev1.Service{svc("istio-system", "10.0.0.12", map[string]string{"app": "shop"}, 80)},
		},
		{
			name: "headless and selectorless Services are skipped; two gateway Services both count",
			pods: []corev1.Pod{pod("istio-system", istioLabels), pod("edge", map[string]string{"istio": "ingressgateway", "app": "edge"})},
			services: []corev1.Service{
				svc("istio-system", "None", map[string]string{"istio": "ingressgateway"}, 80),
				svc("istio-system", "10.0.0.13", nil, 80),
				svc("istio-system", "10.0.0.14", map[string]string{"istio": "ingressgateway"}, 80),
				svc("edge", "10.0.0.15", map[string]string{"app": "edge"}, 80),
			},
			want: []string{"10.0.0.14:80", "10.0.0.15:80"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := GatewayServiceAddresses(tt.pods, tt.services); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSelfCheck(t *testing.T) {
	const key = "tok.thumbprint"
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    []string // empty: the check passes
	}{
		{name: "the token comes back", handler: func(w http.ResponseWriter, r *http.Request) {
			if r.Host != "shop.example.com" || r.URL.Path != "/.well-known/acme-challenge/tok" {
				http.NotFound(w, r)
				return
			}
			_, _ = w.Write([]byte(key))
		}},
		{name: "no route", handler: http.NotFound, want: []string{"returned 404", "404 page not found", "shop.example.com"}},
		{name: "an https redirect", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://shop.example.com"+r.URL.Path, http.StatusMovedPermanently)
		}, want: []string{"https://shop.example.com/.well-known/acme-challenge/tok", ":443"}},
		{name: "a redirect to another host is not followed", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://elsewhere.example.org/", http.StatusFound)
		}, want: []string{"redirect to http://elsewhere.example.org/", "another host"}},
		{name: "a redirect to another port is not followed", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://shop.example.com:8080/x", http.StatusFound)
		}, want: []string{"only ports 80 and 443"}},
		{name: "the user's app answers", handler: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("<html>shop</html>"))
		}, want: []string{"200", "<html>shop</html>", "not this challenge's key authorization"}},
		{name: "one replica of three is wrong", handler: func() http.HandlerFunc {
			n := 0
			return func(w http.ResponseWriter, r *http.Request) {
				n++
				if n == 2 {
					http.NotFound(w, r)
					return
				}
				_, _ = w.Write([]byte(key))
			}
		}(), want: []string{"returned 404"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			addr := strings.TrimPrefix(srv.URL, "http://")
			err := (&IngressGateways{}).Check(context.Background(), addr, "shop.example.com", "tok", key)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("self-check failed: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("self-check passed")
			}
			for _, w := range append(tt.want, addr) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
		})
	}
	if err := (&IngressGateways{}).Check(context.Background(), "127.0.0.1:1", "shop.example.com", "tok", key); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Errorf("unreachable gateway: %v", err)
	}
}
