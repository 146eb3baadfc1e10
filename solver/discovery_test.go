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
	pods := []map[string]string{{"istio": "ingressgateway", "app": "istio-ingressgateway"}}
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
		{name: "TCP and TLS passthrough servers are not HTTP routes", gateways: []*istionet.Gateway{gateway("apps", "db", ingress,
			server(5432, "TCP", nil, "shop.example.com"), server(443, "TLS", nil, "shop.example.com"))},
			host: "shop.example.com", vsNS: "istio-system"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ServersForHost(tt.gateways, pods, tt.host, tt.vsNS)
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
