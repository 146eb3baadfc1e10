package solver

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

func TestBuildRoutes(t *testing.T) {
	defaultSolver := v1alpha1.IstioHTTP01Solver{
		GatewaySelector:  map[string]string{"istio": "ingressgateway"},
		GatewayNamespace: "istio-system",
		TokenService:     v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: "istio-acme-issuer", Port: 8089},
	}
	customSolver := v1alpha1.IstioHTTP01Solver{
		GatewaySelector:  map[string]string{"app": "edge", "istio.io/rev": "canary"},
		GatewayNamespace: "edge",
		TokenService:     v1alpha1.TokenServiceReference{Name: "acme", Namespace: "certs", Port: 9000},
	}
	tests := []struct {
		name         string
		namespace    string
		solver       v1alpha1.IstioHTTP01Solver
		host, token  string
		wantNS       string
		wantSelector map[string]string
		wantDest     string
		wantPort     uint32
	}{
		{
			name: "default solver", namespace: "apps", solver: defaultSolver,
			host: "shop.example.com", token: "tok-A_1",
			wantNS: "istio-system", wantSelector: map[string]string{"istio": "ingressgateway"},
			wantDest: "istio-acme-issuer.istio-acme-issuer.svc.cluster.local", wantPort: 8089,
		},
		{
			name: "custom gateway workload and token service", namespace: "team-b", solver: customSolver,
			host: "api.example.org", token: "xyz",
			wantNS: "edge", wantSelector: map[string]string{"app": "edge", "istio.io/rev": "canary"},
			wantDest: "acme.certs.svc.cluster.local", wantPort: 9000,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := &v1alpha1.ACMEChallenge{
				ObjectMeta: metav1.ObjectMeta{Namespace: tt.namespace, Name: "req-1-abc"},
				Spec:       v1alpha1.ACMEChallengeSpec{DNSName: tt.host, Token: tt.token, Solver: tt.solver},
			}
			r := BuildRoutes(ch)
			gw, vs := r.Gateway, r.VirtualService
			key := ChallengeKey(tt.namespace, "req-1-abc")

			for _, m := range []metav1.Object{gw, vs} {
				if m.GetNamespace() != tt.wantNS || m.GetName() != "acme-"+key {
					t.Errorf("object at %s/%s, want %s/acme-%s", m.GetNamespace(), m.GetName(), tt.wantNS, key)
				}
				if m.GetLabels()[LabelManagedBy] != ManagedByValue || m.GetLabels()[LabelChallenge] != key {
					t.Errorf("labels %v lack ours", m.GetLabels())
				}
				if m.GetAnnotations()[AnnotationChallenge] != tt.namespace+"/req-1-abc" {
					t.Errorf("annotation %v does not name the challenge", m.GetAnnotations())
				}
			}

			if len(gw.Spec.Selector) != len(tt.wantSelector) {
				t.Errorf("selector %v, want %v", gw.Spec.Selector, tt.wantSelector)
			}
			for k, v := range tt.wantSelector {
				if gw.Spec.Selector[k] != v {
					t.Errorf("selector %v, want %v", gw.Spec.Selector, tt.wantSelector)
				}
			}
			if len(gw.Spec.Servers) != 1 {
				t.Fatalf("gateway has %d servers, want 1", len(gw.Spec.Servers))
			}
			srv := gw.Spec.Servers[0]
			if srv.Port.Number != 80 || srv.Port.Protocol != "HTTP" || len(srv.Hosts) != 1 || srv.Hosts[0] != tt.host || srv.Tls != nil {
				t.Errorf("server = %v, want plain HTTP on 80 for exactly %s", srv, tt.host)
			}

			if len(vs.Spec.Hosts) != 1 || vs.Spec.Hosts[0] != tt.host {
				t.Errorf("virtual service hosts %v, want [%s]", vs.Spec.Hosts, tt.host)
			}
			if len(vs.Spec.Gateways) != 1 || vs.Spec.Gateways[0] != tt.wantNS+"/acme-"+key {
				t.Errorf("virtual service gateways %v, want our gateway only (never mesh)", vs.Spec.Gateways)
			}
			if len(vs.Spec.Http) != 1 || len(vs.Spec.Http[0].Match) != 1 || len(vs.Spec.Http[0].Route) != 1 {
				t.Fatalf("want exactly one route with one match and one destination, got %v", vs.Spec.Http)
			}
			if got := vs.Spec.Http[0].Match[0].Uri.GetExact(); got != "/.well-known/acme-challenge/"+tt.token {
				t.Errorf("exact path %q, want the token path", got)
			}
			dest := vs.Spec.Http[0].Route[0].Destination
			if dest.Host != tt.wantDest || dest.Port.GetNumber() != tt.wantPort {
				t.Errorf("destination %s:%d, want %s:%d", dest.Host, dest.Port.GetNumber(), tt.wantDest, tt.wantPort)
			}
		})
	}
}

func TestChallengeKeyIsStableAndDistinct(t *testing.T) {
	a, b := ChallengeKey("ns", "name"), ChallengeKey("ns", "name")
	if a != b {
		t.Fatalf("ChallengeKey is not deterministic: %s vs %s", a, b)
	}
	if ChallengeKey("ns", "name2") == a || ChallengeKey("ns2", "name") == a {
		t.Fatal("different challenges share a key")
	}
	if len("acme-"+a) > 63 {
		t.Fatalf("name %q too long for a label value", "acme-"+a)
	}
}
