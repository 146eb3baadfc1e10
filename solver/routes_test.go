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
			r := BuildRoutes(ch, []WorkloadRoute{{Index: 0, OwnHTTP: true}}, false, nil)
			if len(r.Gateways) != 1 || len(r.Secrets) != 0 {
				t.Fatalf("built %d Gateways and %d Secrets, want one Gateway", len(r.Gateways), len(r.Secrets))
			}
			gw, vs := r.Gateways[0], r.VirtualServices[0]
			key := ChallengeKey(tt.namespace, "req-1-abc")

			// The Gateway goes to the gateway namespace, the VirtualService
			// to the requester's, as that namespace would write it.
			for m, ns := range map[metav1.Object]string{gw: tt.wantNS, vs: tt.namespace} {
				if m.GetNamespace() != ns || m.GetName() != "acme-"+key {
					t.Errorf("object at %s/%s, want %s/acme-%s", m.GetNamespace(), m.GetName(), ns, key)
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
			// The server admits only the requester's routes (never */).
			if srv.Port.Number != 80 || srv.Port.Protocol != "HTTP" || len(srv.Hosts) != 1 || srv.Hosts[0] != tt.namespace+"/"+tt.host || srv.Tls != nil {
				t.Errorf("server = %v, want plain HTTP on 80 for exactly %s/%s", srv, tt.namespace, tt.host)
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

func TestBuildRoutesBindsToVirtualHosts(t *testing.T) {
	ch := &v1alpha1.ACMEChallenge{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "req-1-abc"},
		Spec: v1alpha1.ACMEChallengeSpec{DNSName: "shop.example.com", Token: "tok", Solver: v1alpha1.IstioHTTP01Solver{
			Gateways: []v1alpha1.GatewayWorkloadSelector{{Selector: map[string]string{"istio": "ingressgateway"}}}, GatewayNamespace: "istio-system",
			TokenService: v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: "istio-acme-issuer", Port: 8089},
		}},
	}
	exact := Binding{Gateway: "istio-system/public", Host: "shop.example.com"}
	wild := Binding{Gateway: "edge/wild", Host: "*.example.com"}
	tests := []struct {
		name         string
		bindings     []Binding
		split        bool
		wantGateways [][]string
		wantHosts    [][]string
	}{
		{name: "the virtual host of the app's exact host", bindings: []Binding{exact},
			wantGateways: [][]string{{"istio-system/public"}}, wantHosts: [][]string{{"shop.example.com"}}},
		{name: "a wildcard virtual host, under its own name", bindings: []Binding{wild},
			wantGateways: [][]string{{"edge/wild"}}, wantHosts: [][]string{{"*.example.com"}}},
		{name: "several bindings in one VirtualService", bindings: []Binding{exact, wild, exact},
			wantGateways: [][]string{{"istio-system/public", "edge/wild"}}, wantHosts: [][]string{{"shop.example.com", "*.example.com"}}},
		{name: "split: one VirtualService per binding", bindings: []Binding{exact, wild}, split: true,
			wantGateways: [][]string{{"istio-system/public"}, {"edge/wild"}}, wantHosts: [][]string{{"shop.example.com"}, {"*.example.com"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := BuildRoutes(ch, []WorkloadRoute{{Index: 0, Bindings: tt.bindings}}, tt.split, nil)
			if len(r.Gateways) != 0 || len(r.Secrets) != 0 {
				t.Fatalf("built %d Gateways and %d Secrets for bindings only", len(r.Gateways), len(r.Secrets))
			}
			if len(r.VirtualServices) != len(tt.wantGateways) {
				t.Fatalf("built %d VirtualServices, want %d", len(r.VirtualServices), len(tt.wantGateways))
			}
			names := map[string]bool{}
			for i, vs := range r.VirtualServices {
				names[vs.Name] = true
				if !slices.Equal(vs.Spec.Gateways, tt.wantGateways[i]) || !slices.Equal(vs.Spec.Hosts, tt.wantHosts[i]) {
					t.Errorf("VirtualService %d: gateways %v hosts %v, want %v %v", i, vs.Spec.Gateways, vs.Spec.Hosts, tt.wantGateways[i], tt.wantHosts[i])
				}
				if !slices.Equal(vs.Spec.ExportTo, []string{"*"}) {
					t.Errorf("exportTo %v, want every namespace whatever the mesh default", vs.Spec.ExportTo)
				}
				m := vs.Spec.Http[0].Match[0]
				if m.Uri.GetExact() != "/.well-known/acme-challenge/tok" {
					t.Errorf("path match %v", m.Uri)
				}
				// The authority keeps the route to the challenged host in a
				// virtual host shared with other names.
				if got := m.GetAuthority().GetRegex(); got != `shop\.example\.com(:[0-9]+)?` {
					t.Errorf("authority match %q", got)
				}
				if vs.Namespace != "apps" || vs.Labels[LabelManagedBy] != ManagedByValue {
					t.Errorf("VirtualService %s/%s labels %v", vs.Namespace, vs.Name, vs.Labels)
				}
			}
			if len(names) != len(r.VirtualServices) {
				t.Errorf("VirtualService names repeat: %v", names)
			}
		})
	}
}

func TestBuildRoutesWithTemporaryHTTPSServer(t *testing.T) {
	ch := &v1alpha1.ACMEChallenge{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "req-1-abc"},
		Spec: v1alpha1.ACMEChallengeSpec{DNSName: "bare.example.com", Token: "tok", Solver: v1alpha1.IstioHTTP01Solver{
			Gateways: []v1alpha1.GatewayWorkloadSelector{{Selector: map[string]string{"istio": "ingressgateway"}}}, GatewayNamespace: "istio-system",
			TokenService: v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: "istio-acme-issuer", Port: 8089},
		}},
	}
	redirecting := Binding{Gateway: "apps/bare", Host: "bare.example.com"}
	temp := map[int]*TemporaryHTTPS{0: {Namespace: "istio-ingress", CertPEM: []byte("cert"), KeyPEM: []byte("key")}}
	r := BuildRoutes(ch, []WorkloadRoute{{Index: 0, Bindings: []Binding{redirecting}, OwnHTTPS: true}}, false, temp)
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
	if len(srv) != 1 || srv[0].Port.Number != 443 || srv[0].Port.Protocol != "HTTPS" || srv[0].Tls.GetCredentialName() != sec.Name || !slices.Equal(srv[0].Hosts, []string{"apps/bare.example.com"}) {
		t.Fatalf("temporary server %v, want HTTPS on 443 for exactly the host with our Secret", srv)
	}
	vs := r.VirtualServices[0]
	if !slices.Equal(vs.Spec.Gateways, []string{"apps/bare", "istio-system/" + gw.Name}) {
		t.Errorf("VirtualService gateways %v, want the redirecting Gateway and the temporary one", vs.Spec.Gateways)
	}
	plan := &Plan{Workloads: []WorkloadRoute{{Index: 0, Via: describeVia(WorkloadRoute{Bindings: []Binding{redirecting}, OwnHTTPS: true}, "bare.example.com")}}}
	if d := plan.Describe(ch, nil); !strings.Contains(d, "temporary HTTPS server") || !strings.Contains(d, "apps/bare") {
		t.Errorf("description %q does not name the Gateway and the temporary server", d)
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
		r := BuildRoutes(ch, []WorkloadRoute{{Index: 0, OwnHTTP: true}, {Index: 1, OwnHTTP: true}, {Index: 2, OwnHTTP: true}}, false, nil)
		var names []string
		for i, gw := range r.Gateways {
			names = append(names, gw.Namespace+"/"+gw.Name)
			if want := ch.Spec.Solver.Gateways[i].Selector; !maps.Equal(gw.Spec.Selector, want) {
				t.Errorf("Gateway %s selects %v, want %v", gw.Name, gw.Spec.Selector, want)
			}
		}
		want := []string{"istio-system/acme-" + key, "istio-system/acme-" + key + "-1", "istio-system/acme-" + key + "-2"}
		if !slices.Equal(names, want) || !slices.Equal(r.VirtualServices[0].Spec.Gateways, want) {
			t.Errorf("Gateways %v, VirtualService bound to %v, want %v", names, r.VirtualServices[0].Spec.Gateways, want)
		}
		if !slices.Equal(r.VirtualServices[0].Spec.Hosts, []string{"shop.example.com"}) {
			t.Errorf("hosts %v", r.VirtualServices[0].Spec.Hosts)
		}
	})

	t.Run("temporary HTTPS servers on two workloads have their own Secrets", func(t *testing.T) {
		redirecting := Binding{Gateway: "apps/web", Host: "shop.example.com"}
		temp := &TemporaryHTTPS{Namespace: "istio-system", CertPEM: []byte("c"), KeyPEM: []byte("k")}
		r := BuildRoutes(ch, []WorkloadRoute{{Index: 0, Bindings: []Binding{redirecting}, OwnHTTPS: true}, {Index: 1, Bindings: []Binding{redirecting}, OwnHTTPS: true}},
			false, map[int]*TemporaryHTTPS{0: temp, 1: temp})
		if len(r.Secrets) != 2 || r.Secrets[0].Name == r.Secrets[1].Name {
			t.Fatalf("Secrets %v, want two distinct", r.Secrets)
		}
		if r.Secrets[1].Name != TemporaryHTTPSSecretName(ch, 1) || r.Gateways[1].Spec.Servers[0].Tls.GetCredentialName() != r.Secrets[1].Name {
			t.Errorf("the second workload's server uses %q, want its own Secret %q", r.Gateways[1].Spec.Servers[0].Tls.GetCredentialName(), r.Secrets[1].Name)
		}
		if want := []string{"apps/web", "istio-system/acme-" + key, "istio-system/acme-" + key + "-1"}; !slices.Equal(r.VirtualServices[0].Spec.Gateways, want) {
			t.Errorf("VirtualService bound to %v, want %v", r.VirtualServices[0].Spec.Gateways, want)
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
