package solver

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/istio-acme/istio-acme-issuer/api/v1alpha1"
	"github.com/istio-acme/istio-acme-issuer/internal/istiomodel"
	"github.com/istio-acme/istio-acme-issuer/internal/istiotest"
)

// The objects the cases are written in.
var (
	ingressLabels  = istiotest.IngressLabels
	epoch          = istiotest.Epoch
	gateway        = istiotest.Gateway
	server         = istiotest.Server
	virtualService = istiotest.VirtualService
	route          = istiotest.Route
	tlsPassthrough = istiotest.TLSPassthrough
	prefix         = istiotest.Prefix
)

// defaultWorkload is Istio's default ingress gateway: Service ports 80 ->
// 8080 and 443 -> 8443, pods in istio-system.
func defaultWorkload() *GatewayWorkload {
	return &GatewayWorkload{
		Workload: istiomodel.Workload{
			Namespace:    "istio-system",
			PodLabels:    []map[string]string{{"istio": "ingressgateway", "app": "istio-ingressgateway"}},
			ServicePorts: map[uint32][]uint32{80: {8080}, 443: {8443}},
		},
		Target:     v1alpha1.GatewayWorkloadSelector{Selector: ingressLabels},
		HTTPPorts:  []uint32{8080},
		HTTPSPorts: []uint32{8443},
	}
}

func TestPlanRoutes(t *testing.T) {
	redirect := &istioapi.ServerTLSSettings{HttpsRedirect: true}
	simple := func(cred string) *istioapi.ServerTLSSettings {
		return &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: cred}
	}
	public := "istio-system/public"
	existing := map[string]bool{"istio-system/wild-tls": true, "istio-system/shop-tls": true}
	tests := []struct {
		name     string
		host     string
		gateways []*istionet.Gateway
		vss      []*istionet.VirtualService
		noTemp   bool
		// want: the bindings, OwnHTTP, OwnHTTPS of the one routed workload.
		want        []Binding
		ownHTTP     bool
		ownHTTPS    bool
		wantRefusal string
		// wantMissing is the refusal's MissingCredential, "ns/name".
		wantMissing string
	}{
		{
			name:     "shared wildcard Gateway, per-app VirtualService: joins the app's exact virtual host",
			host:     "shop.example.com",
			gateways: []*istionet.Gateway{gateway("istio-system", "public", ingressLabels, server(80, "HTTP", nil, "*.example.com"))},
			vss:      []*istionet.VirtualService{virtualService("apps", "shop", 0, []string{public}, []string{"shop.example.com"}, route("app"))},
			want:     []Binding{{Gateway: public, Host: "shop.example.com"}},
		},
		{
			name:     "Gateway for * with per-team wildcard VirtualServices: joins the team's wildcard virtual host",
			host:     "shop.example.com",
			gateways: []*istionet.Gateway{gateway("istio-system", "public", ingressLabels, server(80, "HTTP", nil, "*"))},
			vss: []*istionet.VirtualService{
				virtualService("team-a", "a", 0, []string{public}, []string{"*.example.com"}, route("a")),
				virtualService("team-b", "b", 1, []string{public}, []string{"*.example.org"}, route("b")),
			},
			want: []Binding{{Gateway: public, Host: "*.example.com"}},
		},
		{
			name:     "a server covers the host but no VirtualService: a virtual host for exactly the host",
			host:     "new.example.com",
			gateways: []*istionet.Gateway{gateway("istio-system", "public", ingressLabels, server(80, "HTTP", nil, "*.example.com"))},
			want:     []Binding{{Gateway: public, Host: "new.example.com"}},
		},
		{
			name:     "nothing serves the host: a Gateway of our own",
			host:     "new.example.net",
			gateways: []*istionet.Gateway{gateway("istio-system", "public", ingressLabels, server(80, "HTTP", nil, "*.example.com"))},
			ownHTTP:  true,
		},
		{
			name:     "HTTPS only on 443: port 80 needs a server of our own",
			host:     "shop.example.com",
			gateways: []*istionet.Gateway{gateway("istio-system", "tls", ingressLabels, server(443, "HTTPS", simple("shop-tls"), "shop.example.com"))},
			vss:      []*istionet.VirtualService{virtualService("apps", "shop", 0, []string{"istio-system/tls"}, []string{"shop.example.com"}, route("app"))},
			ownHTTP:  true,
		},
		{
			name:     "an older prefix route on the app's virtual host shadows the token",
			host:     "shop.example.com",
			gateways: []*istionet.Gateway{gateway("istio-system", "public", ingressLabels, server(80, "HTTP", nil, "*.example.com"))},
			vss: []*istionet.VirtualService{virtualService("apps", "shop", 0, []string{public}, []string{"shop.example.com"},
				route("well-known", prefix("/.well-known")), route("app"))},
			wantRefusal: "route well-known of VirtualService apps/shop (prefix /.well-known)",
		},
		{
			name:     "a shadowing route on another virtual host does not count",
			host:     "shop.example.com",
			gateways: []*istionet.Gateway{gateway("istio-system", "public", ingressLabels, server(80, "HTTP", nil, "*.example.com"))},
			vss: []*istionet.VirtualService{
				virtualService("apps", "shop", 0, []string{public}, []string{"shop.example.com"}, route("app")),
				virtualService("apps", "rest", 1, []string{public}, []string{"*.example.com"}, route("well-known", prefix("/.well-known"))),
			},
			want: []Binding{{Gateway: public, Host: "shop.example.com"}},
		},
		{
			// Envoy rejects a listener whose servers take a name alike and
			// keeps serving an earlier one, which may have had the second
			// server alone: its virtual hosts count as much as the first's.
			name: "two HTTPS servers take every name alike: the challenge would change the second one's answer",
			host: "shop.example.com",
			gateways: []*istionet.Gateway{
				gateway("istio-system", "a", ingressLabels, server(443, "HTTPS", simple("wild-tls"), "apps/*", "*.example.org")),
				gateway("istio-system", "b", ingressLabels, server(80, "HTTP", nil, "*", "*/shop.example.com"), server(443, "HTTPS", simple("shop-tls"), "*")),
			},
			vss:         []*istionet.VirtualService{virtualService("apps", "all", 0, []string{"istio-system/b"}, []string{"*"}, route("app"))},
			wantRefusal: "one of 2 HTTPS servers of",
		},
		{
			name: "redirect to an HTTPS server whose credential exists: both virtual hosts",
			host: "shop.example.com",
			gateways: []*istionet.Gateway{
				gateway("istio-system", "public", ingressLabels, server(80, "HTTP", redirect, "*.example.com"), server(443, "HTTPS", simple("wild-tls"), "*.example.com")),
			},
			vss:  []*istionet.VirtualService{virtualService("apps", "shop", 0, []string{public}, []string{"shop.example.com"}, route("app"))},
			want: []Binding{{Gateway: public, Host: "shop.example.com"}},
		},
		{
			name: "first issuance behind a redirect: the wildcard HTTPS server's Secret does not exist, a temporary server takes exactly the host",
			host: "shop.example.com",
			gateways: []*istionet.Gateway{
				gateway("istio-system", "public", ingressLabels, server(80, "HTTP", redirect, "*.example.com"), server(443, "HTTPS", simple("missing-tls"), "*.example.com")),
			},
			vss: []*istionet.VirtualService{virtualService("apps", "shop", 0, []string{public}, []string{"shop.example.com"}, route("app"))},
			// Port 80 redirects before any route: only the temporary server
			// carries the challenge route.
			ownHTTPS: true,
		},
		{
			name: "first issuance behind a redirect to an exact-host server: explained, with issue-temporary-certificate",
			host: "shop.example.com",
			gateways: []*istionet.Gateway{
				gateway("istio-system", "shop", ingressLabels, server(80, "HTTP", redirect, "shop.example.com"), server(443, "HTTPS", simple("missing-tls"), "shop.example.com")),
			},
			vss:         []*istionet.VirtualService{virtualService("apps", "shop", 0, []string{"istio-system/shop"}, []string{"shop.example.com"}, route("app"))},
			wantRefusal: "cert-manager.io/issue-temporary-certificate",
			wantMissing: "istio-system/missing-tls",
		},
		{
			name: "first issuance behind a redirect to an exact-host mTLS server: no certificate in its Secret would let the CA in",
			host: "shop.example.com",
			gateways: []*istionet.Gateway{
				gateway("istio-system", "shop", ingressLabels, server(80, "HTTP", redirect, "shop.example.com"),
					server(443, "HTTPS", &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_MUTUAL, CredentialName: "missing-tls"}, "shop.example.com")),
			},
			vss:         []*istionet.VirtualService{virtualService("apps", "shop", 0, []string{"istio-system/shop"}, []string{"shop.example.com"}, route("app"))},
			wantRefusal: "already claims exactly shop.example.com",
		},
		{
			name: "redirect to a wildcard mTLS server: a temporary server would take the host from clients with certificates",
			host: "shop.example.com",
			gateways: []*istionet.Gateway{
				gateway("istio-system", "public", ingressLabels, server(80, "HTTP", redirect, "*.example.com"),
					server(443, "HTTPS", &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_MUTUAL, CredentialName: "wild-tls"}, "*.example.com")),
			},
			vss:         []*istionet.VirtualService{virtualService("apps", "shop", 0, []string{public}, []string{"shop.example.com"}, route("app"))},
			wantRefusal: "would take it from the clients that present one",
		},
		{
			name: "redirect to a wildcard passthrough server: a temporary server would take the host from its TLS backend",
			host: "shop.example.com",
			gateways: []*istionet.Gateway{
				gateway("istio-system", "public", ingressLabels, server(80, "HTTP", redirect, "*.example.com"),
					server(443, "HTTPS", &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_PASSTHROUGH}, "*.example.com")),
			},
			vss: []*istionet.VirtualService{
				virtualService("apps", "shop", 0, []string{public}, []string{"shop.example.com"}, route("app")),
				tlsPassthrough(virtualService("apps", "backend", 0, []string{public}, []string{"*.example.com"}), "*.example.com"),
			},
			wantRefusal: "passes TLS through instead of terminating it",
		},
		{
			name: "redirect to a passthrough server no tls route uses: istiod builds nothing for it, a temporary server takes the host",
			host: "shop.example.com",
			gateways: []*istionet.Gateway{
				gateway("istio-system", "public", ingressLabels, server(80, "HTTP", redirect, "*.example.com"),
					server(443, "HTTPS", &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_PASSTHROUGH}, "*.example.com")),
			},
			vss:      []*istionet.VirtualService{virtualService("apps", "shop", 0, []string{public}, []string{"shop.example.com"}, route("app"))},
			ownHTTPS: true,
		},
		{
			name: "the binding also lands on an HTTPS server without its Secret: nothing there can change",
			host: "shop.example.com",
			gateways: []*istionet.Gateway{
				gateway("istio-system", "public", ingressLabels, server(80, "HTTP", nil, "*.example.com"), server(443, "HTTPS", simple("missing-tls"), "*")),
			},
			vss:  []*istionet.VirtualService{virtualService("istio-system", "all", 0, []string{public}, []string{"*"}, route("app"))},
			want: []Binding{{Gateway: public, Host: "*.example.com"}},
		},
		{
			name:        "redirect without any HTTPS server, temporary servers turned off",
			host:        "shop.example.com",
			gateways:    []*istionet.Gateway{gateway("istio-system", "public", ingressLabels, server(80, "HTTP", redirect, "*.example.com"))},
			noTemp:      true,
			wantRefusal: "temporaryHTTPSServer: false",
		},
		{
			name:        "a server that admits only another namespace",
			host:        "shop.example.com",
			gateways:    []*istionet.Gateway{gateway("istio-system", "public", ingressLabels, server(80, "HTTP", nil, "team-b/*.example.com"))},
			vss:         []*istionet.VirtualService{virtualService("team-b", "shop", 0, []string{public}, []string{"shop.example.com"}, route("app"))},
			wantRefusal: "do not admit VirtualServices of namespace apps, which the request comes from",
		},
		{
			// The challenge route is written in the requester's namespace,
			// so a server restricted to it admits the route.
			name:     "a server that admits only the requester's namespace",
			host:     "shop.example.com",
			gateways: []*istionet.Gateway{gateway("istio-system", "public", ingressLabels, server(80, "HTTP", nil, "apps/*.example.com"))},
			vss:      []*istionet.VirtualService{virtualService("apps", "shop", 0, []string{public}, []string{"shop.example.com"}, route("app"))},
			want:     []Binding{{Gateway: public, Host: "shop.example.com"}},
		},
		{
			name:     "a team's own Gateway with ./host",
			host:     "app.example.com",
			gateways: []*istionet.Gateway{gateway("apps", "app", ingressLabels, server(80, "HTTP", nil, "./app.example.com"))},
			vss:      []*istionet.VirtualService{virtualService("apps", "app", 0, []string{"app"}, []string{"app.example.com"}, route("app"))},
			want:     []Binding{{Gateway: "apps/app", Host: "app.example.com"}},
		},
		{
			name:     "a Gateway of another workload is not ours to use",
			host:     "shop.example.com",
			gateways: []*istionet.Gateway{gateway("istio-system", "egress", map[string]string{"istio": "egressgateway"}, server(80, "HTTP", nil, "*.example.com"))},
			ownHTTP:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := &v1alpha1.ACMEChallenge{
				ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "req-1"},
				Spec: v1alpha1.ACMEChallengeSpec{DNSName: tt.host, Token: "tok", Solver: v1alpha1.IstioHTTP01Solver{
					Gateways:         []v1alpha1.GatewayWorkloadSelector{{Selector: ingressLabels}},
					GatewayNamespace: "istio-system",
					TokenService:     v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: "istio-acme-issuer", Port: 8089},
				}},
			}
			if tt.noTemp {
				ch.Spec.Solver.TemporaryHTTPSServer = ptr.To(false)
			}
			plan, refusal := PlanRoutes(PlanInput{
				Challenge: ch, Gateways: tt.gateways, VirtualServices: tt.vss, Workloads: []*GatewayWorkload{defaultWorkload()},
				Credential: func(ns, name string) CredentialState {
					if existing[ns+"/"+name] {
						return CredentialState{Usable: true}
					}
					return CredentialState{Missing: true, Problem: "Secret " + ns + "/" + name + " does not exist yet"}
				},
				Now: epoch.Add(time.Hour),
			})
			if tt.wantRefusal != "" {
				if refusal == nil {
					t.Fatalf("planned %+v, want a refusal mentioning %q", plan, tt.wantRefusal)
				}
				if !strings.Contains(refusal.Message, tt.wantRefusal) {
					t.Fatalf("refusal %q does not mention %q", refusal.Message, tt.wantRefusal)
				}
				missing := ""
				if m := refusal.MissingCredential; m != nil {
					missing = m.Namespace + "/" + m.Name
				}
				if missing != tt.wantMissing {
					t.Fatalf("refusal's missing credential %q, want %q", missing, tt.wantMissing)
				}
				return
			}
			if refusal != nil {
				t.Fatalf("refused: %s", refusal.Message)
			}
			if len(plan.Workloads) != 1 {
				t.Fatalf("routed on %d workloads", len(plan.Workloads))
			}
			w := plan.Workloads[0]
			var httpBindings []Binding
			for _, b := range w.Bindings {
				if !slices.Contains(httpBindings, b) {
					httpBindings = append(httpBindings, b)
				}
			}
			if !slices.Equal(httpBindings, tt.want) || w.OwnHTTP != tt.ownHTTP || w.OwnHTTPS != tt.ownHTTPS {
				t.Errorf("planned bindings %v own HTTP %v own HTTPS %v, want %v %v %v", w.Bindings, w.OwnHTTP, w.OwnHTTPS, tt.want, tt.ownHTTP, tt.ownHTTPS)
			}
		})
	}
}

// Planning a host reads the credential Secret only of HTTPS servers whose
// answers the route could change: on a gateway crowded with other teams'
// HTTPS Gateways, reading each of their Secrets for every plan cost over a
// thousand API requests per Certificate.
func TestPlanReadsOnlyCredentialsItNeeds(t *testing.T) {
	gws := []*istionet.Gateway{gateway("istio-system", "shared", ingressLabels, server(80, "HTTP", nil, "*.example.com"))}
	for i := range 50 {
		hosts := []string{"*.team" + strconv.Itoa(i) + ".example.net"}
		gws = append(gws, gateway("team"+strconv.Itoa(i), "edge", ingressLabels,
			server(443, "HTTPS", &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: "team" + strconv.Itoa(i) + "-cert"}, hosts...),
			server(80, "HTTP", &istioapi.ServerTLSSettings{HttpsRedirect: true}, hosts...)))
	}
	ch := &v1alpha1.ACMEChallenge{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "req-1"},
		Spec: v1alpha1.ACMEChallengeSpec{DNSName: "shop.example.com", Token: "tok", Solver: v1alpha1.IstioHTTP01Solver{
			Gateways:         []v1alpha1.GatewayWorkloadSelector{{Selector: ingressLabels}},
			GatewayNamespace: "istio-system",
			TokenService:     v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: "istio-acme-issuer", Port: 8089},
		}},
	}
	var read []string
	_, refusal := PlanRoutes(PlanInput{
		Challenge: ch, Gateways: gws, Workloads: []*GatewayWorkload{defaultWorkload()},
		Credential: func(ns, name string) CredentialState {
			read = append(read, ns+"/"+name)
			return CredentialState{Usable: true}
		},
		Now: epoch.Add(time.Hour),
	})
	if refusal != nil {
		t.Fatalf("refused: %s", refusal.Message)
	}
	if len(read) != 0 {
		t.Errorf("read %d credentials (%v), want none: no HTTPS server serves shop.example.com", len(read), read)
	}
}

// Plans made at once from one cache equal plans made each from scratch
// (run with -race: models are shared between plans and must not change).
func TestPlansSharingModelsEqualPlansFromScratch(t *testing.T) {
	gws := []*istionet.Gateway{gateway("istio-system", "shared", ingressLabels, server(80, "HTTP", nil, "*.example.com"))}
	for i := range 30 {
		hosts := []string{fmt.Sprintf("*.team%d.example.com", i)}
		gws = append(gws, gateway(fmt.Sprintf("team%d", i), "edge", ingressLabels,
			server(443, "HTTPS", &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: "cert"}, hosts...),
			server(80, "HTTP", &istioapi.ServerTLSSettings{HttpsRedirect: true}, hosts...)))
	}
	var vss []*istionet.VirtualService
	for i := range 60 {
		vss = append(vss, virtualService(fmt.Sprintf("team%d", i%30), fmt.Sprintf("v%d", i), i, []string{fmt.Sprintf("team%d/edge", i%30)},
			[]string{fmt.Sprintf("app%d.team%d.example.com", i, i%30)}, route("app", prefix("/"))))
	}
	hosts := []string{"shop.example.com", "app3.team3.example.com", "new.team7.example.com", "x.example.org"}
	input := func(host string, models *istiomodel.Cache) PlanInput {
		return PlanInput{
			Challenge: &v1alpha1.ACMEChallenge{
				ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "req"},
				Spec: v1alpha1.ACMEChallengeSpec{DNSName: host, Token: "tok", Solver: v1alpha1.IstioHTTP01Solver{
					Gateways:         []v1alpha1.GatewayWorkloadSelector{{Selector: ingressLabels}},
					GatewayNamespace: "istio-system",
					TokenService:     v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: "istio-acme-issuer", Port: 8089},
				}},
			},
			Gateways: gws, VirtualServices: vss, Workloads: []*GatewayWorkload{defaultWorkload()},
			Credential: func(ns, name string) CredentialState { return CredentialState{Usable: true} },
			Now:        epoch.Add(time.Hour),
			Models:     models,
		}
	}
	type outcome struct {
		Plan    *Plan
		Refusal *Refusal
	}
	want := map[string]outcome{}
	for _, h := range hosts {
		p, r := PlanRoutes(input(h, nil))
		want[h] = outcome{p, r}
	}
	shared := &istiomodel.Cache{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range 4 {
		for _, h := range hosts {
			wg.Go(func() {
				p, r := PlanRoutes(input(h, shared))
				if got := (outcome{p, r}); !reflect.DeepEqual(got, want[h]) {
					mu.Lock()
					defer mu.Unlock()
					t.Errorf("%s: planned with shared models %+v, from scratch %+v", h, got, want[h])
				}
			})
		}
	}
	wg.Wait()
}

// A second Service maps port 80 of the same pods elsewhere and is older:
// istiod binds port-80 servers there, where the CA does not arrive, and
// the refusal says why.
func TestPlanRoutesExplainsPort80BoundElsewhere(t *testing.T) {
	w := defaultWorkload()
	w.ServicePorts[80] = []uint32{9080}
	ch := &v1alpha1.ACMEChallenge{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "req-1"},
		Spec: v1alpha1.ACMEChallengeSpec{DNSName: "shop.example.com", Token: "tok", Solver: v1alpha1.IstioHTTP01Solver{
			Gateways:         []v1alpha1.GatewayWorkloadSelector{{Selector: ingressLabels}},
			GatewayNamespace: "istio-system",
			TokenService:     v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: "istio-acme-issuer", Port: 8089},
		}},
	}
	_, refusal := PlanRoutes(PlanInput{Challenge: ch, Workloads: []*GatewayWorkload{w}, Now: epoch.Add(time.Hour)})
	if refusal == nil {
		t.Fatal("planned a route the CA cannot reach")
	}
	for _, want := range []string{"on pod port 8080", "to pod port 9080 only", "give the Services the same target port for port 80"} {
		if !strings.Contains(refusal.Message, want) {
			t.Errorf("refusal %q does not say %q", refusal.Message, want)
		}
	}
}

// With istiod scoping Gateways to their namespace, a Gateway of our own in
// another namespace than the pods' would bind nothing: the refusal names
// the setting and the namespace to set; in the pods' namespace it is
// planned.
func TestPlanRoutesOwnGatewayScopedToNamespace(t *testing.T) {
	w := defaultWorkload()
	w.Namespace = "istio-ingress"
	w.Mesh.ScopeGatewayToNamespace = true
	ch := &v1alpha1.ACMEChallenge{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "req-1"},
		Spec: v1alpha1.ACMEChallengeSpec{DNSName: "new.example.com", Token: "tok", Solver: v1alpha1.IstioHTTP01Solver{
			Gateways:         []v1alpha1.GatewayWorkloadSelector{{Selector: ingressLabels}},
			GatewayNamespace: "istio-system",
			TokenService:     v1alpha1.TokenServiceReference{Name: "istio-acme-issuer", Namespace: "istio-acme-issuer", Port: 8089},
		}},
	}
	// A Gateway elsewhere that lists the host binds nothing either.
	gws := []*istionet.Gateway{gateway("istio-system", "public", ingressLabels, server(80, "HTTP", nil, "*.example.com"))}
	_, refusal := PlanRoutes(PlanInput{Challenge: ch, Gateways: gws, Workloads: []*GatewayWorkload{w}, Now: epoch.Add(time.Hour)})
	if refusal == nil {
		t.Fatal("planned a Gateway of our own that istiod would not give the pods")
	}
	for _, want := range []string{"PILOT_SCOPE_GATEWAY_TO_NAMESPACE", "gatewayNamespace", "is istio-system: set it to istio-ingress"} {
		if !strings.Contains(refusal.Message, want) {
			t.Errorf("refusal %q does not say %q", refusal.Message, want)
		}
	}
	ch.Spec.Solver.GatewayNamespace = "istio-ingress"
	plan, refusal := PlanRoutes(PlanInput{Challenge: ch, Gateways: gws, Workloads: []*GatewayWorkload{w}, Now: epoch.Add(time.Hour)})
	if refusal != nil {
		t.Fatalf("refused with our Gateway in the pods' namespace: %s", refusal.Message)
	}
	if len(plan.Workloads) != 1 || !plan.Workloads[0].OwnHTTP || len(plan.Workloads[0].Bindings) != 0 {
		t.Errorf("plan %+v, want a Gateway of our own and no binding into istio-system/public", plan.Workloads)
	}
}
