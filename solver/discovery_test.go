package solver

import (
	"strings"
	"testing"

	istioapi "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func gateway(ns, name string, selector map[string]string, servers ...*istioapi.Server) *istionet.Gateway {
	gw := &istionet.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	gw.Spec.Selector = selector
	gw.Spec.Servers = servers
	return gw
}

func server(port uint32, protocol string, tls *istioapi.ServerTLSSettings, hosts ...string) *istioapi.Server {
	return &istioapi.Server{Port: &istioapi.Port{Number: port, Name: "p", Protocol: protocol}, Hosts: hosts, Tls: tls}
}

func TestServersForHost(t *testing.T) {
	ingress := map[string]string{"istio": "ingressgateway"}
	// Istio's default ingress gateway: Service ports 80 -> 8080, 443 -> 8443.
	w := &GatewayWorkload{
		PodLabels:    []map[string]string{{"istio": "ingressgateway", "app": "istio-ingressgateway"}},
		HTTPPorts:    []uint32{8080},
		HTTPSPorts:   []uint32{8443},
		servicePorts: map[uint32][]uint32{80: {8080}, 443: {8443}, 15021: {15021}},
	}
	redirect := &istioapi.ServerTLSSettings{HttpsRedirect: true}
	simple := &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: "c"}
	tests := []struct {
		name      string
		gateways  []*istionet.Gateway
		host      string
		vsNS      string
		want      []string // gateway/host pairs
		redirects []bool
	}{
		{name: "exact host on port 80", gateways: []*istionet.Gateway{gateway("apps", "shop", ingress, server(80, "HTTP", nil, "shop.example.com"))},
			host: "shop.example.com", vsNS: "istio-system", want: []string{"apps/shop shop.example.com"}, redirects: []bool{false}},
		{name: "wildcard covers a subdomain, as written", gateways: []*istionet.Gateway{gateway("apps", "wild", ingress, server(80, "HTTP", nil, "*.example.com"))},
			host: "shop.example.com", vsNS: "istio-system", want: []string{"apps/wild *.example.com"}},
		{name: "wildcard covers deeper names too", gateways: []*istionet.Gateway{gateway("apps", "wild", ingress, server(80, "HTTP", nil, "*.example.com"))},
			host: "a.b.example.com", vsNS: "istio-system", want: []string{"apps/wild *.example.com"}},
		{name: "wildcard does not cover its apex", gateways: []*istionet.Gateway{gateway("apps", "wild", ingress, server(80, "HTTP", nil, "*.example.com"))},
			host: "example.com", vsNS: "istio-system"},
		{name: "star covers everything", gateways: []*istionet.Gateway{gateway("apps", "all", ingress, server(80, "HTTP", nil, "*"))},
			host: "x.org", vsNS: "istio-system", want: []string{"apps/all *"}},
		{name: "namespace-qualified host allows only that namespace", gateways: []*istionet.Gateway{gateway("apps", "shop", ingress, server(80, "HTTP", nil, "apps/shop.example.com"))},
			host: "shop.example.com", vsNS: "istio-system"},
		{name: "namespace-qualified host in our namespace", gateways: []*istionet.Gateway{gateway("apps", "shop", ingress, server(80, "HTTP", nil, "istio-system/shop.example.com"))},
			host: "shop.example.com", vsNS: "istio-system", want: []string{"apps/shop shop.example.com"}},
		{name: "dot means the Gateway's namespace", gateways: []*istionet.Gateway{
			gateway("apps", "a", ingress, server(80, "HTTP", nil, "./shop.example.com")),
			gateway("istio-system", "b", ingress, server(80, "HTTP", nil, "./shop.example.com")),
		}, host: "shop.example.com", vsNS: "istio-system", want: []string{"istio-system/b shop.example.com"}},
		{name: "star namespace", gateways: []*istionet.Gateway{gateway("apps", "shop", ingress, server(80, "HTTP", nil, "*/shop.example.com"))},
			host: "shop.example.com", vsNS: "istio-system", want: []string{"apps/shop shop.example.com"}},
		{name: "another gateway workload is ignored", gateways: []*istionet.Gateway{gateway("apps", "shop", map[string]string{"istio": "egressgateway"}, server(80, "HTTP", nil, "shop.example.com"))},
			host: "shop.example.com", vsNS: "istio-system"},
		{name: "httpsRedirect and HTTPS servers are both reported", gateways: []*istionet.Gateway{gateway("apps", "shop", ingress,
			server(80, "HTTP", redirect, "shop.example.com"), server(443, "HTTPS", simple, "shop.example.com"))},
			host: "SHOP.example.com.", vsNS: "istio-system", want: []string{"apps/shop shop.example.com", "apps/shop shop.example.com"}, redirects: []bool{true, false}},
		{name: "a server on the container port behind the Service's port 80 serves too", gateways: []*istionet.Gateway{gateway("apps", "shop", ingress,
			server(8080, "HTTP", nil, "shop.example.com"), server(8443, "HTTPS", simple, "shop.example.com"))},
			host: "shop.example.com", vsNS: "istio-system", want: []string{"apps/shop shop.example.com", "apps/shop shop.example.com"}},
		{name: "servers on ports the CA does not reach are ignored", gateways: []*istionet.Gateway{gateway("apps", "shop", ingress,
			server(8081, "HTTP", nil, "shop.example.com"), server(15021, "HTTP", nil, "shop.example.com"), server(9443, "HTTPS", simple, "shop.example.com"))},
			host: "shop.example.com", vsNS: "istio-system"},
		{name: "an HTTP server on the HTTPS port is not where the CA arrives", gateways: []*istionet.Gateway{gateway("apps", "shop", ingress, server(443, "HTTP", nil, "shop.example.com"))},
			host: "shop.example.com", vsNS: "istio-system"},
		{name: "TCP and TLS passthrough servers are not HTTP routes", gateways: []*istionet.Gateway{gateway("apps", "db", ingress,
			server(5432, "TCP", nil, "shop.example.com"), server(443, "TLS", nil, "shop.example.com"))},
			host: "shop.example.com", vsNS: "istio-system"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ServersForHost(tt.gateways, w, tt.host, tt.vsNS)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d servers, want %v", len(got), tt.want)
			}
			for i, s := range got {
				if g := s.Gateway.Namespace + "/" + s.Gateway.Name + " " + s.Host; g != tt.want[i] {
					t.Errorf("server %d = %q, want %q", i, g, tt.want[i])
				}
				if tt.redirects != nil && s.HTTPSRedirect() != tt.redirects[i] {
					t.Errorf("server %d redirect = %v, want %v", i, s.HTTPSRedirect(), tt.redirects[i])
				}
			}
		})
	}
}

func TestRedirectWithoutHTTPS(t *testing.T) {
	redirect := &istioapi.ServerTLSSettings{HttpsRedirect: true}
	simple := &istioapi.ServerTLSSettings{Mode: istioapi.ServerTLSSettings_SIMPLE, CredentialName: "c"}
	gw := gateway("apps", "web", nil)
	plain := ServingServer{Gateway: gw, Server: server(80, "HTTP", nil, "a.example.com"), Host: "a.example.com"}
	redirecting := ServingServer{Gateway: gw, Server: server(80, "HTTP", redirect, "a.example.com"), Host: "a.example.com"}
	https := ServingServer{Gateway: gateway("apps", "tls", nil), Server: server(443, "HTTPS", simple, "a.example.com"), Host: "a.example.com"}
	if got := RedirectWithoutHTTPS([]ServingServer{plain}, "a.example.com"); got != "" {
		t.Errorf("plain HTTP: %q", got)
	}
	if got := RedirectWithoutHTTPS([]ServingServer{redirecting, https}, "a.example.com"); got != "" {
		t.Errorf("redirect with an HTTPS server: %q", got)
	}
	got := RedirectWithoutHTTPS([]ServingServer{redirecting}, "a.example.com")
	for _, want := range []string{"Gateway apps/web", "tls.httpsRedirect", "port 80", "https://a.example.com", "add an HTTPS server"} {
		if !strings.Contains(got, want) {
			t.Errorf("message %q lacks %q", got, want)
		}
	}
}

func TestShadowingRoutes(t *testing.T) {
	const path = "/.well-known/acme-challenge/tok"
	gw := gateway("apps", "web", nil)
	attach := []ServingServer{{Gateway: gw, Server: server(80, "HTTP", nil, "*.example.com"), Host: "*.example.com"}}
	vs := func(name string, gateways, hosts []string, matches ...*istioapi.HTTPMatchRequest) *istionet.VirtualService {
		v := &istionet.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: name}}
		v.Spec.Gateways, v.Spec.Hosts = gateways, hosts
		v.Spec.Http = []*istioapi.HTTPRoute{{Name: "r", Match: matches}}
		return v
	}
	prefix := func(p string) *istioapi.HTTPMatchRequest {
		return &istioapi.HTTPMatchRequest{Uri: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Prefix{Prefix: p}}}
	}
	regex := func(r string) *istioapi.HTTPMatchRequest {
		return &istioapi.HTTPMatchRequest{Uri: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Regex{Regex: r}}}
	}
	exact := func(e string) *istioapi.HTTPMatchRequest {
		return &istioapi.HTTPMatchRequest{Uri: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Exact{Exact: e}}}
	}
	header := &istioapi.HTTPMatchRequest{Headers: map[string]*istioapi.StringMatch{"x-user": {MatchType: &istioapi.StringMatch_Exact{Exact: "a"}}}}
	bound, host := []string{"web"}, []string{"*.example.com"}
	tests := []struct {
		name string
		vs   *istionet.VirtualService
		want string
	}{
		{name: "prefix /.well-known shadows", vs: vs("wk", bound, host, prefix("/.well-known")), want: "prefix /.well-known"},
		{name: "a regex that matches shadows", vs: vs("re", bound, host, regex("/\\.well-known/.*")), want: "regex"},
		{name: "exact other path does not", vs: vs("ex", bound, host, exact("/app"))},
		{name: "prefix / is a catch-all, moved last", vs: vs("all", bound, host, prefix("/"))},
		{name: "regex .* is a catch-all", vs: vs("all", bound, host, regex(".*"))},
		{name: "no match is a catch-all", vs: vs("all", bound, host)},
		{name: "a header-only match may win", vs: vs("hdr", bound, host, header), want: "without a path condition"},
		{name: "another host string does not merge", vs: vs("other", bound, []string{"shop.example.com"}, prefix("/.well-known"))},
		{name: "another Gateway does not merge", vs: vs("other", []string{"edge/web"}, host, prefix("/.well-known"))},
		{name: "a namespace-qualified reference to the Gateway merges", vs: vs("ns", []string{"apps/web"}, host, prefix("/.well")), want: "prefix /.well"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ShadowingRoutes([]*istionet.VirtualService{tt.vs}, attach, path)
			if tt.want == "" {
				if len(got) != 0 {
					t.Fatalf("reported %v", got)
				}
				return
			}
			if len(got) != 1 || !strings.Contains(got[0].String(), tt.want) || !strings.Contains(got[0].String(), "VirtualService apps/"+tt.vs.Name) {
				t.Fatalf("got %v, want one naming %q", got, tt.want)
			}
		})
	}
}
