package solver

import (
	"maps"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
)

func TestBuildRoutes(t *testing.T) {
	defaultSolver := v1alpha1.IstioHTTP01Solver{
		Gateways:         []v1alpha1.GatewayWorkloadSelector{{Selector: map[string]string{"istio": "ingressgateway"}}},
		GatewayNamespace: "istio-system",
		TokenService:     v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: "istio-acme-issuer", Port: 8089},
	}
	customSolver := v1alpha1.IstioHTTP01Solver{
		Gateways:         []v1alpha1.GatewayWorkloadSelector{{Selector: map[string]string{"app": "edge", "istio.io/rev": "canary"}}},
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
			r := BuildRoutes(ch, []RouteTarget{{Index: 0}})
			if len(r.Gateways) != 1 || len(r.Secrets) != 0 {
				t.Fatalf("built %d Gateways and %d Secrets, want one Gateway", len(r.Gateways), len(r.Secrets))
			}
			gw, vs := r.Gateways[0], r.VirtualService
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

func TestBuildRoutesAttachesToServingGateways(t *testing.T) {
	ch := &v1alpha1.ACMEChallenge{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "req-1-abc"},
		Spec: v1alpha1.ACMEChallengeSpec{DNSName: "shop.example.com", Token: "tok", Solver: v1alpha1.IstioHTTP01Solver{
			Gateways: []v1alpha1.GatewayWorkloadSelector{{Selector: map[string]string{"istio": "ingressgateway"}}}, GatewayNamespace: "istio-system",
			TokenService: v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: "istio-acme-issuer", Port: 8089},
		}},
	}
	exact := ServingServer{Gateway: gateway("apps", "shop", nil), Host: "shop.example.com"}
	wild := ServingServer{Gateway: gateway("edge", "wild", nil), Host: "*.example.com"}
	wild443 := ServingServer{Gateway: gateway("edge", "wild", nil), Host: "*.example.com"}
	tests := []struct {
		name          string
		attach        []ServingServer
		wantGateways  []string
		wantHosts     []string
		wantAuthority string
	}{
		{name: "exact host: no authority match needed", attach: []ServingServer{exact},
			wantGateways: []string{"apps/shop"}, wantHosts: []string{"shop.example.com"}},
		{name: "wildcard host: under the same string, with an exact authority", attach: []ServingServer{wild},
			wantGateways: []string{"edge/wild"}, wantHosts: []string{"*.example.com"}, wantAuthority: "shop.example.com"},
		{name: "several servers and Gateways, each named once", attach: []ServingServer{exact, wild, wild443},
			wantGateways: []string{"apps/shop", "edge/wild"}, wantHosts: []string{"shop.example.com", "*.example.com"}, wantAuthority: "shop.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := BuildRoutes(ch, []RouteTarget{{Index: 0, Attach: tt.attach}})
			if len(r.Gateways) != 0 {
				t.Fatalf("a Gateway %s was built although the host is served", r.Gateways[0].Name)
			}
			vs := r.VirtualService
			if !slices.Equal(vs.Spec.Gateways, tt.wantGateways) || !slices.Equal(vs.Spec.Hosts, tt.wantHosts) {
				t.Errorf("gateways %v hosts %v, want %v %v", vs.Spec.Gateways, vs.Spec.Hosts, tt.wantGateways, tt.wantHosts)
			}
			m := vs.Spec.Http[0].Match[0]
			if m.Uri.GetExact() != "/.well-known/acme-challenge/tok" {
				t.Errorf("path match %v", m.Uri)
			}
			if got := m.GetAuthority().GetExact(); got != tt.wantAuthority {
				t.Errorf("authority match %q, want %q", got, tt.wantAuthority)
			}
			if vs.Namespace != "istio-system" || vs.Labels[LabelManagedBy] != ManagedByValue {
				t.Errorf("VirtualService %s/%s labels %v", vs.Namespace, vs.Name, vs.Labels)
			}
			if d := r.Describe(ch); !strings.Contains(d, "existing Gateway(s) "+strings.Join(tt.wantGateways, ", ")) {
				t.Errorf("description %q does not name the Gateways", d)
			}
		})
	}
}

func TestBuildRoutesWithTemporaryHTTPSServer(t *testing.T) {
	ch := &v1alpha1.ACMEChallenge{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "req-1-abc"},
		Spec: v1alpha1.ACMEChallengeSpec{DNSName: "bare.example.com", Token: "tok", Solver: v1alpha1.IstioHTTP01Solver{
			Gateways: []v1alpha1.GatewayWorkloadSelector{{Selector: map[string]string{"istio": "ingressgateway"}}}, GatewayNamespace: "istio-system", TemporaryHTTPSServer: true,
			TokenService: v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: "istio-acme-issuer", Port: 8089},
		}},
	}
	redirecting := ServingServer{Gateway: gateway("apps", "bare", nil), Host: "bare.example.com"}
	r := BuildRoutes(ch, []RouteTarget{{Index: 0, Attach: []ServingServer{redirecting}, Temp: &TemporaryHTTPS{Namespace: "istio-ingress", CertPEM: []byte("cert"), KeyPEM: []byte("key")}}})
	if len(r.Secrets) != 1 || len(r.Gateways) != 1 {
		t.Fatalf("built %d Secrets and %d Gateways, want one of each", len(r.Secrets), len(r.Gateways))
	}
	sec, gw := r.Secrets[0], r.Gateways[0]
	if sec.Namespace != "istio-ingress" || sec.Type != "kubernetes.io/tls" || string(sec.Data["tls.crt"]) != "cert" {
		t.Fatalf("secret %+v, want a TLS Secret in the gateway pods' namespace", sec)
	}
	if sec.Labels[LabelManagedBy] != ManagedByValue {
		t.Error("the Secret is not labelled as ours")
	}
	srv := gw.Spec.Servers
	if len(srv) != 1 || srv[0].Port.Number != 443 || srv[0].Port.Protocol != "HTTPS" || srv[0].Tls.GetCredentialName() != sec.Name || !slices.Equal(srv[0].Hosts, []string{"bare.example.com"}) {
		t.Fatalf("temporary server %v, want HTTPS on 443 for exactly the host with our Secret", srv)
	}
	vs := r.VirtualService
	if !slices.Equal(vs.Spec.Gateways, []string{"apps/bare", "istio-system/" + gw.Name}) {
		t.Errorf("VirtualService gateways %v, want the redirecting Gateway and the temporary one", vs.Spec.Gateways)
	}
	if !strings.Contains(r.Describe(ch), "temporary HTTPS server") {
		t.Errorf("description %q does not mention the temporary server", r.Describe(ch))
	}
}

func TestBuildRoutesOnSeveralWorkloads(t *testing.T) {
	ch := &v1alpha1.ACMEChallenge{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "req-1-abc"},
		Spec: v1alpha1.ACMEChallengeSpec{DNSName: "shop.example.com", Token: "tok", Solver: v1alpha1.IstioHTTP01Solver{
			Gateways: []v1alpha1.GatewayWorkloadSelector{
				{Selector: map[string]string{"istio": "ingressgateway"}},
				{Selector: map[string]string{"istio": "ingressgateway", "istio.io/rev": "canary"}},
				{Selector: map[string]string{"app": "internal-gateway"}, Namespace: "internal"},
			},
			GatewayNamespace: "istio-system",
			TokenService:     v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: "istio-acme-issuer", Port: 8089},
		}},
	}
	key := ChallengeKey("apps", "req-1-abc")

	t.Run("nothing serves the host: a Gateway of our own on each workload", func(t *testing.T) {
		r := BuildRoutes(ch, []RouteTarget{{Index: 0}, {Index: 1}, {Index: 2}})
		var names []string
		for i, gw := range r.Gateways {
			names = append(names, gw.Namespace+"/"+gw.Name)
			if want := ch.Spec.Solver.Gateways[i].Selector; !maps.Equal(gw.Spec.Selector, want) {
				t.Errorf("Gateway %s selects %v, want %v", gw.Name, gw.Spec.Selector, want)
			}
		}
		want := []string{"istio-system/acme-" + key, "istio-system/acme-" + key + "-1", "istio-system/acme-" + key + "-2"}
		if !slices.Equal(names, want) || !slices.Equal(r.VirtualService.Spec.Gateways, want) {
			t.Errorf("Gateways %v, VirtualService bound to %v, want %v", names, r.VirtualService.Spec.Gateways, want)
		}
		if !slices.Equal(r.VirtualService.Spec.Hosts, []string{"shop.example.com"}) {
			t.Errorf("hosts %v", r.VirtualService.Spec.Hosts)
		}
	})

	t.Run("a user's Gateway on the second workload only", func(t *testing.T) {
		internal := ServingServer{Gateway: gateway("internal", "shop", nil), Host: "*.example.com"}
		r := BuildRoutes(ch, []RouteTarget{{Index: 2, Attach: []ServingServer{internal}}})
		if len(r.Gateways) != 0 {
			t.Fatalf("built Gateway %s although the host is served", r.Gateways[0].Name)
		}
		if vs := r.VirtualService; !slices.Equal(vs.Spec.Gateways, []string{"internal/shop"}) || vs.Name != "acme-"+key {
			t.Errorf("VirtualService %s bound to %v, want acme-%s on internal/shop", vs.Name, vs.Spec.Gateways, key)
		}
	})

	t.Run("temporary HTTPS servers on two workloads have their own Secrets", func(t *testing.T) {
		redirecting := ServingServer{Gateway: gateway("apps", "web", nil), Host: "shop.example.com"}
		temp := &TemporaryHTTPS{Namespace: "istio-system", CertPEM: []byte("c"), KeyPEM: []byte("k")}
		r := BuildRoutes(ch, []RouteTarget{{Index: 0, Attach: []ServingServer{redirecting}, Temp: temp}, {Index: 1, Attach: []ServingServer{redirecting}, Temp: temp}})
		if len(r.Secrets) != 2 || r.Secrets[0].Name == r.Secrets[1].Name {
			t.Fatalf("Secrets %v, want two distinct", r.Secrets)
		}
		if r.Secrets[1].Name != TemporaryHTTPSSecretName(ch, 1) || r.Gateways[1].Spec.Servers[0].Tls.GetCredentialName() != r.Secrets[1].Name {
			t.Errorf("the second workload's server uses %q, want its own Secret %q", r.Gateways[1].Spec.Servers[0].Tls.GetCredentialName(), r.Secrets[1].Name)
		}
		if want := []string{"apps/web", "istio-system/acme-" + key, "istio-system/acme-" + key + "-1"}; !slices.Equal(r.VirtualService.Spec.Gateways, want) {
			t.Errorf("VirtualService bound to %v, want %v", r.VirtualService.Spec.Gateways, want)
		}
	})
}

func TestWithRecordedSecrets(t *testing.T) {
	secret := v1alpha1.ObjectReference{APIVersion: "v1", Kind: "Secret", Namespace: "istio-system", Name: "acme-x-tls"}
	gw := v1alpha1.ObjectReference{Kind: "Gateway", Namespace: "istio-system", Name: "acme-x"}
	vs := v1alpha1.ObjectReference{Kind: "VirtualService", Namespace: "istio-system", Name: "acme-x"}
	got := withRecordedSecrets([]v1alpha1.ObjectReference{secret, gw, vs}, []v1alpha1.ObjectReference{vs})
	if !slices.Equal(got, []v1alpha1.ObjectReference{vs, secret}) {
		t.Errorf("got %v, want the new routes and the recorded Secret", got)
	}
	if got := withRecordedSecrets([]v1alpha1.ObjectReference{secret}, []v1alpha1.ObjectReference{secret, vs}); len(got) != 2 {
		t.Errorf("the Secret is listed twice: %v", got)
	}
}
